"""Embedded synthetic ERA5-like data in the exact WeatherBench2 schema (no network needed).

A fixed climate plus weather drawn in spectral space, tied together by the physics that couples
the variables in the real atmosphere (docs/synthetic-data.md has the measured numbers):

* climate: a latitude climatology of 2 m temperature with a hemispheric seasonal cycle,
  amplified over a smooth pseudo land mask and at high latitudes (the NH more than the SH),
  lagging over the ocean (so spring and autumn differ), thermal highs and lows over the
  continents (winter highs, summer monsoon lows), and a migrating tropical moist belt;
* weather: three spectral fields (1000 hPa geopotential, column temperature, relative humidity
  in logit units), each a sum over zonal wavenumbers ``k`` up to the grid's Nyquist and
  meridional modes ``m`` (``cos(lat) sin(m colat)``, ``cos(m colat)`` for zonal means) under
  latitude envelopes (quiet tropics, storm tracks that are stronger in winter). Mode variance
  is flat up to total wavenumber ~4, then falls off smoothly: zonal power ~ k^-3 through the
  synoptic scales, ~ k^-5 towards the grid scale (humidity keeps ~ k^-3); modes spanning both
  hemispheres and zonal-mean modes are weak, so each hemisphere has its own weather. Every
  mode's complex amplitude is an AR(1) process of an AR(1) process, so it changes smoothly from
  day to day and most of a day's change is predictable, as in the atmosphere; its memory shrinks
  with scale (~9 days for planetary waves, 2-3 for the smallest) and it travels east (slowly for
  long waves, up to 11 deg/day). The temperature weather is mostly the geopotential wave shifted a quarter
  wavelength east (warm air ahead of troughs, so troughs tilt west with height); relative
  humidity has weather of its own, plus moist lows and warm sectors;
* physics, at any grid and level set: a constant-lapse-rate troposphere under an isothermal
  stratosphere, so temperature and geopotential at every pressure level follow hypsometrically
  from the surface fields (thickness tracks column temperature); winds in geostrophic balance
  with their level's geopotential, ``u = -(1/f a) dZ/dlat`` and ``v = (1/f a cos lat) dZ/dlon``,
  the weather's derivatives taken analytically in spectral space, ``|f|`` held at f(8 deg)
  nearer the equator, where a weak easterly takes over; specific humidity = relative humidity
  (in (0, 1)) x saturation at the level's temperature (Clausius-Clapeyron);
* a little white gridpoint noise.

Random numbers are drawn per block of days (and, for the weather, per group of modes), seeded
by the seed and the block: every grid shares the modes it resolves (a coarse grid sees the same
weather as a fine one, minus the small scales), a record is a prefix of any longer record with
the same seed and start, and values never depend on ``chunk_days``. The two stages' state is carried
through the record once up front (cheap, and no field is built there); the fields are computed
lazily per chunk of days by dask, resuming from the saved state.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from sparta.config import DEFAULT_VARIABLES
from sparta.data.variables import parse_generated
from sparta.grids import grid_coords, parse_grid

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
OCEAN_LAG = 60.0  # days; the ocean's seasonal cycle lags the land's, which tells spring from autumn
ITCZ_NORTHMOST = 230.0  # days after 1970-01-01: the moist tropical belt is furthest north in August
ITCZ_SHIFT = 0.12  # relative humidity moved across the equator by the ITCZ's migration
F_MIN_LAT = 8.0  # deg; |f| is held at f(8 deg) nearer the equator
GEO_LAT = (2.0, 15.0)  # deg; winds blend from the equatorial easterly to geostrophic across this band
EQ_EASTERLY = -4.0  # m s-1 near the surface

# Spectral weather: modes (k, m), k = 0..K zonal wavenumber, m = 1..M meridional mode.
K_MAX = 127  # at most; a grid keeps k <= (LON - 1) // 2, below its Nyquist
M_MAX = 127  # at most; a grid keeps m <= LAT - 1
GROUP = 16  # innovations are drawn per GROUP x GROUP modes, so grids share the modes they have in common
BLOCK = 32  # days of innovations per draw
STATE_FIELDS = 3  # unit-variance amplitudes: geopotential, own temperature, own humidity
N_FLAT = 4.0  # total wavenumber up to which the mode variance is about flat
SLOPE = 2.0  # mode variance ~ n ** (-2 SLOPE) beyond: a zonal power spectrum ~ k ** (1 - 2 SLOPE) = k^-3
N_STEEP = 4.0  # total wavenumber beyond which geopotential and temperature fall off faster:
STEEPEN = 1.0  # ~ k^-5, so geostrophic winds have a k^-3 kinetic energy spectrum there (humidity keeps k^-3)
GAMMA = 1.2  # meridional mode m counts as GAMMA * m in the total wavenumber n
M_LOCAL = 4.0  # meridional modes m << M_LOCAL (spanning both hemispheres) are damped
ZONAL_MEAN = 0.25  # amplitude of the zonal-mean (k = 0) modes relative to waves (sqrt 2 would give equal variance)
MEMORY = (2.2, 9.0, 4.0)  # e-folding time of a mode's amplitude: a + b / (1 + (n / c) ** 2) days
# Each amplitude is AR(1) of an AR(1), autocorrelation (1 + u) exp(-u) at lag tau, u = tau * SMOOTH_EFOLD / memory
# (for memory >> 1 day): it falls to 1/e at the memory when (1 + u) exp(-u) = 1/e.
SMOOTH_EFOLD = 2.1462
PHASE_SPEED = 11.0  # deg/day eastward for short waves; k ** 2 / (k ** 2 + K_SLOW ** 2) of it for long ones
K_SLOW = 5.0
Z_AMPLITUDE = 2000.0  # m2 s-2, strength of the 1000 hPa geopotential weather (rms ~600 in the storm tracks)
T_AMPLITUDE = 11.0  # K, strength of the column temperature weather
RH_AMPLITUDE = 1.6  # strength of the relative humidity weather, logit units
T_LOCKED = 0.8  # share of the temperature wave a quarter wavelength east of the pressure wave (warm sector)
RH_LOCKED = (-0.45, 0.35)  # humidity weather: moist in lows, and in the warm sector ahead of troughs
MONSOON = 200.0  # m2 s-2 of 1000 hPa geopotential per K of seasonal warming, x the continents' excess land
WINTER_BOOST = 0.3  # weather amplitude x (1 +- this) in mid-winter/-summer, per hemisphere

# Gridpoint noise standard deviations (per output field; rh in logit units).
NOISE = {"t2m": 0.4, "t": 0.2, "z": 10.0, "u": 0.4, "v": 0.4, "rh": 0.1}
_NOISE_IDS = {name: i for i, name in enumerate(NOISE)}


# --- the spectral state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Modes:
    """The (k, m) modes a grid resolves, with their AR(1) coefficients and spectrum."""

    k: np.ndarray  # (K,) 0..K
    m: np.ndarray  # (M,) 1..M
    rho: np.ndarray  # (K, M, 1) lag-1 day coefficient of each of the two stages
    gain: np.ndarray  # (K, M, 1) scales the second stage to unit variance
    scale: np.ndarray  # (3, K, M) amplitude of each mode: the spectra of z, t, rh (unit sum of squares over all modes)
    speed: np.ndarray  # (K,) eastward phase speed, rad/day

    @classmethod
    def for_grid(cls, grid: str) -> _Modes:
        n_lon, n_lat = parse_grid(grid)
        k = np.arange(min(K_MAX, (n_lon - 1) // 2) + 1)
        m = np.arange(1, min(M_MAX, n_lat - 1) + 1)
        n = np.hypot(k[:, None], GAMMA * m[None, :])
        memory = MEMORY[0] + MEMORY[1] / (1 + (n / MEMORY[2]) ** 2)
        rho = np.exp(-SMOOTH_EFOLD / memory)[..., None]
        scale = []
        for steepen in (STEEPEN, STEEPEN, 0.0):  # geopotential, temperature, humidity
            every = _spectrum(np.arange(K_MAX + 1), np.arange(1, M_MAX + 1), steepen)
            scale.append(_spectrum(k, m, steepen) / np.sqrt((every**2).sum()))  # over all modes: grid-independent
        scale = np.stack(scale)
        speed = np.deg2rad(PHASE_SPEED) * k**2 / (k**2 + K_SLOW**2)
        x = rho**2
        gain = np.sqrt((1 - x) ** 3 / (1 + x))  # the second stage's stationary variance is (1 + x) / (1 - x) ** 3
        return cls(k, m, rho.astype(np.float32), gain.astype(np.float32), scale, speed)


def _spectrum(k: np.ndarray, m: np.ndarray, steepen: float) -> np.ndarray:
    """(K, M) relative amplitude of each mode: flat up to total wavenumber N_FLAT, then n ** -SLOPE, and
    n ** -(SLOPE + steepen) beyond N_STEEP."""
    n = np.hypot(k[:, None], GAMMA * m[None, :])
    amplitude = (1 + (n / N_FLAT) ** 2) ** (-SLOPE / 2) * (1 + (n / N_STEEP) ** 2) ** (-steepen / 2)
    amplitude = amplitude * m / np.hypot(m, M_LOCAL)  # weak pole-to-pole modes: each hemisphere has its own weather
    amplitude[k == 0] *= ZONAL_MEAN
    return amplitude


def _innovations(seed: int, block: int, n_k: int, n_m: int, stream: int = 7919) -> np.ndarray:
    """(BLOCK, K, M, STATE_FIELDS) unit complex normals (complex64); a mode's draws do not depend on the grid."""
    out = np.empty((BLOCK, n_k, n_m, STATE_FIELDS), dtype=np.complex64)
    for k0 in range(0, n_k, GROUP):
        for m0 in range(0, n_m, GROUP):
            rng = np.random.default_rng([seed, block, k0 // GROUP, m0 // GROUP, stream])
            z = rng.standard_normal((BLOCK, GROUP, GROUP, STATE_FIELDS * 2), dtype=np.float32).view(np.complex64)
            out[:, k0 : k0 + GROUP, m0 : m0 + GROUP] = z[:, : n_k - k0, : n_m - m0]
    return out * np.float32(np.sqrt(0.5))


def _run_block(modes: _Modes, seed: int, block: int, before: np.ndarray | None) -> np.ndarray:
    """(BLOCK, K, M, STATE_FIELDS, 2) states of the two AR(1) stages, continuing from ``before`` (the last day's).

    Stage one is AR(1) in the daily innovations, stage two AR(1) in stage one: the amplitude (stage two)
    changes smoothly from day to day, as the weather does, instead of taking a new random step each day.
    """
    eps = _innovations(seed, block, len(modes.k), len(modes.m))
    out = np.empty(eps.shape + (2,), dtype=np.complex64)
    rho, x = modes.rho, modes.rho**2
    start = 0
    if before is None:  # the record starts: day 0 drawn from the two stages' stationary joint distribution
        first = eps[0] / np.sqrt(1 - x)
        second = first / (1 - x) + np.sqrt(x / (1 - x) ** 3) * _innovations(seed, block, len(modes.k), len(modes.m),
                                                                              stream=7927)[0]
        out[0] = before = np.stack([first, second], axis=-1)
        start = 1
    first, second = before[..., 0], before[..., 1]
    for d in range(start, BLOCK):
        first = rho * first + eps[d]
        second = rho * second + first
        out[d, ..., 0], out[d, ..., 1] = first, second
    return out


@dataclass(frozen=True)
class _State:
    """Where to resume the recursion: both stages just before block ``block`` (None: the record starts)."""

    modes: _Modes
    seed: int
    block: int
    before: np.ndarray | None

    def days(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, K, M, STATE_FIELDS) amplitudes of record days ``start <= d < stop``."""
        assert start >= self.block * BLOCK
        out, before = [], self.before
        for block in range(self.block, (stop - 1) // BLOCK + 1):
            before = _run_block(self.modes, self.seed, block, before)
            out.append(before)
            before = before[-1]
        stages = np.concatenate(out)[start - self.block * BLOCK : stop - self.block * BLOCK]
        return self.modes.gain * stages[..., 1]


def _checkpoints(modes: _Modes, seed: int, n_days: int) -> list[_State]:
    """One resumable state per block of the record; the same arithmetic as ``_State.days``, so bit-identical."""
    states = [_State(modes, seed, 0, None)]
    for block in range(1, (n_days - 1) // BLOCK + 1):
        states.append(_State(modes, seed, block, _run_block(modes, seed, block - 1, states[-1].before)[-1]))
    return states


# --- fixed geography -----------------------------------------------------------------------------------------


def _bump(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-(((x - centre) / width) ** 2))


def _climate(lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed fields at (lat, 1) x (lon,) degrees; every lon-dependent part vanishes at the poles."""
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
    z_surface = (900.0 + 800.0 * _bump(alat, 32.0, 13.0) - 400.0 * hemi * _bump(alat, 62.0, 10.0)
                 + 400.0 * _bump(alat, 90.0, 15.0)) + 0.0 * lon
    # Seasonal cycle t_season * cos(2 pi (t - warmest) / year) = cos(2 pi t / year) t_cos + sin(..) t_sin.
    warmest = 2 * np.pi * (NH_WARMEST + OCEAN_LAG * (1 - land)) / YEAR_DAYS
    t_cos, t_sin = t_season * np.cos(warmest), t_season * np.sin(warmest)
    # Thermal highs and lows: continents (more land than their latitude's mean) get lower surface pressure when
    # warm (summer monsoon lows), higher when cold (winter highs), with the land's seasonal phase.
    return {"t_mean": t_mean, "t_cos": t_cos, "t_sin": t_sin,
            "gain": 0.7 + 0.6 * land,  # weather temperature x gain at the surface: larger over land
            "z_surface": z_surface, "z_cos": -MONSOON * continents * t_cos, "z_sin": -MONSOON * continents * t_sin,
            "land": land}


_STEP = 1e-3  # deg, central differences of the (analytic) climate fields


@dataclass(frozen=True)
class _Geography:
    """Climate fields on the grid, (lat, lon), with their gradients per radian of lat and of lon."""

    lat: np.ndarray  # (lat,) deg
    lon: np.ndarray  # (lon,) deg
    fields: dict[str, np.ndarray]
    d_lat: dict[str, np.ndarray]
    d_lon_cos: dict[str, np.ndarray]  # d/dlon / cos(lat)
    rh: np.ndarray  # (lat, 1) climatological relative humidity near the surface
    diurnal: np.ndarray  # (lat, lon) diurnal half-range of t2m, K


def _geography(grid: str) -> _Geography:
    lat, lon = grid_coords(grid)
    col = lat[:, None]
    fields = _climate(col, lon)
    up, down = _climate(col + _STEP, lon), _climate(col - _STEP, lon)
    east, west = _climate(col, lon + _STEP), _climate(col, lon - _STEP)
    step = 2 * np.deg2rad(_STEP)
    d_lat = {name: (up[name] - down[name]) / step for name in fields}
    cos = np.maximum(np.cos(np.deg2rad(col)), 1e-6)  # every lon-dependent part vanishes faster at the poles
    d_lon_cos = {name: (east[name] - west[name]) / step / cos for name in fields}
    alat = np.abs(col)
    rh = (0.87 - 0.14 * _bump(col, 0.0, 14.0) - 0.12 * _bump(alat, 25.0, 9.0)).astype(np.float32)
    diurnal = (0.6 + 3.5 * fields["land"]) * np.cos(np.deg2rad(col))
    f32 = lambda d: {name: x.astype(np.float32) for name, x in d.items()}  # noqa: E731 - fields are float32 anyway
    return _Geography(lat, lon, f32(fields), f32(d_lat), f32(d_lon_cos), rh, diurnal)


def _season(times_days: np.ndarray, warmest: float | np.ndarray = NH_WARMEST) -> np.ndarray:
    """+1 at the NH seasonal temperature maximum, -1 half a year later."""
    return np.cos(2 * np.pi * (times_days - warmest) / YEAR_DAYS)


def _envelopes(lat: np.ndarray, season: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Latitude envelopes of the weather, (time, lat, 1), and their derivatives per radian of lat."""

    def env(x: np.ndarray) -> dict[str, np.ndarray]:
        extra = 1 - np.exp(-((x / 40.0) ** 2))  # 0 at the equator, ~1 poleward of 60 deg
        winter = 1 - WINTER_BOOST * season * np.tanh(x / 15.0)  # NH winter: season = -1
        return {"z": (0.12 + 0.88 * extra) * winter, "t": (0.25 + 0.75 * extra) * winter,
                "rh": 0.75 + 0.25 * extra}

    col = lat[None, :, None]
    up, down = env(col + _STEP), env(col - _STEP)
    slope = {name: (up[name] - down[name]) / (2 * np.deg2rad(_STEP)) for name in up}
    return ({name: x.astype(np.float32) for name, x in env(col).items()},
            {name: x.astype(np.float32) for name, x in slope.items()})


# --- fields from the spectral state --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Basis:
    """Meridional basis functions on the grid's latitudes, (M, lat): zonal mean, waves, waves / cos(lat)."""

    mean: np.ndarray
    d_mean: np.ndarray
    wave: np.ndarray
    d_wave: np.ndarray
    wave_over_cos: np.ndarray

    @classmethod
    def on(cls, lat: np.ndarray, m: np.ndarray) -> _Basis:
        phi = np.deg2rad(lat)[None, :]
        theta = phi + np.pi / 2  # colatitude from the south pole
        mm = m[:, None].astype(float)
        sin, cos = np.sin(mm * theta), np.cos(mm * theta)
        # Waves (k >= 1) vanish at the poles like cos(lat)^2, so v stays finite and single-valued there.
        return cls(cos, -mm * sin, np.cos(phi) * sin, -np.sin(phi) * sin + np.cos(phi) * mm * cos, sin)


def _to_grid(coef: np.ndarray, basis: _Basis, n_lon: int, n_gradients: int) -> dict[str, np.ndarray]:
    """(field, time, K, M) mode amplitudes -> (field, time, lat, lon) sums over modes on the grid.

    A field is ``sum_k Re(sum_m a_km B_m(lat) e^{ik lon})``: returns it (``value``) and, for the
    first ``n_gradients`` fields, its derivative per radian of latitude (``d_lat``) and its
    derivative per radian of longitude over cos(lat) (``d_lon_cos``, finite at the poles). The
    meridional sums are one matrix product per time step, so their shapes (and bits) never depend
    on how many steps a chunk holds.
    """
    n_time, n_k, n_m = coef.shape[1:]
    k = np.arange(1, n_k)
    out = {}
    for name, wave, mean in (("value", basis.wave, basis.mean), ("d_lat", basis.d_wave, basis.d_mean),
                             ("d_lon_cos", basis.wave_over_cos, None)):
        part = coef if name == "value" else coef[:n_gradients]
        n_field, n_lat = len(part), wave.shape[1]
        rows = np.stack([part[:, :, 1:].real, part[:, :, 1:].imag], axis=2)  # (field, time, 2, K - 1, M)
        rows = np.ascontiguousarray(np.moveaxis(rows, 1, 0), dtype=np.float32).reshape(n_time, -1, n_m)
        wave32 = wave.astype(np.float32)
        waves = np.empty((n_time, rows.shape[1], n_lat), dtype=np.float32)
        for t in range(n_time):
            np.matmul(rows[t], wave32, out=waves[t])
        waves = waves.reshape(n_time, n_field, 2, n_k - 1, n_lat)
        waves = np.moveaxis(waves[:, :, 0] + 1j * waves[:, :, 1], 0, 1)  # (field, time, K - 1, lat)
        if name == "d_lon_cos":
            waves = waves * (1j * k)[:, None]
        spec = np.zeros((n_field, n_time, n_lat, n_lon // 2 + 1), dtype=np.complex64)
        spec[..., 1:n_k] = (n_lon / 2) * np.swapaxes(waves, -1, -2)
        if mean is not None:
            zonal = np.ascontiguousarray(part[:, :, 0].real.swapaxes(0, 1), dtype=np.float32)  # (time, field, M)
            mean32 = mean.astype(np.float32)
            for t in range(n_time):
                spec[:, t, :, 0] = n_lon * (zonal[t] @ mean32)
        out[name] = np.fft.irfft(spec, n=n_lon, axis=-1)
    return out


def _weather(state: np.ndarray, modes: _Modes, t_rel: np.ndarray, first_day: int, basis: _Basis,
             n_lon: int) -> dict[str, np.ndarray]:
    """Unit-envelope weather at fractional days ``t_rel``: each field and, for z and t, d/dlat and d/dlon / cos(lat).

    ``state`` holds the days ``first_day ..`` (one more than the steps need, for sub-daily interpolation).
    """
    day = np.floor(t_rel).astype(int) - first_day
    frac = (t_rel - np.floor(t_rel))[:, None, None, None]
    a = state[day]  # (time, K, M, field)
    if frac.any():  # sub-daily steps: linear in time between days
        a = (1 - frac) * a + frac * state[np.minimum(day + 1, len(state) - 1)]
    travel = np.exp(-1j * np.outer(t_rel, modes.k * modes.speed))[:, :, None].astype(np.complex64)  # eastward drift
    z_hat, t_own, rh_own = (a[..., i] * travel for i in range(STATE_FIELDS))
    # Quarter wavelength east of the low (phase of d/dlon = +i); the zonal mean is locked in phase.
    east = np.where(modes.k[None, :, None] > 0, 1j, 1.0).astype(np.complex64)
    t_hat = T_LOCKED * east * z_hat + np.sqrt(1 - T_LOCKED**2) * t_own
    rh_share = np.hypot(*RH_LOCKED)
    rh_hat = RH_LOCKED[0] * z_hat + RH_LOCKED[1] * east * z_hat + np.sqrt(1 - rh_share**2) * rh_own
    amplitude = np.array([Z_AMPLITUDE, T_AMPLITUDE, RH_AMPLITUDE])[:, None, None] * modes.scale
    coef = np.stack([z_hat, t_hat, rh_hat]) * amplitude[:, None].astype(np.float32)
    grids = _to_grid(coef, basis, n_lon, n_gradients=2)
    value, d_lat, d_lon_cos = grids["value"], grids["d_lat"], grids["d_lon_cos"]
    return {"z": value[0], "dz_dlat": d_lat[0], "dz_dlon_cos": d_lon_cos[0],
            "t": value[1], "dt_dlat": d_lat[1], "dt_dlon_cos": d_lon_cos[1], "rh": value[2]}


def _level_temperature(t_surface: np.ndarray, level: float) -> np.ndarray:
    return np.maximum(t_surface * (level / P0) ** KAPPA_LAPSE, T_TROPOPAUSE)


def _thickness(t_surface: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Hypsometric 1000 hPa -> ``level`` thickness (lapse-rate troposphere, isothermal above) and d/dT_s."""
    ratio = (level / P0) ** KAPPA_LAPSE
    thick = GRAVITY / LAPSE * (1 - ratio) * t_surface
    slope = np.full_like(t_surface, GRAVITY / LAPSE * (1 - ratio))
    above = t_surface * ratio < T_TROPOPAUSE  # the level is in the stratosphere
    if above.any():
        t_s = np.maximum(t_surface[above], T_TROPOPAUSE + 1e-3)
        log_p_trop = np.log(T_TROPOPAUSE / t_s) / KAPPA_LAPSE + np.log(P0 / level)  # log(p_tropopause / level)
        thick[above] = GRAVITY * (t_s - T_TROPOPAUSE) / LAPSE + R_DRY * T_TROPOPAUSE * log_p_trop
        slope[above] = GRAVITY / LAPSE * (1 - T_TROPOPAUSE / t_s)
    return thick, slope


def _winds(dz_dlat: np.ndarray, dz_dlon_cos: np.ndarray, lat: np.ndarray,
           level: float) -> tuple[np.ndarray, np.ndarray]:
    """Geostrophic (u, v) from the geopotential gradient, blended to an easterly near the equator."""
    sign = np.where(lat >= 0, 1.0, -1.0)
    f = 2 * OMEGA * sign * np.maximum(np.abs(np.sin(np.deg2rad(lat))), np.sin(np.deg2rad(F_MIN_LAT)))
    ramp = np.clip((np.abs(lat) - GEO_LAT[0]) / (GEO_LAT[1] - GEO_LAT[0]), 0.0, 1.0)
    w = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    geo = (w / (f * EARTH_RADIUS))[:, None].astype(np.float32)
    easterly = ((1 - w) * EQ_EASTERLY * (level / P0) * _bump(lat, 0.0, 20.0))[:, None].astype(np.float32)
    return -geo * dz_dlat + easterly, geo * dz_dlon_cos


def _saturation_humidity(t: np.ndarray, level: float) -> np.ndarray:
    """Saturation specific humidity (kg/kg) over water, Bolton's e_s(T)."""
    e = 6.112 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    return 0.622 * e / (level - 0.378 * np.minimum(e, 0.5 * level))


def _noise(seed: int, first_day: int, n_days: int, steps: int, name: str, level: int, shape: tuple[int, int]) -> np.ndarray:
    """White noise per output field, drawn per BLOCK days seeded by (seed, block, field, level): independent of
    chunking and of the other fields."""
    b0 = first_day // BLOCK
    draws = [np.random.default_rng([seed, block, _NOISE_IDS[name], level, 104729]).standard_normal(
             (BLOCK * steps, *shape), dtype=np.float32) for block in range(b0, (first_day + n_days - 1) // BLOCK + 1)]
    start = (first_day - b0 * BLOCK) * steps
    return NOISE[name] * np.concatenate(draws)[start : start + n_days * steps]


def _fields(state: np.ndarray, modes: _Modes, geo: _Geography, basis: _Basis, t_rel: np.ndarray, t_abs: np.ndarray,
            first_day: int, steps: int, surface: tuple[str, ...], level_vars: tuple[str, ...],
            levels: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """All requested fields for whole days starting at record day ``first_day``, each (time, [level,] lat, lon).

    ``state`` holds the mode amplitudes from that day on, one day more than the steps need.
    """
    n_days = len(t_rel) // steps
    noise_shape = geo.fields["land"].shape
    lat = geo.lat

    def noise(name: str, level: int = 0) -> np.ndarray:
        return _noise(seed, first_day, n_days, steps, name, level, noise_shape)

    wx = _weather(state, modes, t_rel, first_day, basis, len(geo.lon))
    season = _season(t_abs)[:, None, None]
    env, d_env = _envelopes(lat, season)
    c, c_lat, c_lon = geo.fields, geo.d_lat, geo.d_lon_cos
    # Weather under its envelopes, and the gradients the winds need.
    z_wx = env["z"] * wx["z"]
    dz_wx_dlat = d_env["z"] * wx["z"] + env["z"] * wx["dz_dlat"]
    dz_wx_dlon_cos = env["z"] * wx["dz_dlon_cos"]
    t_wx = env["t"] * wx["t"]
    dt_wx_dlat = d_env["t"] * wx["t"] + env["t"] * wx["dt_dlat"]
    dt_wx_dlon_cos = env["t"] * wx["dt_dlon_cos"]
    # Surface temperature: climate + seasonal cycle + weather (larger over land), with its gradients.
    year = 2 * np.pi * t_abs[:, None, None] / YEAR_DAYS
    ct, st = np.cos(year).astype(np.float32), np.sin(year).astype(np.float32)

    def climate(x: dict[str, np.ndarray]) -> np.ndarray:
        return x["t_mean"] + ct * x["t_cos"] + st * x["t_sin"] + x["gain"] * t_wx

    t_surface = climate(c)
    dts_dlat = climate(c_lat) + c["gain"] * dt_wx_dlat
    dts_dlon_cos = climate(c_lon) + c["gain"] * dt_wx_dlon_cos
    z_surface = c["z_surface"] + ct * c["z_cos"] + st * c["z_sin"] + z_wx
    dzs_dlat = c_lat["z_surface"] + ct * c_lat["z_cos"] + st * c_lat["z_sin"] + dz_wx_dlat
    dzs_dlon_cos = ct * c_lon["z_cos"] + st * c_lon["z_sin"] + dz_wx_dlon_cos

    out: dict[str, np.ndarray] = {}
    if "2m_temperature" in surface:
        hour = (t_abs % 1.0)[:, None, None] * 24.0 + geo.lon / 15.0  # local solar time
        diurnal = geo.diurnal * np.cos(2 * np.pi * (hour - 15.0) / 24.0) if steps > 1 else 0.0
        out["2m_temperature"] = t_surface + diurnal + noise("t2m")
    per_level: dict[str, list[np.ndarray]] = {name: [] for name in level_vars}
    if "specific_humidity" in level_vars:
        itcz = ITCZ_SHIFT * np.tanh(lat / 10.0) * _bump(lat, 0.0, 30.0)
        itcz = (itcz[None, :, None] * _season(t_abs[:, None, None], ITCZ_NORTHMOST)).astype(np.float32)
        rh_weather = env["rh"] * wx["rh"]
    for level in levels:
        thick, d_thick = _thickness(t_surface, level)
        fields: dict[str, np.ndarray] = {}
        if {"temperature", "specific_humidity"} & set(level_vars):
            fields["temperature"] = _level_temperature(t_surface, level) + noise("t", level)
        if "geopotential" in level_vars:
            fields["geopotential"] = z_surface + thick + noise("z", level)
        if {"u_component_of_wind", "v_component_of_wind"} & set(level_vars):
            u, v = _winds(dzs_dlat + d_thick * dts_dlat, dzs_dlon_cos + d_thick * dts_dlon_cos, lat, level)
            fields["u_component_of_wind"] = u + noise("u", level)
            fields["v_component_of_wind"] = v + noise("v", level)
        if "specific_humidity" in level_vars:
            rh_mean = np.clip(geo.rh * (0.55 + 0.45 * level / P0) + itcz, 0.02, 0.98)  # drier aloft
            logit = np.log(rh_mean / (1 - rh_mean)) + rh_weather + noise("rh", level)
            rh = 1 / (1 + np.exp(-logit))  # in (0, 1): never supersaturated
            fields["specific_humidity"] = rh * _saturation_humidity(fields["temperature"], level)
        for name in level_vars:
            per_level[name].append(fields[name])
    out.update({name: np.stack(stack, axis=1) for name, stack in per_level.items()})
    return out


def _chunk(state: _State, t_rel: np.ndarray, t_abs: np.ndarray, first_day: int, steps: int, grid: str,
           surface: tuple[str, ...], level_vars: tuple[str, ...], levels: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """All requested fields for one chunk of days, each (time, [level,] lon, lat) float32."""
    geo = _geography(grid)
    basis = _Basis.on(geo.lat, state.modes.m)
    n_days = len(t_rel) // steps
    amplitudes = state.days(first_day, first_day + n_days + 1)  # +1: sub-daily steps interpolate to the next day
    batch = max(1, (1 << 20) // (steps * geo.fields["land"].size))  # days per batch: bounded memory on fine grids
    parts: dict[str, list[np.ndarray]] = {}
    for d0 in range(0, n_days, batch):
        d1 = min(d0 + batch, n_days)
        sl = slice(d0 * steps, d1 * steps)
        fields = _fields(amplitudes[d0 : d1 + 1], state.modes, geo, basis, t_rel[sl], t_abs[sl], first_day + d0,
                         steps, surface, level_vars, levels, seed)
        for name, x in fields.items():
            parts.setdefault(name, []).append(np.swapaxes(x, -1, -2).astype(np.float32))
    return {name: np.concatenate(x) for name, x in parts.items()}


def _steps_per_day(freq: str) -> int:
    try:
        step = pd.to_timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError):
        raise ValueError(f"freq '{freq}' is not a time step such as '1D' or '6h'") from None
    day = pd.Timedelta(days=1)
    if step <= pd.Timedelta(0) or step > day or day % step:
        raise ValueError(f"freq '{freq}' must divide one day, e.g. '1D', '12h', '6h' or '1h'")
    return int(day // step)


def record(data, variables: list[str], grid: str, progress: bool = True) -> xr.Dataset:
    """The ``synthetic`` source (:data:`sparta.sources.SOURCES`): :func:`synthetic_era5` of ``data`` (a DataConfig)."""
    source = synthetic_era5(variables, grid, data.start, data.days, data.seed)
    source.attrs["source"] = label(data)
    return source


def label(data) -> str:
    """What a store prepared from the ``synthetic`` source of ``data`` records as its source."""
    return f"synthetic(start={data.start}, years={data.years:g}, seed={data.seed})"


def synthetic_era5(variables: list[str] = DEFAULT_VARIABLES, grid: str = "64x32", start: str = "1980-01-01",
                   n_days: int = 365, seed: int = 0, freq: str = "1D", chunk_days: int = 365) -> xr.Dataset:
    """Lazy synthetic ERA5-like record in the WeatherBench2 schema.

    ``variables`` are WeatherBench2 specs (``'geopotential@850'``); every pressure-level
    variable is present at the sorted union of the requested levels, as in WB2. Dims are
    ``(time, longitude, latitude)`` and ``(time, level, longitude, latitude)``, float32,
    dask-chunked along time by ``chunk_days`` days. The values depend only on ``seed``,
    ``start``, the grid and the time step, never on ``chunk_days``, nor on which other
    variables are requested. Sub-daily ``freq`` (e.g. ``'6h'``) adds a diurnal cycle to t2m;
    its daily means behave like daily data.
    """
    specs = parse_generated(list(variables), SURFACE_VARIABLES, LEVEL_VARIABLES, "synthetic data")
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
    states = _checkpoints(_Modes.for_grid(grid), seed, n_days + 1)  # +1: sub-daily steps interpolate to the next day

    pieces: dict[str, list[da.Array]] = {name: [] for name in surface + level_vars}
    for d0 in range(0, n_days, chunk_days):
        d1 = min(d0 + chunk_days, n_days)
        sl = slice(d0 * steps, d1 * steps)
        task = dask.delayed(_chunk, pure=True)(states[d0 // BLOCK], t_rel[sl], t_abs[sl], d0, steps, grid,
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
