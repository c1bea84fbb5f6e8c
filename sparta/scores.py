"""Scores of predictions (:mod:`sparta.predictions`) against the truth: every registered metric, as a labelled
Dataset.

The metrics are the registries of :mod:`sparta.metrics`: :data:`~sparta.metrics.FIELD_METRICS`, pooled over
the variables (one value per prediction), and :data:`~sparta.metrics.VARIABLE_METRICS`, one value per variable
(dim ``variable``, in each variable's display unit). A metric added to either is scored here for every
prediction, baselines included, and reaches metrics.json, its tables and figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from torch import Tensor

from sparta import metrics
from sparta.grids import Fields
from sparta.outputs import atomic_write


@dataclass(frozen=True)
class Reference:
    """What a prediction of some days is scored against: the truth of those days and their climatology (physical
    units), the grid's area weights, the downstream-train block's per-channel range (the paper's SSIM and PSNR
    scaling), and each channel's factor to its display unit."""

    truth: Fields
    climatology: Fields
    weights: Any
    train_range: tuple
    channels: Sequence[str]
    unit_factors: dict[str, float]


def pooled_scores(pred: Fields, truth: Fields, train_range: tuple, keys: Sequence[str] | None = None
                  ) -> dict[str, float]:
    """Each :data:`~sparta.metrics.FIELD_METRICS` score (those of ``keys``; default all) of physical-unit fields
    ``(N, C, H, W)`` (or one per grid); ``train_range``: the per-channel minimum and maximum of the
    downstream-train block, for the paper's min-max scaling."""
    lo, hi = train_range
    return {name: float(metric.score(pred, truth, lo, hi)) for name, metric in metrics.FIELD_METRICS.items()
            if keys is None or name in keys}


def day_scores(pred: Fields, ref: Reference) -> dict[str, Tensor]:
    """``{metric: (N, C)}``: each :data:`~sparta.metrics.VARIABLE_METRICS` entry's per-day values (store units)."""
    return {name: metric.per_day(pred, ref.truth, ref.climatology, ref.weights)
            for name, metric in metrics.VARIABLE_METRICS.items()}


def variable_values(per_day: dict[str, Tensor], channels: Sequence[str], unit_factors: dict[str, float]
                    ) -> dict[str, np.ndarray]:
    """``{metric: (C,)}``: per-day values (:func:`day_scores`, any subset of the days) reduced over the days, in
    each channel's display unit."""
    out = {}
    for name, values in per_day.items():
        metric = metrics.VARIABLE_METRICS[name]
        factors = np.array([unit_factors[c] if metric.in_units else 1.0 for c in channels])
        out[name] = metric.reduce(values).numpy() * factors
    return out


def score(pred: Fields, ref: Reference, pooled: Sequence[str] | None = None) -> xr.Dataset:
    """Every metric of ``pred`` (``(N, C, H, W)`` days, or one array per grid) against ``ref``: a scalar variable
    per pooled metric (those named in ``pooled``; default all), a ``(variable,)`` one per per-variable metric."""
    out: dict[str, xr.DataArray] = {name: xr.DataArray(value) for name, value in
                                    pooled_scores(pred, ref.truth, ref.train_range, pooled).items()}
    for name, values in variable_values(day_scores(pred, ref), ref.channels, ref.unit_factors).items():
        out[name] = xr.DataArray(values, dims="variable", coords={"variable": list(ref.channels)})
    return xr.Dataset(out)


def per_variable(scores: xr.Dataset) -> dict[str, dict[str, Any]]:
    """``{metric: {variable: value or list along the remaining dim}}``: metrics.json's ``per_variable`` block."""
    return {name: {str(c): _plain(scores[name].sel(variable=c)) for c in scores[name]["variable"].values}
            for name in metrics.VARIABLE_METRICS if name in scores}


def pooled(scores: xr.Dataset) -> dict[str, Any]:
    """``{metric: value or list}`` of the pooled metrics in ``scores``."""
    return {name: _plain(scores[name]) for name in metrics.FIELD_METRICS if name in scores}


def _plain(values: xr.DataArray):
    return float(values) if values.ndim == 0 else [float(v) for v in values.values]


SCORES_DIR = "scores"
"""The folder under a run's ``evaluation/`` that holds each task's scores as netCDF."""


def write(table: xr.Dataset, evaluation, task: str) -> None:
    """``evaluation/scores/<task>.nc``, written whole or not at all."""
    path = evaluation / SCORES_DIR / f"{task}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: table.to_netcdf(tmp), path.with_name(f".{path.name}.tmp-{os.getpid()}"))
