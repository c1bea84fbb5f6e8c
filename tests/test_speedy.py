"""The SPEEDY source: vertical interpolation, Gaussian-grid regridding, the simulation cache, the CLI.

The simulations here are days long (each costs ~25 s, mostly JAX compiling the model); the physical
checks on a record long enough to mean something are in benchmarks/speedy_weather.py (docs/speedy-weather.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from sparta.cli import app
from sparta.data import open_store
from sparta.data.cds import gaussian_latitude_edges, regrid_conservative
from sparta.data.speedy import GRAVITY, LAPSE, R_DRY, Simulation, ensure_simulated, speedy_era5, to_pressure

SIGMA = np.array([0.025, 0.095, 0.2, 0.34, 0.51, 0.685, 0.835, 0.95])  # SPEEDY's 8 levels, top first


def _isothermal(t: float, ps: np.ndarray, u_of_log_sigma=lambda x: 3.0 + 2.0 * x) -> dict[str, np.ndarray]:
    """An isothermal, dry atmosphere over sea level: Phi(sigma) = R T ln(1 / sigma); u linear in ln sigma."""
    shape = (ps.shape[0], len(SIGMA), *ps.shape[1:])
    log_s = np.log(SIGMA)[None, :, None, None]
    return {"t": np.full(shape, t), "q": np.zeros(shape), "z": np.broadcast_to(-R_DRY * t * log_s, shape),
            "u": np.broadcast_to(u_of_log_sigma(log_s), shape), "v": np.zeros(shape), "ps": ps}


def test_pressure_levels_are_exact_for_an_isothermal_atmosphere() -> None:
    ps = np.array([[[101000.0, 98000.0]]])  # (time, lon, lat): 850 hPa at sigma 0.842 and 0.867
    fields = _isothermal(260.0, ps)
    z = to_pressure("z", fields, SIGMA, 850)
    np.testing.assert_allclose(z, R_DRY * 260.0 * np.log(ps / 85000.0), rtol=1e-6)
    np.testing.assert_allclose(to_pressure("t", fields, SIGMA, 850), 260.0, rtol=1e-6)
    np.testing.assert_allclose(to_pressure("u", fields, SIGMA, 850), 3.0 + 2.0 * np.log(85000.0 / ps), rtol=1e-6)


def test_below_the_lowest_level_follows_the_standard_lapse_rate_and_holds_humidity() -> None:
    ps = np.array([[[80000.0]]])  # a mountain: 850 hPa is below ground
    fields = _isothermal(270.0, ps)
    fields["q"] = np.broadcast_to(np.linspace(0.0, 0.004, len(SIGMA))[None, :, None, None], fields["t"].shape)
    ratio = 85000.0 / (0.95 * 80000.0)
    power = R_DRY * LAPSE / GRAVITY
    np.testing.assert_allclose(to_pressure("t", fields, SIGMA, 850), 270.0 * ratio ** power, rtol=1e-6)
    phi_low = -R_DRY * 270.0 * np.log(0.95)
    expected = phi_low + 270.0 * (1 + 0.608 * 0.004) * GRAVITY / LAPSE * (1 - ratio ** power)
    np.testing.assert_allclose(to_pressure("z", fields, SIGMA, 850), expected, rtol=1e-6)
    assert expected < 0  # below sea level here: geopotential keeps falling with pressure, never masked
    np.testing.assert_allclose(to_pressure("q", fields, SIGMA, 850), 0.004, rtol=1e-6)  # the lowest level's, >= 0


def test_gaussian_cells_partition_the_sphere_and_regridding_keeps_the_area_mean() -> None:
    edges = gaussian_latitude_edges(32)
    nodes, weights = np.polynomial.legendre.leggauss(32)
    assert edges[0] == -90 and edges[-1] == 90
    np.testing.assert_allclose(np.diff(np.sin(np.deg2rad(edges))), weights, atol=1e-12)
    lat = np.rad2deg(np.arcsin(nodes))
    assert np.all((edges[:-1] < lat) & (lat < edges[1:]))
    lon = np.arange(64) * 5.625
    field = 280.0 + 30.0 * np.cos(np.deg2rad(lat))[:, None] + 5.0 * np.sin(np.deg2rad(lon))[None, :]
    out = regrid_conservative(xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}), "64x32")
    lat_t = out["lat"].values
    w_t = np.diff(np.sin(np.deg2rad(np.linspace(-90, 90, 33))))
    area_mean_source = (field.mean(axis=1) * weights).sum() / weights.sum()
    area_mean_target = (out.values.mean(axis=1) * w_t).sum() / w_t.sum()
    assert abs(area_mean_target - area_mean_source) < 1e-9  # measured 0 (to rounding)
    assert np.all(np.abs(np.diff(lat_t) - 5.625) < 1e-9)


def test_the_cache_key_names_every_setting_that_changes_the_record() -> None:
    base = Simulation(start="2000-01-01", seed=0)
    changed = [Simulation(start="2000-01-02", seed=0), Simulation(start="2000-01-01", seed=1),
               Simulation(start="2000-01-01", seed=0, truncation=31),
               Simulation(start="2000-01-01", seed=0, spinup_days=90),
               Simulation(start="2000-01-01", seed=0, chunk_days=10)]
    assert len({base.key, *(s.key for s in changed)}) == 1 + len(changed)
    assert Simulation(start="2000-01-01", seed=0).key == base.key  # not the record's length: longer ones extend


def _chunks(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("chunk-*.npz")):
        with np.load(path) as f:
            out[path.name] = {k: f[k] for k in f.files}
    return out


@pytest.mark.slow
def test_a_killed_simulation_resumes_to_the_same_record_and_runs_side_by_side_differ(tmp_path: Path) -> None:
    sim = Simulation(start="2000-01-05", seed=0, spinup_days=2, chunk_days=2)
    whole = ensure_simulated(sim, 4, progress=False, root=tmp_path / "a")
    assert sorted(p.name for p in whole.glob("chunk-*")) == ["chunk-00001.npz", "chunk-00002.npz"]

    # The same record in another cache, killed once its first kept chunk is written, then finished.
    script = ("import sys; from pathlib import Path; from sparta.data.speedy import Simulation, ensure_simulated; "
              "ensure_simulated(Simulation(start='2000-01-05', seed=0, spinup_days=2, chunk_days=2), 4, False, "
              "Path(sys.argv[1]))")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "b")], start_new_session=True)
    folder = tmp_path / "b" / "speedy" / sim.key
    deadline = time.monotonic() + 300
    while not (folder / "chunk-00001.npz").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (folder / "chunk-00002.npz").exists(), "the simulation finished before it could be killed"
    resumed = ensure_simulated(sim, 4, progress=False, root=tmp_path / "b")
    a, b = _chunks(whole), _chunks(resumed)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key], b[name][key], err_msg=f"{name}:{key}")

    # The record cut into two runs: the first is the one-run record's own simulation (its cache is reused), the
    # second starts where the first's days end, with the next seed and its own spin-up: other weather on those dates.
    cut = speedy_era5(["2m_temperature"], "2000-01-05", 4, 0, spinup_days=2, chunk_days=2, progress=False,
                      root=tmp_path / "a", runs=2)
    assert cut.attrs["source"].startswith("speedy(start=2000-01-05, days=4, seed=0") and "runs=2" in cut.attrs["source"]
    assert [p.name for p in (tmp_path / "a" / "speedy").iterdir()].count(sim.key) == 1
    assert len(list((tmp_path / "a" / "speedy").iterdir())) == 2
    t2m = cut["2m_temperature"].values  # (time, lon, lat); the chunks hold the model's (time, lon, lat) too
    np.testing.assert_array_equal(t2m[:2], a["chunk-00001.npz"]["t2m"])
    assert np.abs(t2m[2:] - a["chunk-00002.npz"]["t2m"]).max() > 0.01  # different weather


@pytest.mark.slow
def test_cli_prepares_a_speedy_store_and_reuses_the_simulation(tmp_path: Path, monkeypatch) -> None:
    args = ["data", "prepare", "--preset", "micro", "--source", "speedy", "data.years=0.02", "data.spinup_days=3",
            "data.start=2001-07-01", "data.split=[0.5,0.25,0.25]"]
    # The real command in its own process, as a user runs it: nothing but our progress and result lines on the
    # terminal (jcm's xarray FutureWarnings used to print before the progress bar).
    first = subprocess.run([sys.executable, "-m", "sparta.cli", *args, "--out", str(tmp_path / "store")],
                           capture_output=True, text=True, env={**os.environ, "SPARTA_CACHE": str(tmp_path / "cache")})
    assert first.returncode == 0, first.stderr
    assert "Warning" not in first.stderr, first.stderr
    assert "prepared store" in first.stderr and "simulating SPEEDY" in first.stderr
    store = open_store(tmp_path / "store")
    assert store.channels == ["t2m", "z850", "u850", "v850", "q850"] and store.grid == "64x32"
    assert str(store.times[0]) == "2001-07-01" and len(store.times) == 7
    x = store.read(slice(0, 7))
    t2m, z850, q850 = x[:, 0], x[:, 1], x[:, 4]
    assert 270 < t2m.mean() < 300 and 200 < t2m.min() and t2m.max() < 330  # K
    assert 12000 < z850.mean() < 17000  # m**2 s**-2, not metres
    assert q850.min() >= 0 and 0.002 < q850.mean() < 0.012  # kg/kg
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    assert meta["provenance"]["jcm_version"] and meta["provenance"]["truncation"] == 21
    assert meta["source"].startswith("speedy(start=2001-07-01, days=7, seed=0, T21")

    def no_simulation(*args, **kwargs):
        raise AssertionError("the cached simulation was not reused")

    monkeypatch.setenv("SPARTA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("sparta.data.speedy.subprocess.Popen", no_simulation)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(open_store(tmp_path / "again").read(slice(0, 7)), x)
