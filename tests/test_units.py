"""Sources as new users bring them, through `sparta data prepare` (issue 16): units, ensembles,
misaligned files, one sample per day, regional boxes, grids too small for the encoder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from sparta.cli import app
from sparta.data.store import PreparedStore
from sparta.data.synthetic import synthetic_era5
from sparta.data.units import GRAVITY

PREPARE = ["data", "prepare", "--preset", "micro"]


def _flat(text: str) -> str:
    return "".join(text.split())


def _run(args: list):
    return CliRunner().invoke(app, [str(a) for a in args])


def _fails(args: list, *expected: str) -> str:
    result = _run(args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    error = result.stderr[result.stderr.index("error: "):]
    assert "Traceback" not in result.output and error.rstrip("\n").count("\n") == 0, result.output
    for text in expected:
        assert _flat(text) in _flat(error), error
    return error


def _prepared(args: list, out: Path, caplog: pytest.LogCaptureFixture | None = None) -> tuple[PreparedStore, str]:
    """The prepared store and the log lines (info and warnings) the command wrote."""
    if caplog is not None:
        caplog.set_level(logging.INFO)
        caplog.clear()
    result = _run([*PREPARE, *args, "--out", out])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return PreparedStore.open(out), caplog.text if caplog is not None else ""


@pytest.fixture(scope="module")
def era5() -> xr.Dataset:
    return synthetic_era5(n_days=30).load()


@pytest.fixture(scope="module")
def reference(era5, tmp_path_factory) -> PreparedStore:
    path = tmp_path_factory.mktemp("ref") / "era5.nc"
    era5.to_netcdf(path)
    return _prepared(["--source", path], tmp_path_factory.mktemp("ref") / "store")[0]


def test_grams_per_kilogram_and_geopotential_height_are_converted(tmp_path, era5, reference, caplog):
    other = era5.copy(deep=True)
    other["specific_humidity"] = (era5["specific_humidity"] * 1000).assign_attrs(units="g/kg")
    other["geopotential"] = (era5["geopotential"] / GRAVITY).assign_attrs(units="gpm")
    other["2m_temperature"] = (era5["2m_temperature"] - 273.15).assign_attrs(units="degC")
    other = other.assign_coords(level=(other["level"] * 100).assign_attrs(units="Pa"))
    other.to_netcdf(tmp_path / "mixed-units.nc")
    store, log = _prepared(["--source", tmp_path / "mixed-units.nc"], tmp_path / "store", caplog)
    np.testing.assert_allclose(store.fields, reference.fields, rtol=2e-6, atol=1e-4)
    assert store.units == reference.units == {"t2m": "K", "z850": "m**2 s**-2", "u850": "m s**-1",
                                              "v850": "m s**-1", "q850": "kg kg**-1"}
    for text in ("converting g/kg to kg kg**-1", "converting gpm to m**2 s**-2", "converting degC to K",
                 "pressure levels are in Pa"):
        assert _flat(text) in _flat(log), log


def test_missing_or_unknown_units_are_refused_unless_assumed(tmp_path, era5, reference):
    bare = era5.copy(deep=True)
    del bare["specific_humidity"].attrs["units"]
    bare.to_netcdf(tmp_path / "bare.nc")
    _fails([*PREPARE, "--source", tmp_path / "bare.nc", "--out", tmp_path / "s"],
           "'specific_humidity@850' has no units attribute; SPARTA reads it in kg kg**-1 (and converts g kg**-1)",
           "or pass data.assume_units=true")
    odd = era5.copy(deep=True)
    odd["2m_temperature"].attrs["units"] = "degF"
    odd.to_netcdf(tmp_path / "odd.nc")
    _fails([*PREPARE, "--source", tmp_path / "odd.nc", "--out", tmp_path / "s"],
           "'2m_temperature' has units 'degF', which SPARTA does not understand")
    assert not (tmp_path / "s").exists()
    store, _ = _prepared(["--source", tmp_path / "bare.nc", "data.assume_units=true"], tmp_path / "s")
    np.testing.assert_array_equal(store.fields, reference.fields)


def test_ensemble_members_are_selected_or_averaged(tmp_path, era5, reference):
    shifted = era5.copy(deep=True)
    shifted["2m_temperature"] += 2.0
    members = xr.concat([era5, shifted], dim=pd.Index([0, 1], name="number"))
    members.to_netcdf(tmp_path / "ens.nc")
    source = ["--source", tmp_path / "ens.nc"]
    _fails([*PREPARE, *source, "--out", tmp_path / "s"], "the source holds 2 ensemble members",
           "choose one with data.member=N or average them with data.member=mean")
    one, _ = _prepared([*source, "data.member=1"], tmp_path / "one")
    mean, _ = _prepared([*source, "data.member=mean"], tmp_path / "mean")
    np.testing.assert_allclose(one.fields[:, 0], reference.fields[:, 0] + 2.0, rtol=1e-6)
    np.testing.assert_allclose(mean.fields[:, 0], reference.fields[:, 0] + 1.0, rtol=1e-6)
    assert json.loads((tmp_path / "one" / "meta.json").read_text())["member"] == 1


def test_misaligned_files_are_named_with_their_dates(tmp_path, era5):
    era5[["2m_temperature"]].isel(time=slice(0, 10)).to_netcdf(tmp_path / "a_t2m.nc")
    era5.drop_vars("2m_temperature").isel(time=slice(10, 20)).to_netcdf(tmp_path / "b_levels.nc")
    _fails([*PREPARE, "--source", str(tmp_path / "*.nc"), "--out", tmp_path / "s"],
           "do not line up: 2m_temperature (a_t2m.nc) covers 1980-01-01..1980-01-10",
           "(b_levels.nc) covers 1980-01-11..1980-01-20; every variable must cover the same dates")
    overlap = tmp_path / "overlap"
    overlap.mkdir()
    era5.isel(time=slice(0, 12)).to_netcdf(overlap / "jan_a.nc")
    era5.isel(time=slice(8, 20)).to_netcdf(overlap / "jan_b.nc")
    _fails([*PREPARE, "--source", str(overlap / "*.nc"), "--out", tmp_path / "s"],
           "jan_a.nc (1980-01-01..1980-01-12) and jan_b.nc (1980-01-09..1980-01-20) both hold 4 date(s)",
           "each date must come from one file")


def test_one_instantaneous_sample_per_day_is_labelled_and_warned_about(tmp_path, era5, caplog):
    noon = era5.assign_coords(time=era5["time"] + np.timedelta64(12, "h"))
    noon.to_netcdf(tmp_path / "noon.nc")
    store, log = _prepared(["--source", tmp_path / "noon.nc"], tmp_path / "s", caplog)
    assert store.time_aggregation == "instantaneous: one sample per day at 12:00 UTC, not a daily mean"
    assert _flat("one time per day at 12:00 UTC: these are instantaneous samples, not daily means") in _flat(log)
    six_hourly = synthetic_era5(n_days=30, freq="6h").load()
    six_hourly.to_netcdf(tmp_path / "6h.nc")
    store, _ = _prepared(["--source", tmp_path / "6h.nc"], tmp_path / "s6")
    assert store.time_aggregation == "daily mean of 4 samples per day (every 6 h)"


def test_a_regional_box_without_data_box_is_one_line_naming_the_box(tmp_path):
    lat, lon = np.arange(50.0, 58.001, 0.25), np.arange(-10.0, 2.001, 0.25)  # 0.25 deg over the British Isles
    times = pd.date_range("2000-01-01", periods=20)
    values = 280 + np.random.default_rng(0).standard_normal((20, lat.size, lon.size))
    box = xr.Dataset({"t2m": (("time", "latitude", "longitude"), values, {"units": "K"})},
                     coords={"time": times, "latitude": lat[::-1], "longitude": lon})
    box.to_netcdf(tmp_path / "box.nc")
    for extra in ([], ["data.grid=49x33"], ["data.regrid=true"]):  # each earlier hint leads to the same line
        error = _fails([*PREPARE, "--source", tmp_path / "box.nc", "--out", tmp_path / "s",
                        "data.variables=[2m_temperature]", *extra],
                       "the source covers a regional box (latitude 50..58, longitude -10..2, 49x33 points at "
                       "0.25x0.25 degrees)", "prepare the box as it is with data.grid=49x33 'data.box=[50,58,-10,2]'")
        assert "set data.grid=" not in error
    # What the line names prepares the box (tests/test_regional.py trains and embeds on it).
    _prepared(["--source", tmp_path / "box.nc", "data.variables=[2m_temperature]", "data.grid=49x33",
               "data.box=[50,58,-10,2]"], tmp_path / "s")


def test_a_grid_too_small_for_the_encoder_is_refused_with_the_minimum(tmp_path):
    for command in ([*PREPARE, "--out", tmp_path / "s"], ["train", "--preset", "micro", "--out", tmp_path / "r"]):
        _fails([*command, "data.grid=7x3"], "data grid 7x3 is too small for the encoder",
               "needs at least 16 points per axis at its input", "grid x crop_factor 2.25 = 16x7",
               "use a grid of at least 7 points per axis")
    _fails([*PREPARE, "--out", tmp_path / "s", "data.grid=12x12", "augment.mode=native"],
           "with augment.mode=native its input is the grid itself; use a grid of at least 16 points per axis")
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()
