"""Is SPEEDY weather weather? The measurements behind the SPEEDY source's settings (docs/speedy-weather.md).

    python benchmarks/speedy_weather.py checks STORE          # the physical checks of a prepared store, beside ERA5
    python benchmarks/speedy_weather.py spinup --days 900     # global means from rest: how long the spin-up must be
    python benchmarks/speedy_weather.py resolution --days 360 # T21 against T31 (regridded to 64x32): cost, spectra
    python benchmarks/speedy_weather.py runs --days 720       # wall time of a record as one run and cut into two

``checks`` reads a store prepared by ``sparta data prepare --source speedy`` (any record; the docs use
the quick preset's). ``spinup`` and ``resolution`` simulate into the SPEEDY cache (``$SPARTA_CACHE``);
``runs`` into empty temporary caches, so nothing is reused.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from sparta.data import open_store
from sparta.data.cds import regrid_conservative
from sparta.data.speedy import Simulation, ensure_all, ensure_simulated, record_runs, speedy_era5

EARTH_RADIUS = 6.371e6
OMEGA = 7.292e-5
VARIABLES = ["2m_temperature", "geopotential@850", "u_component_of_wind@850", "v_component_of_wind@850",
             "specific_humidity@850"]


@dataclass
class Check:
    name: str
    value: float
    low: float
    high: float
    era5: str  # ERA5's value where this project has one (the issue that set the ranges); "-" where not measured

    @property
    def ok(self) -> bool:
        return self.low <= self.value <= self.high


def _area_weights(lat: np.ndarray) -> np.ndarray:
    w = np.cos(np.deg2rad(lat))
    return w / w.mean()


def _mean(x: np.ndarray, w: np.ndarray) -> float:
    """Area mean over (..., lat, lon) of everything."""
    return float((x * w[:, None]).mean() / w.mean())


def land_fraction(lat: np.ndarray, lon: np.ndarray, grid: str) -> np.ndarray:
    """SPEEDY's own land-sea mask (the T30 boundary file) on the store's grid."""
    import jcm

    path = Path(jcm.__file__).parent / "data" / "bc" / "t30" / "clim" / "terrain.nc"
    with xr.open_dataset(path) as ds:
        lsm = ds["lsm"].transpose("lat", "lon").load()
    return regrid_conservative(lsm.sortby("lat"), grid).values


def checks(store_path: str) -> list[Check]:
    store = open_store(store_path)
    x = store.read(slice(0, len(store.times))).astype(np.float64)  # (time, channel, lat, lon), physical units
    ch = {name: x[:, i] for i, name in enumerate(store.channels)}
    lat, lon = store.lat, store.lon
    w = _area_weights(lat)
    t2m, z, u, v, q = ch["t2m"], ch["z850"], ch["u850"], ch["v850"], ch["q850"] * 1000.0

    def band(field, lo, hi):
        rows = (lat >= lo) & (lat <= hi)
        return float((field[..., rows, :] * w[rows, None]).sum() / (w[rows].sum() * field.shape[-1]
                                                                     * np.prod(field.shape[:-2])))

    def std(field):
        return np.sqrt(_mean((field - _mean(field, w)) ** 2, w))

    def day_to_day(field):
        return np.sqrt(_mean(np.diff(field, axis=0) ** 2, w))

    # Geostrophy in mid-latitudes: v' against (1 / (f a cos lat)) dz'/dlon, anomalies from the time mean.
    za, va = z - z.mean(axis=0), v - v.mean(axis=0)
    dlon = np.deg2rad(lon[1] - lon[0])
    dz_dlon = (np.roll(za, -1, axis=-1) - np.roll(za, 1, axis=-1)) / (2 * dlon)
    f = 2 * OMEGA * np.sin(np.deg2rad(lat))
    with np.errstate(divide="ignore"):
        vg = dz_dlon / (f * EARTH_RADIUS * np.cos(np.deg2rad(lat)))[:, None]
    mid = (np.abs(lat) >= 30) & (np.abs(lat) <= 65)
    geo = float(np.corrcoef(va[:, mid].ravel(), vg[:, mid].ravel())[0, 1])

    months = store.times.astype("datetime64[M]").astype(int) % 12 + 1
    land = land_fraction(lat, lon, store.grid) > 0.5
    nh_land = land & (lat[:, None] >= 30) & (lat[:, None] <= 70)
    winter = t2m[np.isin(months, (12, 1, 2))][:, nh_land].mean()
    summer = t2m[np.isin(months, (6, 7, 8))][:, nh_land].mean()
    return [
        Check("t2m global mean (K)", _mean(t2m, w), 282, 292, "~288"),
        Check("t2m equator (|lat| <= 10) - north polar (>= 70N) (K)", band(t2m, -10, 10) - band(t2m, 70, 90), 30, 60,
              "-"),
        Check("z850 global mean (m2 s-2)", _mean(z, w), 13500, 16000, "~14200"),
        Check("u850 std (m/s)", std(u), 4, 9, "-"),
        Check("v850 std (m/s)", std(v), 2.5, 7, "-"),
        Check("q850 mean (g/kg)", _mean(q, w), 4, 9, "-"),
        Check("q850 minimum (g/kg)", float(q.min()), 0, np.inf, ">= 0"),
        Check("t2m day-to-day rms change (K)", day_to_day(t2m), 0.8, 3, "~1.7"),
        Check("z850 day-to-day rms change (m2 s-2)", day_to_day(z), 150, 600, "~250-370"),
        Check("geostrophy corr(v', v_g') 30-65 deg", geo, 0.6, 1, "-"),
        Check("NH land 30-70N t2m: JJA - DJF (K)", summer - winter, 0.01, np.inf, "-"),
    ]


def zonal_spectrum(field: np.ndarray, lat: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Power per zonal wavenumber of the day-to-day anomalies, averaged over time and the ``rows`` latitudes."""
    anomaly = field - field.mean(axis=0)
    power = np.abs(np.fft.rfft(anomaly[:, rows], axis=-1) / field.shape[-1]) ** 2
    return power.mean(axis=(0, 1))


def resolution(days: int) -> None:
    """T21 and T31, each conservatively regridded to 64x32: cost per simulated year and the fields' spectra."""
    mid = None
    for truncation in (21, 31):
        sim = Simulation(start="1990-01-01", seed=0, truncation=truncation)
        t0 = time.perf_counter()
        ensure_simulated(sim, days)
        cost = time.perf_counter() - t0
        ds = speedy_era5(VARIABLES, "1990-01-01", days, 0, truncation)
        out = {}
        for name in ("2m_temperature", "geopotential", "v_component_of_wind", "specific_humidity"):
            da = ds[name] if "level" not in ds[name].dims else ds[name].isel(level=0)
            da = regrid_conservative(da.rename(latitude="lat", longitude="lon").transpose("time", "lat", "lon")
                                     .sortby("lat").load(), "64x32")
            field = da.values.astype(np.float64)
            lat = da["lat"].values
            mid = (np.abs(lat) >= 30) & (np.abs(lat) <= 65)
            spectrum = zonal_spectrum(field, lat, mid)
            w = _area_weights(lat)
            out[name] = {"day_to_day_rms": float(np.sqrt(_mean(np.diff(field, axis=0) ** 2, w))),
                         "power_k1_5": float(spectrum[1:6].sum()), "power_k6_12": float(spectrum[6:13].sum()),
                         "power_k13_31": float(spectrum[13:32].sum()),
                         "slope_k6_20": float(np.polyfit(np.log(np.arange(6, 21)), np.log(spectrum[6:21]), 1)[0])}
        print(json.dumps({"truncation": truncation, "days": days, "seconds_including_spinup": round(cost, 1),
                          "fields": out}, indent=1))


def spinup(days: int) -> None:
    """Global means of a simulation from rest (no spin-up discarded), month by month, year against year."""
    sim = Simulation(start="1989-01-01", seed=0, spinup_days=0)
    ensure_simulated(sim, days)
    ds = speedy_era5(VARIABLES, "1989-01-01", days, 0, spinup_days=0)
    w = np.polynomial.legendre.leggauss(ds.sizes["latitude"])[1]
    weights = xr.DataArray(w / w.mean(), dims="latitude", coords={"latitude": np.sort(ds["latitude"].values)})
    means = {name: ds[name].squeeze(drop=True).weighted(weights).mean(("latitude", "longitude")).load()
             for name in ds.data_vars}
    print("month  " + "  ".join(f"{n[:14]:>14}" for n in means))
    monthly = {n: m.resample(time="MS").mean() for n, m in means.items()}
    times = monthly["2m_temperature"]["time"].values
    for i, t in enumerate(times):
        print(str(t)[:7], "  ".join(f"{float(m[i]):14.5g}" for m in monthly.values()))


def runs(days: int) -> None:
    """Wall time of simulating a ``days``-day record (the default spin-up) as one run and as two side by side."""
    for n_runs in (1, 2):
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            ensure_all(record_runs("1990-01-01", days, 0, n_runs), progress=False, root=Path(root))
            print(json.dumps({"days": days, "runs": n_runs, "seconds": round(time.perf_counter() - t0, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("checks").add_argument("store")
    sub.add_parser("spinup").add_argument("--days", type=int, default=900)
    sub.add_parser("resolution").add_argument("--days", type=int, default=360)
    sub.add_parser("runs").add_argument("--days", type=int, default=720)
    args = parser.parse_args()
    if args.what == "checks":
        results = checks(args.store)
        print(f"| check | SPEEDY | range | ERA5 |\n|---|---|---|---|")
        for c in results:
            print(f"| {c.name} | {c.value:.4g} {'ok' if c.ok else 'OUT OF RANGE'} | {c.low:g}..{c.high:g} | {c.era5} |")
    elif args.what == "spinup":
        spinup(args.days)
    elif args.what == "runs":
        runs(args.days)
    else:
        resolution(args.days)


if __name__ == "__main__":
    main()
