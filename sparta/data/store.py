"""The prepared store: one memory-mappable array that training reads fast.

Layout of a store directory::

    fields.npy     float32 (time, channel, lat, lon), physical units, latitude ascending
    meta.json      times, channel names, lat/lon, per-channel mean/std (train split),
                   split boundaries, source, format version, units per channel (CF
                   spelling), the time aggregation (daily means, or one sample per day),
                   and for a regional grid its box (lat/lon of the first and last cell
                   centres; longitudes monotonic, e.g. -10..2 across Greenwich)
    seasons.npy    int64 (time,), DJF=0, MAM=1, JJA=2, SON=3
    .sparta-store  marker: the directory is SPARTA's (written first, so an interrupted
                   prepare is recognised and may be redone)

``fields.npy`` is opened with ``mmap_mode='r'``, so memory does not grow with the
number of years. Normalisation is applied per batch by the consumer.

Variables on several grids (``data.variable_grids``) make a *mixed* store: one such store per
grid in a subdirectory ``grid-LONxLAT/``, all with the same days, and a ``meta.json`` that lists
them (``MIXED_FORMAT``). :func:`open_store` opens either kind; both read days with ``read``,
which returns one array, or a list with one per grid (see :mod:`sparta.grids`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparta.domain import Box, is_global_lon
from sparta.data.variables import Variable, parse_variables
from sparta.errors import UserError
from sparta.grids import Grid, layout_label
from sparta.outputs import atomic_write, check_free_space, check_output_dir, foreign_entries, listing

STORE_FORMAT = 1
MIXED_FORMAT = "mixed-1"
SPLITS = ("train", "val", "test")
STORE_MARKER = ".sparta-store"
_STORE_FILES = ("meta.json", "fields.npy", "seasons.npy", STORE_MARKER)


class DataError(UserError, ValueError):
    """The data cannot be used as given; the message says what is wrong and how to fix it."""


def _owned_by_store(root: Path):
    def owned(entry: Path) -> bool:
        if entry.is_dir() and not entry.is_symlink():  # the per-grid stores of a mixed store
            return len(entry.relative_to(root).parts) == 1 and bool(re.fullmatch(r"grid-\d+x\d+", entry.name))
        return entry.name in _STORE_FILES or entry.name.endswith(".partial")
    return owned


def is_store_directory(path: Path) -> bool:
    """Whether SPARTA made ``path``: it has the store marker, or a store's meta.json (stores made before the marker)."""
    if (path / STORE_MARKER).is_file():
        return True
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") in (STORE_FORMAT, MIXED_FORMAT) and "source" in meta


def claim_store_directory(path: str | Path, overwrite: bool = False, create: bool = True) -> Path:
    """Make ``path`` ready to receive a store, or refuse without touching anything.

    A complete store is replaced only with ``overwrite``; a directory that is not a SPARTA store, or a
    store that also holds files SPARTA did not write, is refused even then (those files are named).
    The old store's files stay until the new ones replace them (each by an atomic rename). ``create``
    makes the directory and marks it as SPARTA's; without it nothing is written.
    """
    path = check_output_dir(path)
    if path.exists() and any(path.iterdir()):
        foreign = foreign_entries(path, _owned_by_store(path))
        if not is_store_directory(path):
            everything = sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir())
            raise DataError(f"'{path}' is not empty and is not a SPARTA store (it holds {listing(everything)}); "
                            "SPARTA never overwrites files it did not write: choose a new or empty directory "
                            "for --out")
        if (path / "meta.json").exists() and not overwrite:
            raise DataError(f"'{path}' already holds a prepared store; pass --overwrite to replace it, "
                            "or choose another --out")
        if foreign:
            raise DataError(f"store '{path}' also holds files SPARTA did not write ({listing(foreign)}); "
                            "--overwrite replaces only a store's own files: move those out, or choose another "
                            "--out")
    if create:
        path.mkdir(parents=True, exist_ok=True)
        (path / STORE_MARKER).touch()
    return path


def month_index(times: np.ndarray) -> np.ndarray:
    """Calendar month of each datetime64 time, 0 (January) .. 11 (December)."""
    return times.astype("datetime64[M]").astype(np.int64) % 12


def monthly_climatology(store) -> list[np.ndarray] | np.ndarray:
    """Mean field of each calendar month over the store's train split, physical units: (12, C, H, W) float32
    (sums in float64), one array per grid for several; zeros for a month the split lacks."""
    a, b = store.split_range("train")
    months = month_index(store.times[a:b])
    per_month = []
    for m in range(12):
        days = np.flatnonzero(months == m) + a
        mean = [(np.asarray(part, dtype=np.float64).sum(0) / max(days.size, 1)).astype(np.float32)
                for part in _parts(store.read(days))]
        per_month.append(mean)
    stacked = [np.stack(parts) for parts in zip(*per_month)]
    return stacked if len(stacked) > 1 else stacked[0]


def _parts(x) -> list:
    return x if isinstance(x, list) else [x]


def season_labels(times: np.ndarray) -> np.ndarray:
    """Meteorological seasons from the month: DJF=0, MAM=1, JJA=2, SON=3."""
    months = month_index(times) + 1
    return ((months % 12) // 3).astype(np.int64)


def split_bounds(n: int, fractions: tuple[float, float, float]) -> dict[str, tuple[int, int]]:
    """Chronological split of ``n`` steps into contiguous train/val/test index ranges."""
    a = int(fractions[0] * n)
    b = a + int(fractions[1] * n)
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def check_time_axis(times: np.ndarray) -> None:
    """Refuse a non-monotonic time axis or one with gaps (daily data), naming where."""
    steps = np.diff(times.astype("datetime64[D]").astype(np.int64))
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = bad[0]
        raise DataError(f"time axis is not strictly increasing: {times[i]} is followed by {times[i + 1]} "
                        f"({bad.size} such places); sort the data by time and drop duplicates")
    gaps = np.flatnonzero(steps > 1)
    if gaps.size:
        listed = ", ".join(f"{times[i]}..{times[i + 1]}" for i in gaps[:5])
        raise DataError(f"time axis has {gaps.size} gap(s) in the daily record: {listed}; "
                        "provide a continuous record")


def _nan_report(chunk: np.ndarray, start: int, times: np.ndarray, channels: list[str]) -> list[str]:
    bad = ~np.isfinite(chunk)
    if not bad.any():
        return []
    per_time = bad.reshape(bad.shape[0], bad.shape[1], -1).sum(-1)
    out = []
    for c, name in enumerate(channels):
        t_idx = np.flatnonzero(per_time[:, c])
        if t_idx.size:
            out.append(f"{name}: {int(per_time[:, c].sum())} values on {t_idx.size} day(s) from {times[start + t_idx[0]]}")
    return out


def write_store(
    path: str | Path,
    chunks: Iterable[np.ndarray],
    times: np.ndarray,
    variables: list[str],
    lat: np.ndarray,
    lon: np.ndarray,
    source: str,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    progress=None,
    *,
    units: list[str] | None = None,
    time_aggregation: str = "daily values as given",
    extra: dict | None = None,
    overwrite: bool = False,
) -> PreparedStore:
    """Stream ``chunks`` (each ``(t, channel, lat, lon)``, in time order) into a prepared store.

    Statistics are accumulated on the train split in float64 while writing, so the
    whole record is never held in memory. ``progress(n_days)`` is called per chunk.
    ``units`` (one CF string per variable) and ``time_aggregation`` describe the values;
    ``extra`` adds entries to meta.json. An existing store at ``path`` is replaced only with
    ``overwrite`` (see :func:`claim_store_directory`).
    """
    path = Path(path)
    times = np.asarray(times).astype("datetime64[D]")
    check_time_axis(times)
    specs = [v.spec for v in parse_variables(variables)]
    channels = [Variable.parse(s).short for s in specs]
    n_t, n_c = len(times), len(specs)
    shape = (n_t, n_c, len(lat), len(lon))
    bounds = split_bounds(n_t, split)
    train_end = bounds["train"][1]
    if min(b - a for a, b in bounds.values()) < 1:
        raise DataError(f"{n_t} days are too few for a train/val/test split of {split}")

    if units is not None and len(units) != n_c:
        raise DataError(f"{len(units)} units given for {n_c} variables")
    claim_store_directory(path, overwrite)
    check_free_space(path, int(np.prod(shape)) * 4 + (1 << 20))
    tmp = path / "fields.npy.partial"
    total = np.zeros(n_c)
    total_sq = np.zeros(n_c)
    count = 0
    nan_lines: list[str] = []
    start = 0
    out = None
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            if chunk.shape[1:] != shape[1:]:
                raise DataError(f"chunk of shape {chunk.shape[1:]} does not match (channel, lat, lon) = {shape[1:]}")
            stop = start + chunk.shape[0]
            nan_lines += _nan_report(chunk, start, times, channels)
            out[start:stop] = chunk
            train_part = chunk[: max(0, min(stop, train_end) - start)].astype(np.float64)
            if train_part.size:
                total += train_part.sum(axis=(0, 2, 3))
                total_sq += (train_part**2).sum(axis=(0, 2, 3))
                count += train_part.shape[0] * shape[2] * shape[3]
            start = stop
            if progress is not None:
                progress(chunk.shape[0])
        if start != n_t:
            raise DataError(f"received {start} days of data for {n_t} time stamps")
        if nan_lines:
            raise DataError("non-finite values in the data (" + "; ".join(nan_lines) + "); "
                            "fill or drop those days before preparing")
        out.flush()
    except BaseException:  # a bad chunk, a full disk, Ctrl-C: no half-written fields stay behind
        if out is not None:
            out._mmap.close()
            del out
        tmp.unlink(missing_ok=True)
        raise
    del out
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    if np.any(std == 0):
        flat = [c for c, s in zip(channels, std) if s == 0]
        raise DataError(f"channel(s) {', '.join(flat)} are constant on the train split; they cannot be normalised")

    meta = {
        "format": STORE_FORMAT,
        "source": source,
        "variables": specs,
        "channels": channels,
        "times": [str(t) for t in times],
        "lat": [float(x) for x in lat],
        "lon": [float(x) for x in lon],
        "mean": mean.tolist(),
        "std": std.tolist(),
        "split_fractions": list(split),
        "splits": {k: list(v) for k, v in bounds.items()},
        "time_aggregation": time_aggregation,
        **({"units": dict(zip(channels, units))} if units is not None else {}),
        **(extra or {}),
    }
    np.save(path / "seasons.npy", season_labels(times))
    os.replace(tmp, path / "fields.npy")
    # written last: its presence marks a complete store
    atomic_write(path / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1)), path / "meta.json.partial")
    return PreparedStore.open(path)


@dataclass
class PreparedStore:
    path: Path
    fields: np.ndarray  # memmap (time, channel, lat, lon), physical units
    times: np.ndarray  # datetime64[D]
    seasons: np.ndarray
    variables: list[str]
    channels: list[str]
    lat: np.ndarray
    lon: np.ndarray
    mean: np.ndarray  # (channel,) float32
    std: np.ndarray
    splits: dict[str, tuple[int, int]]
    source: str
    units: dict[str, str] | None = None  # channel -> CF units; None for stores made before units were kept
    time_aggregation: str = "daily values as given"
    box: list[float] | None = None  # regional domain [lat_first, lat_last, lon_first, lon_last]; None: global

    @classmethod
    def open(cls, path: str | Path) -> PreparedStore:
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            hint = "run `sparta data prepare --source ... --out DIR` first"
            if not path.exists():
                raise DataError(f"prepared store '{path}' does not exist; {hint}")
            raise DataError(f"'{path}' is not a complete prepared store (no meta.json); {hint}")
        meta = _read_meta(meta_file)
        if meta.get("format") == MIXED_FORMAT:
            raise DataError(f"'{path}' is a store of variables on several grids; open it with open_store")
        try:
            fields = np.load(path / "fields.npy", mmap_mode="r")
            seasons = np.load(path / "seasons.npy")
        except (OSError, ValueError) as err:
            raise DataError(f"prepared store '{path}' is unreadable or corrupt: {err}") from None
        if meta.get("format") != STORE_FORMAT:
            raise DataError(f"prepared store '{path}' has format {meta.get('format')}, expected {STORE_FORMAT}; "
                            "prepare it again with this version")
        expected = (len(meta["times"]), len(meta["channels"]), len(meta["lat"]), len(meta["lon"]))
        if fields.shape != expected:
            raise DataError(f"prepared store '{path}': fields.npy has shape {fields.shape}, meta.json says {expected}")
        return cls(
            path=path,
            fields=fields,
            times=np.array(meta["times"], dtype="datetime64[D]"),
            seasons=seasons,
            variables=meta["variables"],
            channels=meta["channels"],
            lat=np.array(meta["lat"]),
            lon=np.array(meta["lon"]),
            mean=np.array(meta["mean"], dtype=np.float32),
            std=np.array(meta["std"], dtype=np.float32),
            splits={k: tuple(v) for k, v in meta["splits"].items()},
            source=meta["source"],
            units=meta.get("units"),
            time_aggregation=meta.get("time_aggregation", "daily values as given"),
            box=meta.get("box"),
        )

    @property
    def grid(self) -> str:
        return f"{len(self.lon)}x{len(self.lat)}"

    @property
    def layout(self) -> list[Grid]:
        return [Grid(tuple(self.channels), len(self.lat), len(self.lon), periodic=is_global_lon(self.lon))]

    @property
    def parts(self) -> list[PreparedStore]:
        """The single-grid stores this store is made of: itself (see :class:`MixedStore`)."""
        return [self]

    def read(self, days) -> np.ndarray:
        """Physical fields of ``days`` (an index, slice or index array); only those days leave the disk."""
        return np.asarray(self.fields[days])

    def split_range(self, name: str) -> tuple[int, int]:
        if name not in self.splits:
            raise KeyError(f"unknown split '{name}', expected one of {SPLITS}")
        return self.splits[name]

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """(..., channel, lat, lon) physical -> z-scored with the train-split statistics."""
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def denormalise(self, x):
        """Inverse of :meth:`normalise`; works on numpy arrays and torch tensors."""
        mean = self.mean[:, None, None]
        std = self.std[:, None, None]
        if hasattr(x, "new_tensor"):
            mean, std = x.new_tensor(mean), x.new_tensor(std)
        return x * std + mean


@dataclass
class MixedStore:
    """Variables on several grids: one :class:`PreparedStore` per grid, over the same days.

    Channels, variables and statistics are the parts' in order; fields are lists with one array
    per grid, and ``grid`` names every grid with its channels (``128x64[t2m]+64x32[z850,...]``).
    """

    path: Path
    parts: list[PreparedStore]
    source: str

    @classmethod
    def open(cls, path: str | Path) -> MixedStore:
        path = Path(path)
        meta = _read_meta(path / "meta.json")
        parts = [PreparedStore.open(path / sub) for sub in meta["grids"]]
        first = parts[0]
        for part in parts[1:]:
            if not np.array_equal(part.times, first.times) or part.splits != first.splits:
                raise DataError(f"mixed store '{path}': {part.path.name} covers other days or splits than "
                                f"{first.path.name}; prepare the store again")
        return cls(path, parts, meta["source"])

    @property
    def times(self) -> np.ndarray:
        return self.parts[0].times

    @property
    def seasons(self) -> np.ndarray:
        return self.parts[0].seasons

    @property
    def splits(self) -> dict[str, tuple[int, int]]:
        return self.parts[0].splits

    @property
    def variables(self) -> list[str]:
        return [v for part in self.parts for v in part.variables]

    @property
    def channels(self) -> list[str]:
        return [c for part in self.parts for c in part.channels]

    @property
    def mean(self) -> np.ndarray:
        return np.concatenate([part.mean for part in self.parts])

    @property
    def std(self) -> np.ndarray:
        return np.concatenate([part.std for part in self.parts])

    @property
    def layout(self) -> list[Grid]:
        return [grid for part in self.parts for grid in part.layout]

    @property
    def units(self) -> dict[str, str] | None:
        if any(part.units is None for part in self.parts):
            return None
        return {c: u for part in self.parts for c, u in part.units.items()}

    @property
    def time_aggregation(self) -> str:
        return self.parts[0].time_aggregation

    @property
    def box(self) -> list[float] | None:
        return self.parts[0].box

    @property
    def grid(self) -> str:
        return layout_label(self.layout)

    def split_range(self, name: str) -> tuple[int, int]:
        return self.parts[0].split_range(name)

    def read(self, days) -> list[np.ndarray]:
        return [part.read(days) for part in self.parts]

    def normalise(self, x: list[np.ndarray]) -> list[np.ndarray]:
        return [part.normalise(p) for part, p in zip(self.parts, x)]

    def denormalise(self, x: list) -> list:
        return [part.denormalise(p) for part, p in zip(self.parts, x)]


Store = PreparedStore | MixedStore


def check_matches(store: Store, variables: list[str], grid: str) -> None:
    """Clear error when a model trained on other variables or another grid meets ``store``."""
    if list(variables) != list(store.variables):
        raise DataError(f"store '{store.path}' has variables {store.variables}, the model expects {variables}")
    if grid != store.grid:
        raise DataError(f"store '{store.path}' is on grid {store.grid}, the model expects {grid}")


def same_box(a, b) -> bool:
    """Whether two domains (``None``: global, or a box as ``[lat_first, lat_last, lon_first, lon_last]``) agree."""
    a, b = (None if x is None else Box.parse(x).as_list() for x in (a, b))
    return (a is None) == (b is None) and (a is None or all(abs(x - y) < 1e-6 for x, y in zip(a, b)))


def domain_label(box) -> str:
    return "the global grid" if box is None else f"the box {Box.parse(box).as_list()}"


def check_domain(store: Store, box) -> None:
    """Clear error when a model trained on one domain (global, or a regional ``box``) meets a store of another
    domain with the same number of points."""
    if not same_box(store.box, box):
        raise DataError(f"store '{store.path}' covers {domain_label(store.box)}, the model was trained on "
                        f"{domain_label(box)} (data.box); prepare your data on the model's domain (`sparta data "
                        "prepare ... data.grid=... data.box=...` with the run's values)")


def write_mixed_meta(path: str | Path, parts: list[PreparedStore], source: str) -> MixedStore:
    """Mark ``path`` as a mixed store over the per-grid stores ``parts`` (its subdirectories)."""
    path = Path(path)
    meta = {"format": MIXED_FORMAT, "source": source, "grids": [part.path.name for part in parts]}
    atomic_write(path / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1)), path / "meta.json.partial")
    return MixedStore.open(path)


def open_store(path: str | Path) -> Store:
    """Open a prepared store, single-grid or mixed."""
    meta_file = Path(path) / "meta.json"
    if meta_file.exists() and _read_meta(meta_file).get("format") == MIXED_FORMAT:
        return MixedStore.open(path)
    return PreparedStore.open(path)


def _read_meta(meta_file: Path) -> dict:
    try:
        return json.loads(meta_file.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"prepared store '{meta_file.parent}' is unreadable or corrupt: {err}") from None
