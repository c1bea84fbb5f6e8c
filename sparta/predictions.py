"""What a downstream task predicts, kept apart from how it is scored (WeatherBench2's layout).

A prediction is an ``xarray.Dataset`` with one data variable per channel (``t2m``, ``z850``, ...) in physical
units, its dims the task's own (``hidden`` fraction, ``lead``, ...), then ``time`` (the valid day), ``lat`` and
``lon``. Variables on several grids keep each grid's coordinates as ``lat_<grid>`` / ``lon_<grid>``. A task
writes its predictions to ``evaluation/predictions/<task>.zarr``; :mod:`sparta.scores` scores them against the
store's truth, so a new metric scores saved predictions without running a model again (``sparta evaluate
--rescore``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sparta import grids
from sparta.grids import Fields
from sparta.outputs import atomic_write

PREDICTIONS_DIR = "predictions"
"""The folder under a run's ``evaluation/`` that holds the tasks' predictions."""


def _grid_dims(store) -> list[tuple[str, str]]:
    """The (lat, lon) dim names of each of the store's grids: plain for one grid, suffixed by the grid for several."""
    parts = store.parts
    return [("lat", "lon")] if len(parts) == 1 else [(f"lat_{p.grid}", f"lon_{p.grid}") for p in parts]


def to_dataset(fields: Fields, store, dims: Sequence[str], coords: dict[str, np.ndarray]) -> xr.Dataset:
    """Fields ``(*leading, C, H, W)`` (or one array per grid) as a prediction Dataset: one variable per channel,
    dims ``(*dims, lat, lon)``, ``coords`` for the leading ``dims`` (e.g. ``hidden``, ``time``)."""
    out = {}
    for part, values, (lat, lon) in zip(store.parts, grids.as_list(fields), _grid_dims(store), strict=True):
        values = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float32)
        if values.ndim != len(dims) + 3:
            raise ValueError(f"expected fields with dims ({', '.join(dims)}, channel, lat, lon), got shape "
                             f"{values.shape}")
        coords = {**coords, lat: np.asarray(part.lat), lon: np.asarray(part.lon)}
        for c, channel in enumerate(part.channels):
            units = (part.units or {}).get(channel)
            out[channel] = xr.DataArray(values[..., c, :, :], dims=(*dims, lat, lon),
                                        coords={d: coords[d] for d in (*dims, lat, lon)},
                                        attrs={"units": units} if units else {})
    return xr.Dataset(out)


def to_fields(ds: xr.Dataset, store, dims: Sequence[str] = ("time",)) -> Fields:
    """A prediction Dataset as float32 tensors ``(*dims, C, H, W)`` in the store's channel order (one per grid for
    several): the form :mod:`sparta.metrics` scores."""
    parts = []
    for part, (lat, lon) in zip(store.parts, _grid_dims(store), strict=True):
        missing = [c for c in part.channels if c not in ds]
        if missing:
            raise ValueError(f"the predictions lack the store's variable(s) {', '.join(missing)}")
        stacked = np.stack([ds[c].transpose(*dims, lat, lon).values for c in part.channels], axis=len(dims))
        parts.append(torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)))
    return parts if len(parts) > 1 else parts[0]


def day_indices(days: np.ndarray, times: np.ndarray) -> torch.Tensor | None:
    """The indices into ``days`` (ascending) of a prediction's valid ``times``, or None where one is not among them."""
    days = np.asarray(days).astype("datetime64[ns]")
    times = np.asarray(times, dtype="datetime64[ns]")
    found = np.minimum(np.searchsorted(days, times), len(days) - 1)
    return torch.from_numpy(found) if len(days) and (days[found] == times).all() else None


def path_of(evaluation: Path, task: str) -> Path:
    return evaluation / PREDICTIONS_DIR / f"{task}.zarr"


def write_predictions(evaluation: Path, task: str, blocks: Iterable[xr.Dataset], dim: str) -> Path:
    """Write a task's predictions, ``blocks`` concatenated along ``dim`` (e.g. one hidden fraction each, made as
    they are written, so a large prediction never sits in memory whole). The store replaces the previous one only
    once complete: an interrupted task leaves the previous predictions (or none), never a partial one."""
    path = path_of(evaluation, task)

    def write(tmp: Path) -> None:
        for k, block in enumerate(blocks):
            # zarr format 2, as `sparta embed` writes: every zarr reads it; format 3 has no spec for string coordinates
            block.to_zarr(tmp, **({"append_dim": dim} if k else {"mode": "w"}), zarr_format=2, consolidated=False)

    atomic_write(path, write, path.with_name(f".{path.name}.tmp-{os.getpid()}"))
    return path


def open_predictions(evaluation: Path, task: str) -> xr.Dataset | None:
    """A task's saved predictions (lazily read), or None where the task has not written any."""
    path = path_of(evaluation, task)
    return xr.open_zarr(path, consolidated=False) if path.is_dir() else None
