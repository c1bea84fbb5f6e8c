"""SPEEDY weather: daily means simulated by a real atmosphere model, in the WeatherBench2 schema.

The model is ``jcm`` (JAX): the Dinosaur spectral primitive-equation core with the SPEEDY
intermediate-complexity physics (convection, condensation, clouds, radiation, surface fluxes, a land
model), driven by SPEEDY's own T30 climatological boundaries shipped with the package (orography,
land-sea mask, SST, sea ice, snow, soil moisture), so the seasons cycle and nothing is downloaded.

Two halves:

* :func:`simulate` (run in its own process, :func:`ensure_simulated`: JAX beside torch in one process
  competes for threads and memory) integrates from rest, perturbed by the seed, in chunks of
  ``chunk_days``, and keeps the daily means of the model's own fields (u, v, T, q and geopotential on
  its 8 sigma levels, surface pressure, the near-surface air temperature) in a cache keyed by the
  settings. Each chunk's file and the model state after it are written atomically, so a killed
  simulation resumes from its last finished chunk, and a longer record with the same settings extends
  a shorter one (a record is a prefix of any longer one). A record may be cut into ``runs``
  independent simulations, consecutive in date (:func:`record_runs`): one integration is serial and
  uses one core, so runs side by side finish ``runs`` times sooner, at the price of a jump in the
  weather at each join.
* :func:`speedy_era5` reads the cache as a lazy WeatherBench2-schema dataset on the model's Gaussian
  grid: pressure levels from sigma levels (:func:`to_pressure`), geopotential in m**2 s**-2, 2 m
  temperature from SPEEDY's near-surface air temperature. ``data prepare`` then regrids it
  conservatively to the configured grid, as any other source on another grid.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from sparta.data.store import DataError
from sparta.data.variables import parse_generated

GRAVITY = 9.80665  # m s-2
R_DRY = 287.05  # J kg-1 K-1
VIRTUAL = 0.608  # virtual temperature Tv = T (1 + 0.608 q)
LAPSE = 0.0065  # K m-1: the standard atmosphere's, below the lowest model level (as ECMWF's post-processing)
P_REF = 1.0e5  # Pa: jcm's surface pressure is normalised by this
SURFACE_VARIABLES = {"2m_temperature": "t2m"}
LEVEL_VARIABLES = {"geopotential": "z", "temperature": "t", "u_component_of_wind": "u",
                   "v_component_of_wind": "v", "specific_humidity": "q"}
UNITS = {"2m_temperature": "K", "geopotential": "m**2 s**-2", "temperature": "K", "u_component_of_wind": "m s**-1",
         "v_component_of_wind": "m s**-1", "specific_humidity": "kg kg**-1"}
TIME_STEP_MINUTES = {21: 60.0, 31: 40.0}  # the longest stable steps (40 min is SPEEDY's own T30 step)
FORMAT = 1  # of the cache's files; part of the key, so a change never reads an old cache


def jcm_version() -> str:
    try:
        return version("jcm")
    except PackageNotFoundError:
        raise DataError("the SPEEDY source needs the atmosphere model jcm: pip install 'jcm==3.0.*'") from None


@dataclass(frozen=True)
class Simulation:
    """What decides a simulated record, and so names its cache (``key``); its length does not."""

    start: str  # the first day kept; the model starts spinup_days earlier
    seed: int
    truncation: int = 21
    spinup_days: int = 180
    chunk_days: int = 30

    def __post_init__(self) -> None:
        if self.truncation not in TIME_STEP_MINUTES:
            raise DataError(f"data.gcm_truncation must be one of {sorted(TIME_STEP_MINUTES)}, got {self.truncation}")
        if self.spinup_days < 0 or self.chunk_days < 1:
            raise DataError(f"spin-up ({self.spinup_days}) must be >= 0 days and chunks ({self.chunk_days}) >= 1")

    @property
    def model_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.start).normalize() - pd.Timedelta(days=self.spinup_days)

    def settings(self) -> dict:
        return {"model": "jcm (Dinosaur dynamical core, SPEEDY physics, SPEEDY T30 climatological boundaries)",
                "jcm_version": jcm_version(), "time_step_minutes": TIME_STEP_MINUTES[self.truncation],
                "format": FORMAT, **asdict(self)}

    @property
    def key(self) -> str:
        text = json.dumps(self.settings(), sort_keys=True)
        return f"T{self.truncation}-seed{self.seed}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def chunks_for(self, n_days: int) -> int:
        return -(-(self.spinup_days + n_days) // self.chunk_days)

    def label(self, n_days: int, runs: int = 1) -> str:
        cut = f", runs={runs}" if runs > 1 else ""
        return (f"speedy(start={pd.Timestamp(self.start).date()}, days={n_days}, seed={self.seed}, "
                f"T{self.truncation}, spinup={self.spinup_days}d{cut}, jcm {jcm_version()})")


def record_runs(start: str, n_days: int, seed: int, runs: int = 1, truncation: int = 21, spinup_days: int = 180,
                chunk_days: int = 30) -> list[tuple[Simulation, int]]:
    """The simulations a record of ``n_days`` from ``start`` is made of, and the days each keeps.

    Run k keeps the k-th block of ceil(n_days / runs) days, from its own spin-up and with seed + k; the first
    is the one-run record's simulation, so its cache is shared with it.
    """
    if runs < 1:
        raise DataError(f"a SPEEDY record is made of at least one run, got {runs}")
    block = -(-n_days // runs)
    first_day = pd.Timestamp(start).normalize()
    parts = []
    for k in range(runs):
        days = min(block, n_days - k * block)
        if days < 1:
            break
        run_start = str(start) if k == 0 else str((first_day + pd.Timedelta(days=k * block)).date())
        parts.append((Simulation(start=run_start, seed=seed + k, truncation=truncation, spinup_days=spinup_days,
                                 chunk_days=chunk_days), days))
    return parts


def cache_root() -> Path:
    """``$SPARTA_CACHE`` or ``$XDG_CACHE_HOME/sparta`` (``~/.cache/sparta``): simulations are reused across stores."""
    if os.environ.get("SPARTA_CACHE"):
        return Path(os.environ["SPARTA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparta"


def _chunk_file(folder: Path, i: int) -> Path:
    return folder / f"chunk-{i:05d}.npz"


def _state_file(folder: Path, i: int) -> Path:
    return folder / f"state-{i:05d}.jcm"


def _done_chunks(folder: Path) -> int:
    """Chunks finished from the first: the state after chunk i is written after its file, so i + 1 of them."""
    states = sorted(folder.glob("state-*.jcm"))
    return int(states[-1].stem.removeprefix("state-")) + 1 if states else 0


def ensure_simulated(sim: Simulation, n_days: int, progress: bool = True, root: Path | None = None) -> Path:
    """The cache folder holding at least ``n_days`` kept days of ``sim``, simulating what is missing."""
    return ensure_all([(sim, n_days)], progress, root)[0]


def ensure_all(parts: list[tuple[Simulation, int]], progress: bool = True, root: Path | None = None) -> list[Path]:
    """The cache folders of ``(simulation, days)`` pairs, simulating what is missing, one child process per
    simulation and as many at once as this process may use cores (one integration keeps one core busy).

    Ctrl-C or a kill loses at most each child's chunk in progress; a failed child stops the others.
    """
    folders = [(root or cache_root()) / "speedy" / sim.key for sim, _ in parts]
    todo = [(sim, n, folder) for (sim, n), folder in zip(parts, folders) if _done_chunks(folder) < sim.chunks_for(n)]
    if not todo:
        return folders
    for sim, _, folder in todo:
        folder.mkdir(parents=True, exist_ok=True)
        settings = folder / "settings.json"
        if not settings.exists():
            tmp = folder / f".settings.json.partial-{os.getpid()}"
            tmp.write_text(json.dumps(sim.settings(), indent=1))
            os.replace(tmp, settings)
    # JAX on CPU: one process, its threads, no preallocation games; keep torch's thread settings out of it.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
    slots = max(1, min(len(todo), cores))
    waiting, running = list(todo), []
    total = sum(sim.chunks_for(n) * sim.chunk_days for sim, n, _ in todo)
    from tqdm import tqdm

    def simulated_days() -> int:
        return sum(min(_done_chunks(folder), sim.chunks_for(n)) * sim.chunk_days for sim, n, folder in todo)

    with tqdm(total=total, initial=simulated_days(), unit="day", desc="simulating SPEEDY",
              disable=not progress) as bar:
        try:
            while waiting or running:
                while waiting and len(running) < slots:
                    sim, n, folder = waiting.pop(0)
                    command = [sys.executable, "-m", "sparta.data.speedy", str(folder), str(n)]
                    running.append((subprocess.Popen(command, env=env), folder))
                for child, folder in list(running):
                    if child.poll() is None:
                        continue
                    running.remove((child, folder))
                    if child.returncode != 0:
                        raise DataError(f"the SPEEDY simulation stopped (exit code {child.returncode}); what it "
                                        f"finished is kept in '{folder}' and the next prepare continues from there")
                if (days := simulated_days()) > bar.n:
                    bar.update(days - bar.n)
                if running:
                    time.sleep(0.5)
        finally:
            for child, _ in running:  # after an error or Ctrl-C: the others stop too, keeping their chunks
                child.terminate()
                child.wait()
    return folders


def simulate(folder: Path, n_days: int) -> None:
    """Integrate the simulation described by ``folder/settings.json`` until ``n_days`` kept days exist.

    Holds an exclusive lock on the folder, so two prepares of the same record never write it at once
    (the second waits, then finds the work done). The lock dies with the process.
    """
    sim = Simulation(**{k: v for k, v in json.loads((folder / "settings.json").read_text()).items()
                        if k in Simulation.__dataclass_fields__})
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for partial in folder.glob(".chunk-*.partial-*"):  # a killed writer's leftovers; ours, never read
            partial.unlink()
        _integrate(sim, folder, n_days)


def _integrate(sim: Simulation, folder: Path, n_days: int) -> None:
    import jcm
    from jcm.checkpoint import load_checkpoint, save_checkpoint
    from jcm.forcing import ForcingData
    from jcm.model import Model
    from jcm.physics.speedy.speedy_coords import get_speedy_coords
    from jcm.terrain import TerrainData

    n_chunks = sim.chunks_for(n_days)
    done = _done_chunks(folder)
    if done >= n_chunks:
        return
    boundaries = Path(jcm.__file__).parent / "data" / "bc" / "t30" / "clim"
    coords = get_speedy_coords(spectral_truncation=sim.truncation)
    terrain = TerrainData.from_file(boundaries / "terrain.nc", coords=coords)
    forcing = ForcingData.from_file(boundaries / "forcing.nc", coords=coords, align_mode="wrap_year")
    model = Model(coords=coords, terrain=terrain, time_step=TIME_STEP_MINUTES[sim.truncation],
                  start_time=str(sim.model_start.date()))
    model.bootstrap_state(model.initial_state(random_seed=sim.seed))
    if done:
        load_checkpoint(model, _state_file(folder, done - 1))
    sigma = np.asarray(coords.vertical.centers, dtype=np.float64)
    lat = np.rad2deg(np.asarray(coords.horizontal.latitudes, dtype=np.float64))
    lon = np.rad2deg(np.asarray(coords.horizontal.longitudes, dtype=np.float64))
    for i in range(done, n_chunks):
        predictions = model.resume(forcing=forcing, save_interval=1.0, total_time=sim.chunk_days,
                                   output_averages=True)
        first_day = i * sim.chunk_days
        if first_day + sim.chunk_days > sim.spinup_days:
            fields = predictions.dynamics
            arrays = {name: np.asarray(getattr(fields, attr), dtype=np.float32) for name, attr in
                      (("u", "u_wind"), ("v", "v_wind"), ("t", "temperature"), ("q", "specific_humidity"),
                       ("z", "geopotential"))}
            arrays["ps"] = (np.asarray(fields.normalized_surface_pressure) * P_REF).astype(np.float32)
            arrays["t2m"] = np.asarray(predictions.physics["_surface_flux"].t0, dtype=np.float32)
            _write_npz(_chunk_file(folder, i), first_day=first_day, sigma=sigma, lat=lat, lon=lon, **arrays)
        save_checkpoint(model, _state_file(folder, i))
        _state_file(folder, i - 1).unlink(missing_ok=True)  # only the newest state is needed to go on


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


# --- from the model's sigma levels to pressure levels ------------------------------------------------------


def to_pressure(name: str, fields: dict[str, np.ndarray], sigma: np.ndarray, level_hpa: float) -> np.ndarray:
    """``name`` ('z', 't', 'u', 'v' or 'q') at ``level_hpa`` from the model's sigma levels.

    ``fields`` holds ``(time, level, lon, lat)`` arrays on the sigma levels ``sigma`` (top first) and the
    surface pressure ``ps`` (Pa, ``(time, lon, lat)``); level k lies at ``p = sigma[k] * ps``. Between
    levels T, u, v and q are linear in ln p, and geopotential follows hydrostatically from the level below
    with that (virtual) temperature profile, as the model builds its own levels. Below the lowest level
    (0.95 ps), and so below ground where the surface pressure is under the target (mountains), values are
    extrapolated as ECMWF's pressure-level post-processing does rather than masked: T and geopotential
    along the standard lapse rate from the lowest level, winds and humidity held at the lowest level's
    values (humidity never goes negative). Above the top level T, u, v and q keep the top level's values.
    """
    target = level_hpa * 100.0 / fields["ps"]  # the level's sigma in each column
    log_s = np.log(sigma)
    k = np.clip(np.searchsorted(sigma, target), 1, len(sigma) - 1)  # target between levels k-1 and k
    log_t = np.log(target)
    w = np.clip((log_t - log_s[k - 1]) / (log_s[k] - log_s[k - 1]), 0.0, 1.0)  # 0: level k-1, 1: level k

    def at(x: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, index[:, None], axis=1)[:, 0]

    def between(x: np.ndarray) -> np.ndarray:
        return (1 - w) * at(x, k - 1) + w * at(x, k)

    below = target > sigma[-1]
    t_low = fields["t"][:, -1]
    power = R_DRY * LAPSE / GRAVITY
    if name in ("u", "v", "q"):
        value = np.where(below, fields[name][:, -1], between(fields[name]))
    elif name == "t":
        value = np.where(below, t_low * (target / sigma[-1]) ** power, between(fields["t"]))
    elif name == "z":
        # Hydrostatic from level k, whose pressure is above the target's: Phi = Phi_k + R <Tv> ln(p_k / p), <Tv>
        # the ln p-mean of the virtual temperature between them, exact for Tv linear in ln p. The model builds its
        # levels' geopotential the same way (checked: it matches to 4e-5 of each layer's thickness).
        tv = fields["t"] * (1 + VIRTUAL * fields["q"])
        inside = at(fields["z"], k) + R_DRY * 0.5 * (between(tv) + at(tv, k)) * (log_s[k] - log_t)
        extrapolated = fields["z"][:, -1] + tv[:, -1] / LAPSE * GRAVITY * (1 - (target / sigma[-1]) ** power)
        value = np.where(below, extrapolated, inside)
    else:
        raise ValueError(f"no pressure-level field '{name}'")
    return value.astype(np.float32)


# --- the cache as a WeatherBench2-schema dataset -----------------------------------------------------------


def _chunk_fields(path: Path, keep: slice, surface: tuple[str, ...], level_vars: tuple[str, ...],
                  levels: tuple[int, ...]) -> dict[str, np.ndarray]:
    with np.load(path) as raw:
        fields = {name: raw[name][keep] for name in ("u", "v", "t", "q", "z", "ps", "t2m")}
        sigma = raw["sigma"]
    out = {name: fields[SURFACE_VARIABLES[name]] for name in surface}
    for name in level_vars:
        out[name] = np.stack([to_pressure(LEVEL_VARIABLES[name], fields, sigma, lev) for lev in levels], axis=1)
    return out


def record(data, variables: list[str], grid: str, progress: bool = True) -> xr.Dataset:
    """The ``speedy`` source (:data:`sparta.sources.SOURCES`): :func:`speedy_era5` of ``data`` (a DataConfig),
    on the model's own grid whatever ``grid`` (the store regrids it)."""
    return speedy_era5(variables, data.start, data.days, data.seed, data.gcm_truncation, data.spinup_days,
                       progress, runs=data.gcm_runs)


def label(data) -> str:
    """What a store prepared from the ``speedy`` source of ``data`` records as its source."""
    return Simulation(data.start, data.seed, data.gcm_truncation, data.spinup_days).label(data.days, data.gcm_runs)


def speedy_era5(variables: list[str], start: str, n_days: int, seed: int, truncation: int = 21,
                spinup_days: int = 180, progress: bool = True, root: Path | None = None,
                chunk_days: int = 30, runs: int = 1) -> xr.Dataset:
    """Lazy ``n_days`` of SPEEDY daily means from ``start``, simulated first if the cache lacks them.

    Dims ``(time, longitude, latitude)`` and ``(time, level, longitude, latitude)`` on the model's
    Gaussian grid (latitude ascending), float32, in WeatherBench2's names and units; every pressure-level
    variable at the sorted union of the requested levels. ``runs`` > 1 cuts the record into that many
    independent simulations (:func:`record_runs`), simulated side by side. ``attrs['source']`` names the
    record and ``attrs['provenance']`` the model, its version and settings.
    """
    try:
        specs = parse_generated(variables, SURFACE_VARIABLES, LEVEL_VARIABLES, "SPEEDY data")
    except ValueError as err:
        raise DataError(str(err)) from None
    if n_days < 1:
        raise DataError(f"a SPEEDY record needs at least one day, got {n_days}")
    parts = record_runs(str(start), n_days, seed, runs, truncation, spinup_days, chunk_days)
    folders = ensure_all(parts, progress, root)
    surface = tuple(dict.fromkeys(v.name for v in specs if v.level is None))
    level_vars = tuple(dict.fromkeys(v.name for v in specs if v.level is not None))
    levels = tuple(sorted({v.level for v in specs if v.level is not None}))
    sim = parts[0][0]
    with np.load(_chunk_file(folders[0], sim.spinup_days // sim.chunk_days)) as first:
        lat, lon = first["lat"], first["lon"]
    pieces: dict[str, list] = {name: [] for name in surface + level_vars}
    for (run, run_days), folder in zip(parts, folders):
        for i in range(run.spinup_days // run.chunk_days, run.chunks_for(run_days)):
            first_day = i * run.chunk_days  # of the simulation, spin-up included
            lo = max(run.spinup_days - first_day, 0)
            hi = min(run.spinup_days + run_days - first_day, run.chunk_days)
            task = dask.delayed(_chunk_fields, pure=True)(_chunk_file(folder, i), slice(lo, hi), surface,
                                                          level_vars, levels)
            for name in pieces:
                shape = (hi - lo, *((len(levels),) if name in level_vars else ()), len(lon), len(lat))
                pieces[name].append(da.from_delayed(task[name], shape, dtype=np.float32))
    times = pd.date_range(pd.Timestamp(start).normalize(), periods=n_days, freq="D")
    coords = {"time": times.values.astype("datetime64[ns]"), "longitude": lon, "latitude": lat}
    if levels:
        coords["level"] = np.array(levels, dtype=np.int64)
    data_vars = {}
    for name, parts_of_variable in pieces.items():
        dims = ("time", "level", "longitude", "latitude") if name in level_vars else ("time", "longitude", "latitude")
        data_vars[name] = xr.Variable(dims, da.concatenate(parts_of_variable, axis=0), attrs={"units": UNITS[name]})
    settings = sim.settings() if runs == 1 else {**sim.settings(), "runs": len(parts)}
    return xr.Dataset(data_vars, coords=coords, attrs={
        "source": sim.label(n_days, runs), "provenance": json.dumps(settings, sort_keys=True)})


if __name__ == "__main__":
    # jcm's boundary-data interpolation calls xr.merge without compat=, and xarray warns about a future default
    # that cannot change this fixed, shipped data: a line the user can do nothing about, before the progress bar.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"jcm(\.|$)")
    simulate(Path(sys.argv[1]), int(sys.argv[2]))
