"""What every downstream task reads and writes: the frozen model, the test split and its inner cut, the
climatology and units every score takes (:class:`Evaluation`), the metric definitions written beside the
results, the files tasks write (CSV, maps) and the figures drawn from saved maps; :class:`Task`, what a task
module registers.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from sparta import grids, metrics, plots, scores
from sparta.climatology import WINDOW_DAYS, day_of_year, day_of_year_climatology
from sparta.data.store import DataError, Store, split_bounds
from sparta.grids import Fields
from sparta.inference import load_frozen
from sparta.runs import Run
from sparta.seeding import derive_seed
from sparta.tasks import TaskSpec
from sparta.variants import run_label

log = logging.getLogger(__name__)


T = TypeVar("T")
ROBUSTNESS_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SEASONS = ["DJF", "MAM", "JJA", "SON"]


FIELD_KEYS = tuple(metrics.FIELD_METRICS)
"""Keys of :func:`field_scores`, the scores of decoded fields (forecast per lead, diffusion)."""
EVERY_LEAD = tuple(key for key, metric in metrics.FIELD_METRICS.items() if metric.every_lead)
"""The field scores a forecast computes at every lead step (its curves); the others at ``downstream.lead_times``."""

DEFINITIONS = {
    **{key: metric.definition for key, metric in metrics.FIELD_METRICS.items()},
    "rrmse_l2_per_channel": "forecast RRMSE (L2, ours) per channel at each reported lead, %",
    **{key: metric.definition for key, metric in metrics.VARIABLE_METRICS.items()},
    "climatology": f"the train split's mean of each day of the year, smoothed by a circular {WINDOW_DAYS}-day window "
                   "(physical units): the climatology baseline of every table and the reference of every anomaly",
    "persistence": "the last look-back day, complete, held for every lead",
    "*_spread": "population std over the forecast seeds (0 for one seed)",
    "reconstruction": "inner-test days encoded with each hidden fraction (one random mask per day) and decoded",
    "robustness.rrmse_l2": "one-step forecast RRMSE (L2, ours) vs the input mask ratio, %",
    "latent_std_all_samples": "diffusion Std dev (paper): std of every value of every generated draw of every "
                              "condition (the authors' zh_samples.std())",
    "latent_std_per_condition": "diffusion std across the draws of one condition (ours), mean over conditions and "
                                "latent dimensions",
    "density_paper": "latent density (eq. 18, sigma 20) of the mean of the draws of each condition (the paper's)",
    "density_per_draw": "latent density (eq. 18) of every draw (ours)",
    "realism_paper": "realism (eq. 19, k 5) of the mean of the draws of each condition (the paper's)",
    "realism_per_draw": "realism (eq. 19) of every draw (ours)",
    "probabilistic.crps": "diffusion: fair CRPS of the decoded draws per variable (WeatherBench2's, area-weighted, "
                          "mean over conditions), in the RMSE's units; climatology.crps: the climatology's (its MAE)",
    "probabilistic.spread_skill": "diffusion: the draws' spread (sqrt of the area-mean unbiased variance) over the "
                                  "RMSE of their mean, per variable; sqrt((M+1)/M) for a calibrated ensemble of M",
    "condition_decoded": "the same conditions decoded directly (no diffusion): the decoder's own reconstruction of "
                         "the masked day",
    "*_standardised": "the same on latents standardised with the downstream-train mean and std (comparable between "
                      "models); reference set: the complete inner-test days' latents",
}
"""One line per metric key of metrics.json, written beside the results (``definitions``)."""


def field_scores(pred: Fields, true: Fields, train_range: tuple, keys: tuple[str, ...] = FIELD_KEYS
                 ) -> dict[str, float]:
    """Physical-unit scores of (N, C, H, W) fields (or one per grid), :data:`FIELD_KEYS` (or those of ``keys``,
    in the registry's order): pooled RRMSE by the paper's formula and by ours, SSIM and PSNR by the authors'
    definitions (``train_range``: per-channel minimum and maximum of the downstream-train block) and by ours."""
    return scores.pooled_scores(pred, true, train_range, keys)


class Evaluation:
    """The frozen model and the data every downstream task reads, and the results written so far.

    Holds the test split (normalised and in physical units), its seasons, times and inner
    train/val/test cut, and its complete and masked encodings. Downstream models that several tasks
    use are trained on demand and cached by their settings and seed (:meth:`cached`; :func:`latent_forecaster`,
    :func:`season_classifier`): training is seeded, so a task gets the same model whether or not another
    task trained it first, and no task depends on another having run.
    """

    def __init__(self, run: Run, store: Store, progress: bool = True, device: str = "auto"):
        self.run, self.progress = run, progress
        self.frozen = load_frozen(run.require_best(), store, device, expect_digest=run.config.digest())
        # the run's downstream settings, which may have changed since training (they are outside the digest)
        self.cfg = self.frozen.cfg.model_copy(update={"downstream": run.config.downstream})
        self.downstream = self.cfg.downstream
        start, stop = store.split_range("test")
        test = store.read(slice(start, stop))
        self.fields = store.normalise(test)  # normalised test split
        self.physical = grids.each(lambda part: torch.from_numpy(np.array(part)), test)
        self.seasons = torch.as_tensor(store.seasons[start:stop])
        self.times = store.times[start:stop]
        self.inner = split_bounds(stop - start, self.cfg.data.split)
        if min(b - a for a, b in self.inner.values()) < 2:
            raise DataError(f"the test split ({stop - start} days) is too short to cut into inner train/val/test")
        self._cache: dict[tuple, Any] = {}  # see cached()
        self.results: dict = {"run": str(run.path), "method": self.cfg.method, "fusion": self.cfg.model.fusion,
                              "preset": self.cfg.preset, "source": store.source, "definitions": DEFINITIONS,
                              "units": {c: unit for c, (unit, _) in self.units.items()}}

    @cached_property
    def h_clean(self) -> Tensor:
        """The test split's complete days, encoded (on first use: scoring saved predictions needs no encoder)."""
        log.info("encoding %d test days", len(self.times))
        return self.frozen.encode(self.fields)

    @cached_property
    def h_masked(self) -> Tensor:
        """The test split's days with ``downstream.condition_mask`` of their points hidden (one seeded mask per
        day), encoded: the forecasts' and the diffusion's inputs."""
        cond = self.downstream.condition_mask
        log.info("encoding %d test days, %.0f%% hidden", len(self.times), 100 * cond)
        return self.frozen.encode(self.fields, cond, seed=derive_seed(self.cfg.train.seed, "condition-mask"))

    @property
    def label(self) -> str:
        return run_label(self.cfg.method, self.cfg.model.fusion)

    @cached_property
    def train_range(self) -> tuple:
        """Per-channel (minimum, maximum) of the inner-train days in physical units, one (C,) pair per grid (a list
        for fields on several grids): the authors' scaling for SSIM and PSNR."""
        a, b = self.inner["train"]
        parts = [(x[a:b].amin(dim=(0, 2, 3)), x[a:b].amax(dim=(0, 2, 3))) for x in grids.as_list(self.physical)]
        if isinstance(self.physical, list):
            return [lo for lo, _ in parts], [hi for _, hi in parts]
        return parts[0]

    @cached_property
    def climatology(self) -> Fields:
        """The train split's smoothed day-of-year climatology (physical units) at each test-split day: the
        climatology baseline, and the reference every anomaly score takes forecast and truth anomalies from."""
        rows = day_of_year(self.times) - 1
        return grids.each(lambda part: torch.from_numpy(part[rows]), day_of_year_climatology(self.frozen.store))

    @cached_property
    def area_weights(self):
        """Latitude weights of the grid (:func:`sparta.metrics.lat_weights`), one per grid for several."""
        weights = [metrics.lat_weights(torch.as_tensor(np.asarray(part.lat, dtype=np.float64)))
                   for part in self.frozen.store.parts]
        return weights if isinstance(self.physical, list) else weights[0]

    @cached_property
    def units(self) -> dict[str, tuple[str, float]]:
        """Each channel's display unit and the factor from the store's unit to it (specific humidity: g/kg)."""
        units = self.frozen.store.units or {}
        return {c: metrics.display_unit(units.get(c)) for c in self.frozen.store.channels}

    def reference(self, days: Tensor) -> scores.Reference:
        """What predictions of the test-split ``days`` are scored against (:func:`sparta.scores.score`)."""
        return scores.Reference(grids.take(self.physical, days), grids.take(self.climatology, days),
                                self.area_weights, self.train_range, self.frozen.store.channels,
                                {c: factor for c, (_, factor) in self.units.items()})

    def day_scores(self, pred: Fields, days: Tensor) -> dict[str, Tensor]:
        """``{metric: (N, C)}``: each :data:`~sparta.metrics.VARIABLE_METRICS` entry's per-day values (store units)
        of ``pred`` against the truth of the test-split ``days``, anomalies from the climatology of those days."""
        return scores.day_scores(pred, self.reference(days))

    def variable_scores(self, per_day: dict[str, Tensor]) -> dict[str, dict[str, float]]:
        """``{metric: {channel: value}}`` of :meth:`day_scores`' per-day values, reduced over the days, in each
        channel's display unit."""
        channels = self.frozen.store.channels
        return {name: dict(zip(channels, map(float, values))) for name, values in
                scores.variable_values(per_day, channels, {c: f for c, (_, f) in self.units.items()}).items()}

    def inner_test_latents(self, hidden: float) -> Tensor:
        """The inner-test days encoded with a fraction ``hidden`` of every day's points hidden (one seeded mask
        per day and fraction): what the reconstruction and robustness tasks both read."""
        a, b = self.inner["test"]
        return self.cached(("inner-test", hidden), lambda: self.frozen.encode(
            grids.take(self.fields, slice(a, b)), hidden, seed=derive_seed(self.cfg.train.seed, "robust", str(hidden))))

    def cached(self, key: tuple, build: Callable[[], T]) -> T:
        """``build()``, once per ``key``: the encodings and downstream models several tasks read. Each is seeded, so a
        task gets the same one whether or not another task built it first."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def inner_part(self, name: str, x):
        a, b = self.inner[name]
        return x[a:b]

    @cached_property
    def mask_draws(self) -> Tensor:
        """(K, days, D): ``downstream.forecast_mask_draws`` encodings of every test-split day, each with its own
        ``condition_mask`` draw; the first is ``h_masked`` (the test windows' inputs), so K = 1 is one fixed
        mask per day."""
        cond, seed = self.downstream.condition_mask, self.cfg.train.seed
        extra = [self.frozen.encode(self.fields, cond, seed=derive_seed(seed, "condition-mask", str(k)))
                 for k in range(1, self.downstream.forecast_mask_draws)]
        return torch.stack([self.h_masked, *extra])


# ==================================================================== files the tasks write


def write_csv(run: Run, name: str, rows: list[dict], fields: list[str]) -> None:
    path = run.evaluation / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def save_maps(ev: Evaluation, stem: str, kind: str, title: str, columns: dict[str, list]) -> None:
    """Save (C, H, W) maps, one per grid under each column name, with each grid's coordinates and channels,
    for :func:`draw_figures` (``evaluation/maps/<stem>.npz``)."""
    arrays: dict[str, np.ndarray] = {"kind": np.array(kind), "title": np.array(title)}
    for g, part in enumerate(ev.frozen.store.parts):
        arrays.update({f"{g}/lat": np.asarray(part.lat), f"{g}/lon": np.asarray(part.lon),
                       f"{g}/channels": np.array(list(part.channels)), f"{g}/grid": np.array(part.grid)})
        for name, per_grid in columns.items():
            arrays[f"{g}/{name}"] = np.asarray(per_grid[g])
    (ev.run.evaluation / "maps").mkdir(parents=True, exist_ok=True)
    np.savez(ev.run.evaluation / "maps" / f"{stem}.npz", **arrays)


def per_channel(ev: Evaluation, values: Tensor, unitless: bool = False) -> dict[str, float]:
    """``{channel: value}`` of a ``(C,)`` score in the fields' unit, converted to each channel's display unit."""
    return {c: float(v) * (1.0 if unitless else ev.units[c][1]) for c, v in zip(ev.frozen.store.channels, values)}


RECONSTRUCTION_MAP_HIDDEN = 0.9
"""The hidden fraction of the held-back test day's map beside its complete-input decoding."""


def display_units(ev: Evaluation, maps: list[Tensor]) -> list[Tensor]:
    """(C, H, W) physical maps, one per grid, in the channels' display units (:attr:`Evaluation.units`)."""
    channels = iter(ev.frozen.store.channels)
    return [m * torch.tensor([ev.units[next(channels)][1] for _ in range(len(m))]).view(-1, 1, 1) for m in maps]


def draw_maps(run: Run, stems: tuple[str, ...], units: dict[str, str] | None = None) -> None:
    """Figures of the maps saved under ``evaluation/maps`` whose name starts with one of ``stems``: one per grid
    when the variables are on several (``units``: the channels' display units, where the maps are in them)."""
    for path in sorted((run.evaluation / "maps").glob("*.npz")):
        if not path.stem.startswith(stems):
            continue
        with np.load(path) as saved:
            n_grids = len({key.split("/")[0] for key in saved.files if "/" in key})
            kind, title = str(saved["kind"]), str(saved["title"])
            for g in range(n_grids):
                lat, lon, channels = saved[f"{g}/lat"], saved[f"{g}/lon"], list(map(str, saved[f"{g}/channels"]))
                grid_units = [units.get(c, "") for c in channels] if units else None
                suffix = f"_{saved[f'{g}/grid']}" if n_grids > 1 else ""
                out = run.figures / f"{path.stem}{suffix}.png"
                if kind == "error":
                    plots.plot_error_maps(saved[f"{g}/prediction"], saved[f"{g}/truth"], channels, lat, lon, title, out)
                elif kind == "test day":
                    plots.plot_test_day(saved[f"{g}/truth"], saved[f"{g}/complete"], saved[f"{g}/hidden"],
                                        RECONSTRUCTION_MAP_HIDDEN, channels, lat, lon, title, out, grid_units)
                else:
                    plots.plot_reconstructions(saved[f"{g}/truth"], saved[f"{g}/sparse input"],
                                               saved[f"{g}/generated mean"], channels, lat, lon, out, title)


@dataclass(frozen=True)
class Task:
    """A downstream task's code beside its :class:`~sparta.tasks.TaskSpec`: ``run(evaluation) -> results`` (stored
    under ``spec.key`` in metrics.json), ``draw(run, metrics, label)``, which redraws its figures from saved files
    only, and for a task that writes its predictions (:mod:`sparta.predictions`) ``score(evaluation) -> results``,
    which scores the saved ones again, training nothing (``sparta evaluate --rescore``)."""

    spec: TaskSpec
    run: Callable[[Evaluation], dict]
    draw: Callable[[Run, dict, str], None]
    score: Callable[[Evaluation], dict] | None = None
