"""Embedded synthetic ERA5-like data in the exact WeatherBench2 schema (no network needed).

The record is built from a small low-dimensional state plus fixed geography:

* a latitude climatology of 2 m temperature with a hemispheric seasonal cycle, amplified
  over a smooth pseudo land mask and at high latitudes (the NH more than the SH), lagging
  over the ocean (so spring and autumn differ), and a migrating tropical moist belt;
* travelling planetary waves (zonal wavenumbers 1-7, eastward, a few degrees/day) whose
  complex amplitudes are AR(1) processes with 3-7 day memory, stronger in winter;
  they perturb the surface pressure (1000 hPa geopotential) and the column temperature,
  the latter a quarter wavelength east of the former (warm advection ahead of troughs);
* a constant-lapse-rate troposphere under an isothermal stratosphere, so temperature and
  geopotential at any pressure level follow hypsometrically from the surface fields
  (warmer column -> higher z); geostrophic winds from the geopotential gradient with
  ``f`` tapered near the equator, where a weak easterly takes over; specific humidity as
  a relative humidity times saturation at the level's temperature (Clausius-Clapeyron);
* white gridpoint noise, seeded per day, small against the weather.

The whole low-dimensional state (wave amplitudes per day) is drawn up front, so values
do not depend on ``chunk_days``; fields are computed lazily per chunk of days by dask.
A record is also a prefix of any longer record with the same seed and start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import lfilter

from sparta.config import DEFAULT_VARIABLES
from sparta.data.variables import parse_variables

SURFACE_VARIABLES = ("2m_temperature",)
LEVEL_VARIABLES = ("geopotential", "temperature", "u_component_of_wind", "v_component_of_wind", "specific_humidity")
UNITS = {
    "2m_temperature": "K",
    "geopotential": "m**2 s**-2",
    "temperature": "K",
    "u_component_of_wind": "m s**-1",
    "v_component_of_wind": "m s**-1",
    "specific_humidity": "kg kg**-1",
}

GRAVITY = 9.80665  # m s-2
R_DRY = 287.05  # J kg-1 K-1
LAPSE = 0.0065  # K m-1, tropospheric lapse rate
KAPPA_LAPSE = R_DRY * LAPSE / GRAVITY  # T(p) = T_s (p / P0) ** KAPPA_LAPSE
P0 = 1000.0  # hPa, the level of the "surface" fields
T_TROPOPAUSE = 212.0  # K, isothermal above
EARTH_RADIUS = 6.371e6  # m
OMEGA = 7.292e-5  # s-1
YEAR_DAYS = 365.2425
NH_WARMEST = 196.0  # days after 1970-01-01 (16 July): the NH seasonal maximum of t2m over land
OCEAN_LAG = 45.0  # days; the ocean's seasonal cycle lags the land's, which tells spring from autumn
ITCZ_NORTHMOST = 230.0  # days after 1970-01-01: the moist tropical belt is furthest north in August
ITCZ_SHIFT = 0.12  # relative humidity moved across the equator by the ITCZ's migration
F_MIN_LAT = 8.0  # deg; |f| is held at f(8 deg) nearer the equator
GEO_LAT = (2.0, 15.0)  # deg; winds blend from the equatorial easterly to geostrophic across this band
EQ_EASTERLY = -4.0  # m s-1 near the surface

# Planetary waves: one mode per (latitude centre, zonal wavenumber).
WAVENUMBERS = np.arange(1, 8)
WAVE_CENTRES = (-60.0, -40.0, 40.0, 60.0)  # deg; the tropics get their own weak k=1..3 modes
WAVE_WIDTH = 14.0  # deg, Gaussian half-width of a mode in latitude
TROPICAL_WIDTH = 10.0
MEMORY_DAYS = 8.0 - 0.6 * WAVENUMBERS  # e-folding time of the AR(1) amplitudes: 7.4 (k=1) .. 3.8 (k=7)
SPEED_DEG = 1.5 + 0.5 * WAVENUMBERS  # eastward phase speed, deg/day, jittered by the seed
P_AMPLITUDE = 950.0  # m2 s-2, 1000 hPa geopotential per mode (before the spectral slope)
T_AMPLITUDE = 6.5  # K, column temperature per mode
TROPICAL_SCALE = 0.15  # tropical modes relative to mid-latitude ones
WAVE_T_COUPLING = 0.75  # fraction of the temperature wave locked to the pressure wave
WINTER_BOOST = 0.3  # wave amplitude x (1 +- this) in mid-winter/-summer

# Gridpoint noise standard deviations (per output field).
NOISE = {"t2m": 0.6, "t": 0.4, "z": 25.0, "u": 0.9, "v": 0.9, "rh": 0.02}
_NOISE_IDS = {name: i for i, name in enumerate(NOISE)}


def _parse_grid(grid: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", grid)
    if not match or int(match[1]) < 2 or int(match[2]) < 2:
        raise ValueError(f"grid '{grid}' is not of the form LONxLAT with at least 2 points each, e.g. 64x32")
    return int(match[1]), int(match[2])


def grid_coords(grid: str) -> tuple[np.ndarray, np.ndarray]:
    """``'64x32'`` -> ``(lat ascending, lon)`` in degrees of the WeatherBench2 equiangular grid.

    Even LAT: cell centres without poles (64x32: -87.1875..87.1875 step 5.625); odd LAT
    (e.g. 240x121): both poles included. Longitudes start at 0 with step 360/LON.
    """
    n_lon, n_lat = _parse_grid(grid)
    lon = np.arange(n_lon) * 360.0 / n_lon
    if n_lat % 2:
        lat = np.linspace(-90.0, 90.0, n_lat)
    else:
        step = 180.0 / n_lat
        lat = -90.0 + step / 2 + step * np.arange(n_lat)
    return lat, lon


@dataclass(frozen=True)
class _Waves:
    """Wave modes and their amplitude state; rows of ``p``/``t`` are days since the start."""

    k: np.ndarray  # (mode,) zonal wavenumber
    centre: np.ndarray  # (mode,) latitude centre, deg
    width: np.ndarray  # (mode,) deg
    speed: np.ndarray  # (mode,) eastward phase speed, rad/day
    p: np.ndarray  # (day, mode) complex, 1000 hPa geopotential, m2 s-2
    t: np.ndarray  # (day, mode) complex, column temperature, K

    def days(self, start: int, stop: int) -> _Waves:
        return _Waves(self.k, self.centre, self.width, self.speed, self.p[start:stop], self.t[start:stop])


def _ar1(innovations: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Unit-variance stationary AR(1) along axis 0, one memory (days) per column."""
    out = np.empty_like(innovations)
    for tau in np.unique(memory):
        cols = memory == tau
        rho = np.exp(-1.0 / tau)
        x = innovations[:, cols]
        out[:1, cols] = x[:1]  # start in the stationary distribution
        out[1:, cols], _ = lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], x[1:], axis=0, zi=rho * x[:1])
    return out


def _complex_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    z = rng.standard_normal((*shape, 2))
    return (z[..., 0] + 1j * z[..., 1]) / np.sqrt(2.0)


def _draw_waves(n_days: int, seed: int) -> _Waves:
    """The whole record's wave state, drawn row by row so a shorter record is a prefix."""
    mid = [(c, k, WAVE_WIDTH, 1.0) for c in WAVE_CENTRES for k in WAVENUMBERS]
    tropical = [(0.0, k, TROPICAL_WIDTH, TROPICAL_SCALE) for k in WAVENUMBERS[:3]]
    centre, k, width, scale = (np.array(col) for col in zip(*(mid + tropical)))
    k = k.astype(int)
    rng_speed, rng_p, rng_t = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    speed = np.deg2rad(SPEED_DEG[k - 1] * (1 + 0.2 * rng_speed.uniform(-1, 1, k.size)))
    memory = MEMORY_DAYS[k - 1]
    slope = k ** -0.5  # mild red spectrum: planetary scales carry most variance
    p = _ar1(_complex_normal(rng_p, (n_days, k.size)), memory)
    own = _ar1(_complex_normal(rng_t, (n_days, k.size)), memory)
    # Warm air sits a quarter wavelength east of the surface low (+i: phase of d/dlon).
    t = WAVE_T_COUPLING * 1j * p + np.sqrt(1 - WAVE_T_COUPLING**2) * own
    return _Waves(k, centre, width, speed, P_AMPLITUDE * scale * slope * p, T_AMPLITUDE * scale * slope * t)


@dataclass(frozen=True)
class _Geography:
    """Fixed fields on the grid, (lat, lon) or (lat, 1); every lon-dependent part vanishes at the poles."""

    lat: np.ndarray  # (lat, 1) deg
    lon: np.ndarray  # (lon,) deg
    land: np.ndarray  # (lat, lon) pseudo land fraction in [0, 1]
    t_mean: np.ndarray  # (lat, lon) annual-mean 2 m temperature, K
    t_season: np.ndarray  # (lat, lon) seasonal half-range, K, signed: + in the NH
    warmest: np.ndarray  # (lat, lon) day of the NH seasonal maximum (days after 1970-01-01)
    z_surface: np.ndarray  # (lat, 1) climatological 1000 hPa geopotential, m2 s-2
    rh: np.ndarray  # (lat, 1) climatological relative humidity
    diurnal: np.ndarray  # (lat, lon) diurnal half-range of t2m, K


def _bump(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-(((x - centre) / width) ** 2))


def _geography(grid: str) -> _Geography:
    lat1, lon = grid_coords(grid)
    lat = lat1[:, None]
    mu = np.sin(np.deg2rad(lat))
    cos2 = np.cos(np.deg2rad(lat)) ** 2
    antarctica = 1 / (1 + np.exp((lat + 68.0) / 3.0))
    arctic = 1 / (1 + np.exp(-(lat - 72.0) / 4.0))
    # Continents: Eurasia ~80E, the Americas ~260E, Africa ~20E, more land in the NH.
    continents = cos2 * (0.45 * np.cos(np.deg2rad(lon - 80.0)) * _bump(lat, 40.0, 22.0)
                         + 0.35 * np.cos(np.deg2rad(2 * (lon - 100.0))) * _bump(lat, 35.0, 25.0)
                         + 0.25 * np.cos(np.deg2rad(lon - 20.0)) * _bump(lat, -10.0, 20.0))
    land = np.clip(0.2 + 0.25 * _bump(lat, 50.0, 20.0) + antarctica + 0.5 * arctic + continents, 0.0, 1.0)
    # Flat tropics, cold poles; the Antarctic plateau is high and much colder.
    t_mean = 303.0 - 44.0 * mu**2 - 4.0 * mu**4 - 16.0 * antarctica - 2.0 * (land - 0.3) * np.abs(mu)
    t_season = np.where(lat >= 0, 13.0, 8.5) * mu * np.abs(mu) * (0.5 + 0.9 * land)
    hemi = np.where(lat >= 0, 1.0, 1.6)  # deeper SH subpolar trough
    alat = np.abs(lat)
    z_surface = 900.0 + 800.0 * _bump(alat, 32.0, 13.0) - 400.0 * hemi * _bump(alat, 62.0, 10.0) + 400.0 * _bump(alat, 90.0, 15.0)
    rh = 0.87 - 0.14 * _bump(lat, 0.0, 14.0) - 0.12 * _bump(alat, 25.0, 9.0)
    diurnal = (0.6 + 3.5 * land) * np.sqrt(cos2)
    warmest = NH_WARMEST + OCEAN_LAG * (1 - land)
    return _Geography(lat, lon, land, t_mean, t_season, warmest, z_surface, rh, diurnal)


def _season(times_days: np.ndarray, warmest: float | np.ndarray = NH_WARMEST) -> np.ndarray:
    """+1 at the NH seasonal temperature maximum, -1 half a year later."""
    return np.cos(2 * np.pi * (times_days - warmest) / YEAR_DAYS)


def _wave_fields(waves: _Waves, t_rel: np.ndarray, t_abs: np.ndarray, geo: _Geography) -> tuple[np.ndarray, np.ndarray]:
    """(time, lat, lon) 1000 hPa geopotential and column temperature anomalies at fractional days ``t_rel``."""
    day = np.floor(t_rel).astype(int) - int(np.floor(t_rel[0]))
    frac = (t_rel - np.floor(t_rel))[:, None]
    lat = geo.lat[:, 0]
    # Latitude structure x cos(lat) so lon-dependence vanishes at the poles (finite winds there).
    shape = _bump(lat[None, :], waves.centre[:, None], waves.width[:, None]) * np.cos(np.deg2rad(lat))[None, :]
    winter = np.where(waves.centre[None, :] >= 0, -1.0, 1.0) * _season(t_abs)[:, None]
    winter = np.where(waves.centre[None, :] == 0, 0.0, winter)
    gain = (1 + WINTER_BOOST * winter) * np.exp(-1j * waves.k[None, :] * waves.speed[None, :] * t_rel[:, None])
    phase = np.deg2rad(np.outer(waves.k, geo.lon))
    basis = np.concatenate([np.cos(phase), -np.sin(phase)])  # Re(a e^{ik lon}) = a_r cos - a_i sin
    out = []
    for amp in (waves.p, waves.t):
        a = ((1 - frac) * amp[day] + frac * amp[np.minimum(day + 1, len(amp) - 1)]) * gain  # (time, mode)
        coef = a[:, None, :] * shape.T[None]  # (time, lat, mode)
        out.append(np.concatenate([coef.real, coef.imag], axis=-1) @ basis)
    return out[0], out[1]


def _level_temperature(t_surface: np.ndarray, level: float) -> np.ndarray:
    return np.maximum(t_surface * (level / P0) ** KAPPA_LAPSE, T_TROPOPAUSE)


def _level_geopotential(z_surface: np.ndarray, t_surface: np.ndarray, level: float) -> np.ndarray:
    """Hypsometric: lapse-rate troposphere from 1000 hPa up to the tropopause, isothermal above."""
    t_s = np.maximum(t_surface, T_TROPOPAUSE + 1e-3)
    troposphere = GRAVITY * t_s / LAPSE * (1 - (level / P0) ** KAPPA_LAPSE)
    p_trop = P0 * (T_TROPOPAUSE / t_s) ** (1 / KAPPA_LAPSE)
    stratosphere = GRAVITY * (t_s - T_TROPOPAUSE) / LAPSE + R_DRY * T_TROPOPAUSE * np.log(p_trop / level)
    return z_surface + np.where(level >= p_trop, troposphere, stratosphere)


def _winds(z: np.ndarray, geo: _Geography, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Geostrophic (u, v) from (time, lat, lon) geopotential, blended to an easterly near the equator."""
    lat = geo.lat[:, 0]
    phi = np.deg2rad(lat)
    sign = np.where(lat >= 0, 1.0, -1.0)
    f = 2 * OMEGA * sign * np.maximum(np.abs(np.sin(phi)), np.sin(np.deg2rad(F_MIN_LAT)))
    dz_dphi = np.gradient(z, phi, axis=1, edge_order=2)
    k = np.fft.rfftfreq(z.shape[-1], 1.0 / z.shape[-1])
    dz_dlon = np.fft.irfft(1j * k * np.fft.rfft(z, axis=-1), n=z.shape[-1], axis=-1)
    cos = np.maximum(np.cos(phi), 1e-6)
    u_geo = -dz_dphi / (f * EARTH_RADIUS)[:, None]
    v_geo = dz_dlon / (f * EARTH_RADIUS * cos)[:, None]
    ramp = np.clip((np.abs(lat) - GEO_LAT[0]) / (GEO_LAT[1] - GEO_LAT[0]), 0.0, 1.0)
    w = (ramp * ramp * (3 - 2 * ramp))[:, None]  # smoothstep
    easterly = EQ_EASTERLY * (level / P0) * _bump(lat, 0.0, 20.0)[:, None]
    return w * u_geo + (1 - w) * easterly, w * v_geo


def _saturation_humidity(t: np.ndarray, level: float) -> np.ndarray:
    """Saturation specific humidity (kg/kg) over water, Bolton's e_s(T)."""
    e = 6.112 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    return 0.622 * e / (level - 0.378 * np.minimum(e, 0.5 * level))


def _noise(seed: int, first_day: int, n_days: int, steps: int, name: str, level: int, shape: tuple[int, int]) -> np.ndarray:
    """White noise per output field, seeded by (seed, day, field, level): independent of chunking and of the other fields."""
    days = [np.random.default_rng([seed, first_day + d, _NOISE_IDS[name], level]).standard_normal((steps, *shape))
            for d in range(n_days)]
    return NOISE[name] * np.concatenate(days).astype(np.float32)


def _chunk(waves: _Waves, t_rel: np.ndarray, t_abs: np.ndarray, first_day: int, steps: int, grid: str,
           surface: tuple[str, ...], level_vars: tuple[str, ...], levels: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """All requested fields for one chunk of days, each (time, [level,] lon, lat) float32."""
    geo = _geography(grid)
    n_days = len(t_rel) // steps
    noise_shape = geo.land.shape

    def noise(name: str, level: int = 0) -> np.ndarray:
        return _noise(seed, first_day, n_days, steps, name, level, noise_shape)

    p_wave, t_wave = _wave_fields(waves, t_rel, t_abs, geo)
    season = _season(t_abs[:, None, None], geo.warmest)
    t_surface = geo.t_mean + geo.t_season * season + (0.7 + 0.6 * geo.land) * t_wave
    z_surface = geo.z_surface + p_wave
    out: dict[str, np.ndarray] = {}
    if "2m_temperature" in surface:
        hour = (t_abs % 1.0)[:, None, None] * 24.0 + geo.lon / 15.0  # local solar time
        diurnal = geo.diurnal * np.cos(2 * np.pi * (hour - 15.0) / 24.0) if steps > 1 else 0.0
        out["2m_temperature"] = t_surface + diurnal + noise("t2m")
    per_level: dict[str, list[np.ndarray]] = {name: [] for name in level_vars}
    itcz = ITCZ_SHIFT * np.tanh(geo.lat / 10.0) * _bump(geo.lat, 0.0, 30.0) * _season(t_abs[:, None, None], ITCZ_NORTHMOST)
    rh_weather = np.clip(geo.rh + itcz - 0.1 * p_wave / P_AMPLITUDE, 0.15, 0.97)
    for level in levels:
        t_level = _level_temperature(t_surface, level)
        z = _level_geopotential(z_surface, t_surface, level)
        fields: dict[str, np.ndarray] = {}
        if "temperature" in level_vars:
            fields["temperature"] = t_level + noise("t", level)
        if "geopotential" in level_vars:
            fields["geopotential"] = z + noise("z", level)
        if {"u_component_of_wind", "v_component_of_wind"} & set(level_vars):
            u, v = _winds(z, geo, level)  # from the noise-free z: noise would dominate its gradient
            fields["u_component_of_wind"] = u + noise("u", level)
            fields["v_component_of_wind"] = v + noise("v", level)
        if "specific_humidity" in level_vars:
            rh = np.clip(rh_weather * (0.55 + 0.45 * level / P0) + noise("rh", level), 0.05, 1.0)  # drier aloft
            fields["specific_humidity"] = rh * _saturation_humidity(t_level, level)
        for name in level_vars:
            per_level[name].append(fields[name])
    out.update({name: np.stack(stack, axis=1) for name, stack in per_level.items()})
    return {name: np.swapaxes(x, -1, -2).astype(np.float32) for name, x in out.items()}


def _steps_per_day(freq: str) -> int:
    try:
        step = pd.to_timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError):
        raise ValueError(f"freq '{freq}' is not a time step such as '1D' or '6h'") from None
    day = pd.Timedelta(days=1)
    if step <= pd.Timedelta(0) or step > day or day % step:
        raise ValueError(f"freq '{freq}' must divide one day, e.g. '1D', '12h', '6h' or '1h'")
    return int(day // step)


def synthetic_era5(variables: list[str] = DEFAULT_VARIABLES, grid: str = "64x32", start: str = "1980-01-01",
                   n_days: int = 365, seed: int = 0, freq: str = "1D", chunk_days: int = 365) -> xr.Dataset:
    """Lazy synthetic ERA5-like record in the WeatherBench2 schema.

    ``variables`` are WeatherBench2 specs (``'geopotential@850'``); every pressure-level
    variable is present at the sorted union of the requested levels, as in WB2. Dims are
    ``(time, longitude, latitude)`` and ``(time, level, longitude, latitude)``, float32,
    dask-chunked along time by ``chunk_days`` days. The values depend only on ``seed``,
    ``start``, the grid and the time step, never on ``chunk_days``. Sub-daily ``freq``
    (e.g. ``'6h'``) adds a diurnal cycle to t2m; its daily means behave like daily data.
    """
    specs = parse_variables(list(variables))
    supported = SURFACE_VARIABLES + LEVEL_VARIABLES
    for v in specs:
        if v.name not in supported:
            raise ValueError(f"synthetic data has no variable '{v.name}'; supported: {', '.join(supported)}")
        if v.name in SURFACE_VARIABLES and v.level is not None:
            raise ValueError(f"'{v.name}' is a surface variable; use '{v.name}' without '@{v.level}'")
        if v.name in LEVEL_VARIABLES and not (v.level and 1 <= v.level <= 1100):
            raise ValueError(f"'{v.name}' needs a pressure level in 1..1100 hPa, e.g. '{v.name}@850'")
    if n_days < 1 or chunk_days < 1:
        raise ValueError(f"n_days ({n_days}) and chunk_days ({chunk_days}) must be positive")
    steps = _steps_per_day(freq)
    lat, lon = grid_coords(grid)
    surface = tuple(dict.fromkeys(v.name for v in specs if v.level is None))
    level_vars = tuple(dict.fromkeys(v.name for v in specs if v.level is not None))
    levels = tuple(sorted({v.level for v in specs if v.level is not None}))

    times = pd.date_range(pd.Timestamp(start).normalize(), periods=n_days * steps, freq=pd.Timedelta(days=1) / steps)
    t_abs = (times.values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    t_rel = t_abs - t_abs[0]
    waves = _draw_waves(n_days + 1, seed)  # +1: sub-daily steps interpolate towards the next day

    pieces: dict[str, list[da.Array]] = {name: [] for name in surface + level_vars}
    for d0 in range(0, n_days, chunk_days):
        d1 = min(d0 + chunk_days, n_days)
        sl = slice(d0 * steps, d1 * steps)
        task = dask.delayed(_chunk, pure=True)(waves.days(d0, d1 + 1), t_rel[sl], t_abs[sl], d0, steps, grid,
                                               surface, level_vars, levels, seed)
        for name in pieces:
            shape = (len(t_rel[sl]), *((len(levels),) if name in level_vars else ()), len(lon), len(lat))
            pieces[name].append(da.from_delayed(task[name], shape, dtype=np.float32))

    coords = {"time": times.values.astype("datetime64[ns]"), "longitude": lon, "latitude": lat}
    data_vars = {}
    for name, parts in pieces.items():
        dims = ("time", "level", "longitude", "latitude") if name in level_vars else ("time", "longitude", "latitude")
        data_vars[name] = xr.Variable(dims, da.concatenate(parts, axis=0), attrs={"units": UNITS[name]})
    if levels:
        coords["level"] = np.array(levels, dtype=np.int64)
    return xr.Dataset(data_vars, coords=coords, attrs={"source": f"sparta synthetic ERA5-like, seed={seed}"})
