"""Regional domains (issue 16): a 0.25 deg ERA5 box prepares, trains and embeds through the CLI; longitudes
across Greenwich stay monotonic; conservative regridding inside a box; nothing periodic is applied to a box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from sparta.augment import Augmenter, box_smooth, build_augmenter
from sparta.cli import app
from sparta.config import AugmentConfig, ConfigError, load_config
from sparta.data.cds import regrid_conservative
from sparta.data.store import DataError, PreparedStore, write_store
from sparta.data.weatherbench import select_fields

LAT = np.arange(50.0, 58.001, 0.25)  # 33 rows: 0.25 deg over the British Isles, both ends included
LON = np.arange(-10.0, 2.001, 0.25)  # 49 columns, across Greenwich
BOX = ["data.grid=49x33", "data.box=[50,58,-10,2]"]
VARIABLES = ["2m_temperature", "geopotential@850", "u_component_of_wind@850", "v_component_of_wind@850",
             "specific_humidity@850"]


def _run(args: list):
    return CliRunner().invoke(app, [str(a) for a in args])


def _ok(args: list) -> str:
    result = _run(args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def _fails(args: list, *expected: str) -> str:
    result = _run(args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    error = result.stderr[result.stderr.index("error: "):]
    assert "Traceback" not in result.output and error.rstrip("\n").count("\n") == 0, result.output
    flat = "".join(error.split())
    for text in expected:
        assert "".join(text.split()) in flat, error
    return error


def era5_box(days: int = 620, lon: np.ndarray = LON, seed: int = 0) -> xr.Dataset:
    """A CDS-style (2024 convention) daily ERA5 box: short names, valid_time, pressure_level, latitude descending,
    CF units; a seasonal cycle plus weather that travels east and persists for days."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2001-01-01", periods=days)
    season = np.cos(2 * np.pi * (times.day_of_year.values - 200) / 365.25)[:, None, None]
    y, x = np.deg2rad(LAT)[None, :, None], np.deg2rad(lon)[None, None, :]
    weather = np.zeros((days, LAT.size, lon.size))
    for k, m in ((3, 1), (5, 2), (8, 3)):  # each mode an AR(1) complex amplitude, drifting east
        amp = np.zeros(days, complex)
        for t in range(1, days):
            amp[t] = 0.85 * amp[t - 1] * np.exp(-0.3j) + np.sqrt(1 - 0.85**2) * (rng.normal() + 1j * rng.normal())
        weather += np.real(amp[:, None, None] * np.exp(1j * (k * 6 * x + m * 12 * y))) / k
    noise = lambda scale: scale * rng.standard_normal((days, LAT.size, lon.size))  # noqa: E731
    lat_c = (LAT - 54)[None, :, None]
    t2m = 283 - 0.6 * lat_c + 7 * season + 3 * weather + noise(0.3)
    z = 14000 - 40 * lat_c + 300 * season + 600 * weather + noise(5)
    u = 6 + 4 * weather + noise(0.5)
    v = 3 * np.roll(weather, 2, axis=2) + noise(0.5)
    q = (5.5 + 1.5 * season + 0.8 * weather + noise(0.05)) * 1e-3
    coords = {"valid_time": times, "pressure_level": [850.0], "latitude": LAT[::-1], "longitude": lon}
    dims, level_dims = ("valid_time", "latitude", "longitude"), ("valid_time", "pressure_level", "latitude", "longitude")
    flip = lambda a: a[:, ::-1].astype(np.float32)  # noqa: E731 - ERA5 has latitude descending
    data = {"t2m": (dims, flip(t2m), {"units": "K"})}
    for name, values, units in (("z", z, "m**2 s**-2"), ("u", u, "m s**-1"), ("v", v, "m s**-1"), ("q", q, "kg kg**-1")):
        data[name] = (level_dims, flip(values)[:, None], {"units": units})
    return xr.Dataset(data, coords=coords)


@pytest.fixture(scope="module")
def box_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("era5") / "era5-box.nc"
    era5_box().to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def box_store(box_file, tmp_path_factory) -> PreparedStore:
    out = tmp_path_factory.mktemp("prepared") / "box"
    _ok(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", out, *BOX])
    return PreparedStore.open(out)


def test_a_regional_box_prepares_through_the_cli(box_store, box_file):
    assert box_store.grid == "49x33" and box_store.box == [50.0, 58.0, -10.0, 2.0]
    np.testing.assert_allclose(box_store.lat, LAT)
    np.testing.assert_allclose(box_store.lon, LON)
    assert box_store.fields.shape == (620, 5, 33, 49) and box_store.units["q850"] == "kg kg**-1"
    assert box_store.layout[0].periodic is False
    with xr.open_dataset(box_file) as src:  # latitude made ascending, values untouched
        np.testing.assert_allclose(box_store.fields[:, 0], src["t2m"].values[:, ::-1], rtol=1e-6)
        np.testing.assert_allclose(box_store.fields[:, 4], src["q"].values[:, 0, ::-1], rtol=1e-6)


def test_the_regional_refusal_names_the_settings_that_work(box_file, tmp_path):
    # One line that names the box; passing what it names prepares the store (no loop of hints).
    error = _fails(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", tmp_path / "s"],
                   "the source covers a regional box (latitude 50..58, longitude -10..2, 49x33 points at 0.25x0.25 "
                   "degrees)", "data.grid=49x33 'data.box=[50,58,-10,2]'")
    hint = error[error.index("data.grid=49x33"):].split()[:2]
    _ok(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", tmp_path / "s",
         hint[0], hint[1].strip("'")])


def test_greenwich_crossing_longitudes_are_monotonic_in_the_store(tmp_path):
    # The same box in 0..360 longitudes, stored as many converted sources are: 0..2 first, then 350..359.75.
    lon360 = np.concatenate([np.arange(0.0, 2.001, 0.25), np.arange(350.0, 359.76, 0.25)])
    era5_box(days=40, lon=lon360).to_netcdf(tmp_path / "360.nc")
    for box in ("[50,58,350,2]", "[50,58,-10,2]"):  # 0..360 and -180..180 notation give the same store
        out = tmp_path / f"s{box}"
        _ok(["data", "prepare", "--preset", "micro", "--source", tmp_path / "360.nc", "--out", out,
             "data.grid=49x33", f"data.box={box}", "data.variables=[2m_temperature]"])
        store = PreparedStore.open(out)
        assert np.all(np.diff(store.lon) > 0)
        np.testing.assert_allclose(store.lon, LON)
        assert store.box == [50.0, 58.0, -10.0, 2.0]
        with xr.open_dataset(tmp_path / "360.nc") as src:
            t2m = src["t2m"].values[:, ::-1]
        np.testing.assert_allclose(store.fields[:, 0, :, 0], t2m[:, :, list(lon360).index(350.0)])  # -10 = 350
        np.testing.assert_allclose(store.fields[:, 0, :, -1], t2m[:, :, list(lon360).index(2.0)])


def test_a_box_cut_from_a_global_source_across_greenwich():
    lat, lon = -87.1875 + 5.625 * np.arange(32), 5.625 * np.arange(64)
    values = lat[None, :, None] * 1000 + lon[None, None, :] + np.arange(3)[:, None, None]
    ds = xr.Dataset({"2m_temperature": (("time", "lat", "lon"), values, {"units": "K"})},
                    coords={"time": pd.date_range("2000-01-01", periods=3), "lat": lat, "lon": lon})
    da = select_fields(ds, ["2m_temperature"], "7x9", box=[2.8125, 47.8125, -16.875, 16.875])
    np.testing.assert_allclose(da["lon"], np.linspace(-16.875, 16.875, 7))
    np.testing.assert_allclose(da["lat"], np.linspace(2.8125, 47.8125, 9))
    want_lon = np.array([343.125, 348.75, 354.375, 0.0, 5.625, 11.25, 16.875])  # the source's points, in order
    np.testing.assert_allclose(da.values[:, 0], ds["2m_temperature"].sel(lat=da["lat"], lon=want_lon).values)


def test_conservative_regridding_inside_a_box():
    # 0.25 -> 0.5 deg: every target cell is exactly 2x2 source cells, weighted by their area on the sphere.
    values = np.random.default_rng(1).standard_normal((2, LAT.size, LON.size))
    da = xr.DataArray(values, dims=("time", "lat", "lon"), coords={"lat": LAT, "lon": LON})
    box = [50.125, 57.625, -9.875, 1.625]
    from sparta.domain import Box

    out = regrid_conservative(da, "24x16", Box.parse(box))
    np.testing.assert_allclose(out["lat"], np.arange(50.125, 57.626, 0.5))
    np.testing.assert_allclose(out["lon"], np.arange(-9.875, 1.626, 0.5))
    edges = np.deg2rad(np.concatenate([LAT - 0.125, [LAT[-1] + 0.125]]))
    area = np.diff(np.sin(edges))  # per source row
    i, j = 5, 7  # target cell (row 5, column 7) = source rows 10, 11 and columns 14, 15
    w = area[10:12, None] * np.ones(2)[None, :]
    expected = (values[:, 10:12, 14:16] * w).sum(axis=(1, 2)) / w.sum()
    np.testing.assert_allclose(out.values[:, i, j], expected, rtol=1e-10)
    # The area mean over the covered source cells is preserved.
    cover = values[:, :32, :48]
    src_mean = (cover * area[:32, None]).sum(axis=(1, 2)) / (area[:32].sum() * 48)
    t_area = np.diff(np.sin(np.deg2rad(np.arange(49.875, 57.876, 0.5))))  # target cell edges
    np.testing.assert_allclose((out.values * t_area[:, None]).sum(axis=(1, 2)) / (t_area.sum() * 24), src_mean)


def test_regrid_through_the_cli_and_a_box_beyond_the_source(box_file, tmp_path):
    out = tmp_path / "half"
    # Another resolution without data.regrid: one line that offers both working fixes.
    _fails(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", out,
            "data.grid=24x16", "data.box=[50.125,57.625,-9.875,1.625]", "data.variables=[2m_temperature]"],
           "asks for 24x16 points at 0.5x0.5 degrees", "pass data.regrid=true")
    _ok(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", out, "data.regrid=true",
         "data.grid=24x16", "data.box=[50.125,57.625,-9.875,1.625]", "data.variables=[2m_temperature]"])
    store = PreparedStore.open(out)
    assert store.grid == "24x16" and np.isfinite(store.fields).all()
    # A box reaching beyond the source cannot be regridded: one accurate line, no further hint to chase.
    _fails(["data", "prepare", "--preset", "micro", "--source", box_file, "--out", tmp_path / "wide",
            "data.regrid=true", "data.grid=32x20", "data.box=[45,60,-12,4]", "data.variables=[2m_temperature]"],
           "cannot regrid: the source's cells cover latitude 49.875..58.125 (cell edges)",
           "choose data.box (and data.grid) so that its cells lie inside the source")


def test_box_settings_are_checked():
    with pytest.raises(ConfigError, match="latitudes must rise"):
        load_config("micro", ["data.box=[58,50,-10,2]"])
    with pytest.raises(ConfigError, match="spans 360 degrees"):
        load_config("micro", ["data.box=[50,58,0,360]"])
    from sparta.config import DataConfig
    from sparta.data import prepare_from_config

    with pytest.raises(DataError, match="synthetic source makes global grids only"):
        prepare_from_config(DataConfig(box=(50, 58, -10, 2), grid="49x33"), "unused-out-dir")


def test_nothing_periodic_on_a_box():
    x = torch.arange(12.0).repeat(2, 1, 16, 1)  # columns 0..11: west .. east
    cfg = AugmentConfig(mode="native", smooth_kernel=1)
    aug = Augmenter(cfg, 16, 12, periodic=False)
    gen = torch.Generator().manual_seed(0)
    shifted = [aug.view(x, gen, masked=False, with_target=True) for _ in range(5)]
    for view, _, target in shifted:  # the west edge repeats into the opened cells; the east edge never wraps in
        assert torch.all(target[..., 0] == 0) and torch.all(target.diff(dim=-1) >= 0)
        torch.testing.assert_close(view, target)
    assert any(float(t[..., -1].min()) < 11 for _, _, t in shifted)  # it does shift
    periodic = Augmenter(cfg, 16, 12, periodic=True)
    rolled = [periodic.view(x, gen, masked=False, with_target=True)[2] for _ in range(5)]
    assert any(float(r[..., 0].max()) > 0 for r in rolled)  # the global grid rolls the east edge in
    # Smoothing repeats edge cells on a box: an east-edge impulse stays in the east.
    impulse = torch.zeros(1, 1, 8, 12)
    impulse[..., -1] = 1.0
    assert box_smooth(impulse, 3, periodic=False)[..., 0].abs().max() == 0
    assert box_smooth(impulse, 3)[..., 0].abs().max() > 0
    # The native-mode matrices (dense path) match the step-by-step shift and filter.
    aug3 = Augmenter(AugmentConfig(mode="native", smooth_kernel=7), 16, 12, periodic=False)
    y = torch.randn(3, 2, 16, 12)
    fast = aug3.view(y, torch.Generator().manual_seed(3), masked=False)[0]
    shift = torch.randint(0, aug3.max_shift + 1, (3,), generator=torch.Generator().manual_seed(3))
    from sparta.augment import _roll

    slow = box_smooth(_roll(y, shift, periodic=False), aug3.kernel, periodic=False)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_the_store_layout_tells_the_augmenter(box_store, tiny_store):
    assert build_augmenter(load_config("micro").augment, box_store.layout).periodic is False
    assert build_augmenter(load_config("micro").augment, tiny_store.layout).periodic is True


def test_train_and_embed_on_a_regional_box(box_store, box_file, tmp_path):
    data = [f"data.source={box_file}", f"data.store={box_store.path}", *BOX]
    _ok(["train", "--preset", "micro", "--model", "sparta", "--out", tmp_path / "run", *data,
         "augment.mode=native"])
    _ok(["embed", "--run", tmp_path / "run", "--data", box_store.path, "--out", tmp_path / "h.nc"])
    with xr.open_dataset(tmp_path / "h.nc") as ds:
        assert ds["embedding"].shape == (620, 16) and np.isfinite(ds["embedding"].values).all()
        np.testing.assert_allclose(ds["lon"].values, LON)
    _ok(["decode", "--run", tmp_path / "run", "--embeddings", tmp_path / "h.nc", "--out", tmp_path / "x.nc"])
    with xr.open_dataset(tmp_path / "x.nc") as ds:
        assert ds["t2m"].shape == (620, 33, 49) and np.isfinite(ds["t2m"].values).all()
        np.testing.assert_allclose(ds["lon"].values, LON)
        np.testing.assert_allclose(ds["lat"].values, LAT)
    # The EOF baseline takes its area weights from the box's latitudes.
    _ok(["train", "--preset", "micro", "--model", "pca", "--out", tmp_path / "pca", *data])
    _ok(["embed", "--run", tmp_path / "pca", "--data", box_store.path, "--out", tmp_path / "hp.nc"])
    # Evaluate (the classification task: seconds) reads the run's regional store.
    _ok(["evaluate", tmp_path / "run", "--tasks", "classify"])
    assert (tmp_path / "run" / "evaluation" / "metrics.json").is_file()
    # Station masks in 0..360 notation, latitude descending, are read into the store's -10..2 frame.
    keep = np.zeros((LAT.size, LON.size), bool)
    keep[::4, ::6] = True
    lon360 = LON % 360
    order = np.argsort(lon360)
    xr.Dataset({"observed": (("latitude", "longitude"), keep[::-1][:, order])},
               coords={"latitude": LAT[::-1], "longitude": lon360[order]}).to_netcdf(tmp_path / "stations.nc")
    _ok(["embed", "--run", tmp_path / "run", "--data", box_store.path, "--mask", tmp_path / "stations.nc",
         "--out", tmp_path / "sparse.nc"])
    from sparta.embed import load_observation_mask

    assert torch.equal(load_observation_mask(tmp_path / "stations.nc", box_store), torch.from_numpy(keep))
    # A store of another box with the same number of points is not this model's domain.
    other = write_store(tmp_path / "other", [np.asarray(box_store.fields[:30])], box_store.times[:30],
                        box_store.variables, LAT - 10, LON, "other", extra={"box": [40.0, 48.0, -10.0, 2.0]})
    _fails(["embed", "--run", tmp_path / "run", "--data", other.path, "--out", tmp_path / "h2.nc"],
           "covers the box [40.0, 48.0, -10.0, 2.0], the model was trained on the box [50.0, 58.0, -10.0, 2.0]")
    _fails(["train", "--preset", "micro", "--out", tmp_path / "run2", f"data.source={box_file}",
            f"data.store={box_store.path}", "data.grid=49x33", "data.box=[40,48,-10,2]"],
           "holds the box [50.0, 58.0, -10.0, 2.0], the config asks for the box [40.0, 48.0, -10.0, 2.0]")
