"""The prepared store: one memory-mappable array that training reads fast.

Layout of a store directory::

    fields.npy   float32 (time, channel, lat, lon), physical units, latitude ascending
    meta.json    times, channel names, lat/lon, per-channel mean/std (train split),
                 split boundaries, source, format version
    seasons.npy  int64 (time,), DJF=0, MAM=1, JJA=2, SON=3

``fields.npy`` is opened with ``mmap_mode='r'``, so memory does not grow with the
number of years. Normalisation is applied per batch by the consumer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparta.data.variables import Variable, parse_variables

STORE_FORMAT = 1
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The data cannot be used as given; the message says what is wrong and how to fix it."""


def season_labels(times: np.ndarray) -> np.ndarray:
    """Meteorological seasons from the month: DJF=0, MAM=1, JJA=2, SON=3."""
    months = times.astype("datetime64[M]").astype(np.int64) % 12 + 1
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
) -> PreparedStore:
    """Stream ``chunks`` (each ``(t, channel, lat, lon)``, in time order) into a prepared store.

    Statistics are accumulated on the train split in float64 while writing, so the
    whole record is never held in memory. ``progress(n_days)`` is called per chunk.
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

    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "fields.npy.partial"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    total = np.zeros(n_c)
    total_sq = np.zeros(n_c)
    count = 0
    nan_lines: list[str] = []
    start = 0
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
        out._mmap.close()
        tmp.unlink()
        raise DataError("non-finite values in the data (" + "; ".join(nan_lines) + "); "
                        "fill or drop those days before preparing")
    out.flush()
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
    }
    np.save(path / "seasons.npy", season_labels(times))
    os.replace(tmp, path / "fields.npy")
    meta_tmp = path / "meta.json.partial"
    meta_tmp.write_text(json.dumps(meta, indent=1))
    os.replace(meta_tmp, path / "meta.json")  # written last: its presence marks a complete store
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

    @classmethod
    def open(cls, path: str | Path) -> PreparedStore:
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            hint = "run `sparta data prepare --source ... --out DIR` first"
            if not path.exists():
                raise DataError(f"prepared store '{path}' does not exist; {hint}")
            raise DataError(f"'{path}' is not a complete prepared store (no meta.json); {hint}")
        try:
            meta = json.loads(meta_file.read_text())
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
        )

    @property
    def grid(self) -> str:
        return f"{len(self.lon)}x{len(self.lat)}"

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

    def check_matches(self, variables: list[str], grid: str) -> None:
        """Clear error when a model trained on other variables or another grid meets this store."""
        if list(variables) != list(self.variables):
            raise DataError(f"store '{self.path}' has variables {self.variables}, the model expects {variables}")
        if grid != self.grid:
            raise DataError(f"store '{self.path}' is on grid {self.grid}, the model expects {grid}")
