"""Downstream evaluation of a trained run (paper sections 4, 6.1.3 and 7).

The encoder and decoder are frozen. As in the paper, every downstream model trains
and is scored on the store's *test* split, itself cut chronologically 60/20/20
("inner" train/val/test). Spaces:

- forecast, reconstruction and diffusion RRMSE/SSIM/PSNR: decoded fields in physical units;
- per-variable RMSE and anomaly correlation (WeatherBench2's definitions): decoded fields in each
  variable's unit (specific humidity shown in g/kg), anomalies from the train split's smoothed
  day-of-year climatology, which is also the climatology baseline;
- latent density, realism, smoothness: raw latents and, for comparability between
  models, latents standardised with the inner-train mean/std (``*_std`` keys);
- classification: cross-entropy (nats) and accuracy on the inner test.

Results are written once (``evaluation/metrics.json``, per-step curves in CSV);
tables and figures are built from those files.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from sparta import grids, metrics, plots, predictions, scores
from sparta.augment import random_keep_mask
from sparta.config import ConfigError
from sparta.climatology import WINDOW_DAYS, day_of_year, day_of_year_climatology
from sparta.data.store import DataError, Store, split_bounds
from sparta.grids import Fields
from sparta.inference import FrozenModel, load_frozen  # noqa: F401 (FrozenModel: re-exported)
from sparta.downstream.classify import class_logits, classification_scores, evaluate_classifier, train_classifier
from sparta.downstream.diffusion import generate, train_diffusion
from sparta.downstream.forecast import (LIM_SETTING, LinearInverseModel, make_windows, rollout, train_forecaster,
                                        train_linear_forecaster)
from sparta.runs import Run
from sparta.seeding import derive_seed, generator
from sparta.tasks import TASK_SPECS, TaskSpec
from sparta.variants import run_label

log = logging.getLogger(__name__)

T = TypeVar("T")
ROBUSTNESS_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SEASONS = ["DJF", "MAM", "JJA", "SON"]


FIELD_METRICS = tuple(metrics.FIELD_METRICS)
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


def field_scores(pred: Fields, true: Fields, train_range: tuple, keys: tuple[str, ...] = FIELD_METRICS
                 ) -> dict[str, float]:
    """Physical-unit scores of (N, C, H, W) fields (or one per grid), :data:`FIELD_METRICS` (or those of ``keys``,
    in the registry's order): pooled RRMSE by the paper's formula and by ours, SSIM and PSNR by the authors'
    definitions (``train_range``: per-channel minimum and maximum of the downstream-train block) and by ours."""
    return scores.pooled_scores(pred, true, train_range, keys)


def diffusion_latent_scores(gen: Tensor, ref: Tensor, standardizer, sigma: float, k: int) -> dict[str, float]:
    """Latent scores of (N conditions, S draws, D) generations against the reference latents ``ref`` (R, D).

    Each under the paper's definition and ours, on raw latents and on latents standardised with
    ``standardizer`` (``*_standardised``):

    - ``latent_std_all_samples`` (the paper's "Std dev"): std of every value of every draw of every
      condition (the authors' ``zh_samples.std()``); it mixes the spread between draws with the
      spread between conditions and latent dimensions.
    - ``latent_std_per_condition`` (ours): std across the S draws of one condition, averaged over
      conditions and dimensions: how uncertain the generation is for a given condition.
    - ``density_paper`` / ``realism_paper``: eq. 18 / 19 for the mean of the S draws of each
      condition (what the authors score); ``density_per_draw`` / ``realism_per_draw`` (ours): for
      every draw (a mean of draws sits nearer the data than any one draw).
    """
    flat, mean = gen.reshape(-1, gen.shape[-1]), gen.mean(1)
    out: dict[str, float] = {}
    for suffix, f in (("", lambda x: x), ("_standardised", standardizer)):
        g, r = f(gen), f(ref)
        out[f"latent_std_all_samples{suffix}"] = float(g.std())
        out[f"latent_std_per_condition{suffix}"] = float(g.std(1).mean())
        for name, points in (("paper", f(mean)), ("per_draw", f(flat))):
            out[f"density_{name}{suffix}"] = float(metrics.latent_density(points, r, sigma))
            out[f"realism_{name}{suffix}"] = float(metrics.realism_score(points, r, k))
    return out


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

    def _part(self, name: str, x):
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


def _write_csv(run: Run, name: str, rows: list[dict], fields: list[str]) -> None:
    path = run.evaluation / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _save_maps(ev: Evaluation, stem: str, kind: str, title: str, columns: dict[str, list]) -> None:
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


# ==================================================================== downstream models several tasks share
# Trained on demand and cached by their settings and seed (Evaluation.cached).


def latent_forecaster(ev: Evaluation, lookback: int, stride: int, seed: int) -> torch.nn.Module:
    """The latent forecaster of one look-back/stride setting and seed, trained on the inner train/val.

    Inputs: 70%-masked days, re-masked at every read (a random one of the mask draws per day);
    targets: embeddings of the complete next days.
    """
    def train() -> torch.nn.Module:
        _check_forecast_lengths(ev, f"LB{lookback}_S{stride}", lookback, ev.downstream.forecast_horizon)
        horizon = ev.downstream.forecast_horizon
        days = torch.arange(len(ev.h_clean))[:, None]
        ctx, _ = make_windows(ev._part("train", days), lookback, stride, horizon)
        _, tgt = make_windows(ev._part("train", ev.h_clean), lookback, stride, horizon)
        val_ctx, _ = make_windows(ev._part("val", days), lookback, stride, horizon)
        _, val_tgt = make_windows(ev._part("val", ev.h_clean), lookback, stride, horizon)
        ctx, val_ctx = ctx[..., 0], val_ctx[..., 0]  # (N, LB) day indices into ev.mask_draws
        return train_forecaster(ctx, tgt, val_ctx, val_tgt, ev.downstream, seed=seed, progress=ev.progress,
                                draws=ev.mask_draws)[0]

    return ev.cached(("forecast", lookback, stride, seed), train)


def linear_forecaster(ev: Evaluation) -> tuple[LinearInverseModel, dict[str, float]]:
    """The linear inverse model of the complete inner-train latents, its ridge chosen by the decoded
    next-day RRMSE of the masked inner-val days (see :func:`train_linear_forecaster`)."""
    def train() -> tuple[LinearInverseModel, dict[str, float]]:
        a, b = ev.inner["train"]
        va, vb = ev.inner["val"]
        days = torch.arange(va, vb - 1)
        truth = grids.take(ev.physical, days + 1)
        return train_linear_forecaster(ev.h_clean[a:b], ev.h_masked[days],
                                       lambda pred: float(metrics.rrmse(ev.frozen.decode(pred), truth)))

    return ev.cached(("lim",), train)


def season_classifier(ev: Evaluation, k: int = 0) -> tuple[torch.nn.Module, Tensor]:
    """The ``k``-th season classifier and the embeddings it was trained on (masked with a ratio drawn per day in
    ``downstream.classify_mask_low..high``, the same for every ``k``), trained on the inner train/val; the
    classifiers differ in their seed only."""
    def train() -> tuple[torch.nn.Module, Tensor]:
        settings, seed = ev.downstream, derive_seed(ev.cfg.train.seed, "classify")
        h = season_classifier(ev)[1] if k else ev.frozen.encode(ev.fields, (settings.classify_mask_low,
                                                                            settings.classify_mask_high), seed=seed)
        model, _ = train_classifier(ev._part("train", h), ev._part("train", ev.seasons),
                                    ev._part("val", h), ev._part("val", ev.seasons), settings,
                                    seed=derive_seed(seed, str(k)) if k else seed, progress=ev.progress)
        return model, h

    return ev.cached(("classify", k), train)


# ==================================================================== forecast scoring


def _check_forecast_lengths(ev: Evaluation, label: str, lookback: int, horizon: int) -> None:
    need = {"train": lookback + horizon, "val": lookback + horizon, "test": lookback + ev.downstream.rollout_steps}
    short = {k: (b - a, need[k]) for k, (a, b) in ev.inner.items() if b - a < need[k]}
    if short:
        listed = ", ".join(f"inner {k} has {have} days, needs {n}" for k, (have, n) in short.items())
        raise DataError(f"forecast {label}: the test split is too short ({listed}); use a longer record "
                        "or lower downstream.rollout_steps / the look-back in downstream.forecast_settings")


def _score_rollout(ev: Evaluation, pred: Tensor, first_target: Tensor, label: str, seed: int, rows: list) -> dict:
    """Decode each lead step of a (N, steps, D) rollout and score it against the truth: the :data:`EVERY_LEAD`
    scores and the per-variable RMSE and ACC at every step (``curve``, ``per_variable``), every score at the
    reported ``downstream.lead_times`` (``at``)."""
    curve: dict[str, list[float]] = {k: [] for k in EVERY_LEAD}
    per_variable: dict[str, dict[str, list[float]]] = {name: {} for name in metrics.VARIABLE_METRICS}
    at: dict[str, dict[int, float]] = {k: {} for k in FIELD_METRICS}
    per_channel: dict[int, list[float]] = {}
    map_lead = min(50, pred.shape[1])
    for step in tqdm(range(pred.shape[1]), desc=f"score {label}", leave=False, disable=not ev.progress):
        lead, reported = step + 1, step + 1 in ev.downstream.lead_times
        fields = ev.frozen.decode(pred[:, step])
        truth = grids.take(ev.physical, first_target + step)
        scores = field_scores(fields, truth, ev.train_range, FIELD_METRICS if reported else EVERY_LEAD)
        for k, v in scores.items():
            if k in curve:
                curve[k].append(v)
            if reported:
                at[k][lead] = v
            rows.append({"setting": label, "seed": seed, "lead": lead, "metric": k, "value": v})
        for name, values in ev.variable_scores(ev.day_scores(fields, first_target + step)).items():
            for c, v in values.items():
                per_variable[name].setdefault(c, []).append(v)
                rows.append({"setting": label, "seed": seed, "lead": lead, "metric": f"{name}_{c}", "value": v})
        if reported:
            per_channel[lead] = metrics.rrmse(fields, truth, per_channel=True).tolist()
        if lead == map_lead and label == _map_setting(ev) and seed == ev.downstream.forecast_seeds[0]:
            _save_maps(ev, f"forecast_error_{label}_T{map_lead}", "error",
                       f"{ev.label} forecast {label}, T={map_lead}",
                       {"prediction": [p[0] for p in grids.as_list(fields)],
                        "truth": [t[0] for t in grids.as_list(truth)]})
    return {"curve": curve, "at": at, "rrmse_l2_per_channel": per_channel, "per_variable": per_variable}


def _map_setting(ev: Evaluation) -> str:
    lb, s = ev.downstream.forecast_settings[0]
    return f"LB{lb}_S{s}"


def _summarise_seeds(ev: Evaluation, per_seed: list[dict]) -> dict:
    leads = ev.downstream.lead_times
    summary: dict = {"seeds": len(per_seed), "curve": {}, "at": {}}
    for metric in EVERY_LEAD:  # curves: the cheap scores at every step
        summary["curve"][metric] = np.array([s["curve"][metric] for s in per_seed]).mean(0).tolist()
    for metric in FIELD_METRICS:  # every score at the reported leads
        stacked = np.array([[s["at"][metric][t] for t in leads] for s in per_seed])  # (seeds, leads)
        summary["at"][metric] = {str(t): float(stacked[:, j].mean()) for j, t in enumerate(leads)}
        summary["at"][f"{metric}_spread"] = {str(t): float(stacked[:, j].std()) for j, t in enumerate(leads)}
    channels = ev.frozen.store.channels
    summary["per_variable"] = {}
    for name in metrics.VARIABLE_METRICS:  # (seeds, steps) per channel: the mean curve and its spread over seeds
        stacked = {c: np.array([s["per_variable"][name][c] for s in per_seed]) for c in channels}
        summary["per_variable"][name] = {c: v.mean(0).tolist() for c, v in stacked.items()}
        summary["per_variable"][f"{name}_spread"] = {c: v.std(0).tolist() for c, v in stacked.items()}
    summary["rrmse_l2_per_channel"] = {
        str(t): dict(zip(channels, np.mean([s["rrmse_l2_per_channel"][t] for s in per_seed], 0).tolist()))
        for t in leads}
    return summary


def _reconstruction_errors(ev: Evaluation) -> tuple[Tensor, Tensor, Tensor, int, dict[str, Tensor]]:
    """Per test day of the decoded complete-input latents: squared error, squared truth and summed truth,
    the values per day, and the per-variable scores of each day (:meth:`Evaluation.day_scores`): decoded once for
    every forecast setting; a pooled RRMSE (either formula) or a per-variable score over any set of days reduces
    them."""
    def decode() -> tuple[Tensor, Tensor, Tensor, int, dict[str, Tensor]]:
        recon = ev.frozen.decode(ev.h_clean)
        truth = grids.as_list(ev.physical)
        err2 = sum((p.double() - t.double()).pow(2).sum((1, 2, 3)) for p, t in zip(grids.as_list(recon), truth))
        ref2 = sum(t.double().pow(2).sum((1, 2, 3)) for t in truth)
        ref1 = sum(t.double().sum((1, 2, 3)) for t in truth)
        days = torch.arange(grids.length(recon))
        return err2, ref2, ref1, sum(t[0].numel() for t in truth), ev.day_scores(recon, days)

    return ev.cached(("reconstruction errors",), decode)


def forecast_baselines(ev: Evaluation, first_target: Tensor) -> dict[str, dict[str, list[float]]]:
    """Per-lead RRMSE, ``{formula: {baseline: curve}}`` for both formulas (``rrmse_paper``, ``rrmse_l2``), of
    persistence (the last look-back day, complete), the day-of-year climatology and the model's reconstruction
    ceiling: its decoder on the true (complete-input) latents of the target days, the best any latent
    forecast can score through this decoder."""
    names = ("persistence", "climatology", "reconstruction ceiling")
    formulas = {"rrmse_paper": metrics.rrmse_paper, "rrmse_l2": metrics.rrmse}
    out: dict[str, dict[str, list[float]]] = {f: {name: [] for name in names} for f in formulas}
    last_seen = grids.take(ev.physical, first_target - 1)
    err2, ref2, ref1, per_day = _reconstruction_errors(ev)[:4]
    for step in range(ev.downstream.rollout_steps):
        targets = first_target + step
        truth = grids.take(ev.physical, targets)
        climatology = grids.take(ev.climatology, targets)
        for formula, fn in formulas.items():
            out[formula]["persistence"].append(float(fn(last_seen, truth)))
            out[formula]["climatology"].append(float(fn(climatology, truth)))
        n = per_day * len(targets)
        out["rrmse_l2"]["reconstruction ceiling"].append(float((err2[targets].sum() / ref2[targets].sum()).sqrt()
                                                               * 100.0))
        out["rrmse_paper"]["reconstruction ceiling"].append(float((err2[targets].sum() / n).sqrt()
                                                                  / (ref1[targets].sum() / n) * 100.0))
    return out


def variable_baselines(ev: Evaluation, first_target: Tensor) -> dict[str, dict]:
    """``{baseline: {variable metric: {channel: curve}}}`` per lead step of persistence, the climatology and the
    model's reconstruction ceiling on the days :func:`forecast_baselines` scores, and for persistence and the
    climatology the per-channel RRMSE (L2) at the reported leads (``rrmse_l2_per_channel``)."""
    last_seen = grids.take(ev.physical, first_target - 1)
    ceiling_days = _reconstruction_errors(ev)[4]
    out: dict[str, dict] = {name: {metric: {} for metric in metrics.VARIABLE_METRICS}
                            for name in ("persistence", "climatology", "reconstruction ceiling")}
    for name in ("persistence", "climatology"):
        out[name]["rrmse_l2_per_channel"] = {}
    for step in range(ev.downstream.rollout_steps):
        targets, lead = first_target + step, step + 1
        truth, climatology = grids.take(ev.physical, targets), grids.take(ev.climatology, targets)
        scores = {"persistence": ev.variable_scores(ev.day_scores(last_seen, targets)),
                  "climatology": ev.variable_scores(ev.day_scores(climatology, targets)),
                  "reconstruction ceiling": ev.variable_scores({k: v[targets] for k, v in ceiling_days.items()})}
        for name, per_metric in scores.items():
            for metric, values in per_metric.items():
                for c, v in values.items():
                    out[name][metric].setdefault(c, []).append(v)
        if lead in ev.downstream.lead_times:
            for name, pred in (("persistence", last_seen), ("climatology", climatology)):
                out[name]["rrmse_l2_per_channel"][str(lead)] = dict(zip(
                    ev.frozen.store.channels, metrics.rrmse(pred, truth, per_channel=True).tolist()))
    return out


# ==================================================================== the downstream tasks
# Each takes the evaluation's frozen model and data and returns its results (the ``key`` entry of
# metrics.json); arrays its figures need go to ``evaluation/``. ``draw`` redraws its figures from
# those saved files alone (``sparta report`` does, without retraining).


def forecast(ev: Evaluation) -> dict:
    """Latent forecasting: LSTM rollouts from masked look-back windows (and the linear inverse model's, from the
    last day of the first setting's windows), written as predictions (:func:`_write_rollouts`) and scored by
    :func:`score_forecast`."""
    settings = ev.downstream
    for lookback, stride in settings.forecast_settings:
        label = f"LB{lookback}_S{stride}"
        seeds = settings.forecast_seeds if stride > 1 else settings.forecast_seeds[:1]
        _check_forecast_lengths(ev, label, lookback, settings.forecast_horizon)
        first = _first_targets(ev, lookback)
        test_ctx = ev.h_masked[(first - lookback)[:, None] + torch.arange(lookback)]
        _write_rollouts(ev, label, seeds, first, [rollout(latent_forecaster(ev, lookback, stride, seed), test_ctx,
                                                          settings.rollout_steps).cpu() for seed in seeds])
    if settings.linear_forecast:  # the first setting's target days, so its baselines and scores compare row by row
        first = _first_targets(ev, settings.forecast_settings[0][0])
        model, fitted = linear_forecaster(ev)
        _write_rollouts(ev, LIM_SETTING, [0], first, [rollout(model, ev.h_masked[first - 1][:, None],
                                                              settings.rollout_steps).cpu()], fitted)
    return score_forecast(ev)


def _first_targets(ev: Evaluation, lookback: int) -> Tensor:
    """Each inner-test window's first target day (test-split index) for a look-back of ``lookback`` days."""
    a, b = ev.inner["test"]
    return torch.arange(a + lookback, b - ev.downstream.rollout_steps + 1)


def _forecast_settings(ev: Evaluation) -> list[tuple[str, int]]:
    """Each forecast setting's label and look-back (the LIM's: the first setting's, whose days it forecasts)."""
    settings = ev.downstream
    lstm = [(f"LB{lookback}_S{stride}", lookback) for lookback, stride in settings.forecast_settings]
    return lstm + ([(LIM_SETTING, settings.forecast_settings[0][0])] if settings.linear_forecast else [])


def _write_rollouts(ev: Evaluation, label: str, seeds: list[int], first: Tensor, rollouts: list[Tensor],
                    attrs: dict | None = None) -> None:
    """``evaluation/predictions/forecast_<label>.zarr``: the forecast latents, dims ``seed, time, lead, latent``
    (``time``: the initial day, the last look-back day; lead L is valid L days later). Kept as latents: decoded
    fields at every lead would be ~40x larger (:func:`score_forecast` decodes them)."""
    latents = xr.Dataset({"latent": (("seed", "time", "lead", "latent"), torch.stack(rollouts).numpy())},
                         coords={"seed": seeds, "time": ev.times[(first - 1).numpy()],
                                 "lead": np.arange(1, rollouts[0].shape[1] + 1)}, attrs=attrs or {})
    predictions.write_predictions(ev.run.evaluation, f"forecast_{label}", [latents], "seed")


def score_forecast(ev: Evaluation) -> dict:
    """The saved forecast latents of every setting, decoded and scored per lead step (pooled RRMSE by both
    formulas, per-variable scores), beside persistence, the day-of-year climatology and the decoder's
    reconstruction ceiling on the same days; per-lead rows in forecast_curves.csv and forecast_baselines.csv."""
    settings, out, curves_rows, baseline_rows = ev.downstream, {}, [], []
    baselines_of: dict[int, tuple[dict, dict]] = {}  # by look-back: settings of one look-back share the target days
    for label, lookback in _forecast_settings(ev):
        saved = predictions.open_predictions(ev.run.evaluation, f"forecast_{label}")
        init = None if saved is None else predictions.day_indices(ev.times, saved["time"].values)
        if init is None:
            raise DataError(f"{ev.run.path} has no saved {label} forecasts of this store's test days to score; "
                            "evaluate it with --tasks forecast")
        first = init + 1
        out[label] = {**_summarise_seeds(ev, [
            _score_rollout(ev, torch.from_numpy(saved["latent"].sel(seed=seed).values), first, label, int(seed),
                           curves_rows) for seed in saved["seed"].values]), **saved.attrs}
        if lookback not in baselines_of:
            baselines_of[lookback] = forecast_baselines(ev, first), variable_baselines(ev, first)
        baselines, per_variable = baselines_of[lookback]
        out[label]["baselines"] = {formula: {name: {str(t): curve[t - 1] for t in settings.lead_times}
                                             for name, curve in per_name.items()}
                                   for formula, per_name in baselines.items()}
        out[label]["variable_baselines"] = per_variable
        baseline_rows.extend({"setting": label, "baseline": name, "lead": lead + 1, "metric": formula, "value": v}
                             for formula, per_name in baselines.items() for name, curve in per_name.items()
                             for lead, v in enumerate(curve))
        baseline_rows.extend({"setting": label, "baseline": name, "lead": lead + 1, "metric": f"{metric}_{c}",
                              "value": v}
                             for name, per_metric in per_variable.items() for metric in metrics.VARIABLE_METRICS
                             for c, curve in per_metric[metric].items() for lead, v in enumerate(curve))
    _write_csv(ev.run, "forecast_curves.csv", curves_rows, ["setting", "seed", "lead", "metric", "value"])
    _write_csv(ev.run, "forecast_baselines.csv", baseline_rows, ["setting", "baseline", "lead", "metric", "value"])
    return out


def variable_skill_curves(summaries: dict[str, dict]) -> dict[str, dict]:
    """The per-variable score curves of one forecast setting for :func:`sparta.plots.plot_variable_skill`: each
    model's (``{label: its metrics.json entry}``), then persistence and the climatology (the same days for every
    model of a setting, read from the first); the metrics every one of them holds."""
    baselines = next(iter(summaries.values()))["variable_baselines"]
    sources = {**{label: s["per_variable"] for label, s in summaries.items()},
               **{name: baselines[name] for name in ("persistence", "climatology")}}
    scored = metrics.variable_metrics_in(sources.values())
    return {label: {m: per[m] for m in scored} for label, per in sources.items()}


def _draw_forecast(run: Run, results: dict, label: str) -> None:
    baselines: dict[str, dict[str, dict[str, list[float]]]] = {}
    path = run.evaluation / "forecast_baselines.csv"
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                baselines.setdefault(row["setting"], {}).setdefault(row["baseline"], {}).setdefault(
                    row["metric"], []).append(float(row["value"]))
    for setting, summary in results.get("forecast", {}).items():
        curves = {label: plots.forecast_summary_curves(summary)}
        curves.update({name: {k: np.array(v) for k, v in per_metric.items()}
                       for name, per_metric in baselines.get(setting, {}).items()})
        plots.plot_forecast_curves(curves, run.figures / f"forecast_curves_{setting}.png", f"{label}: forecast {setting}")
        if "per_variable" in summary:
            plots.plot_variable_skill(variable_skill_curves({label: summary}),
                                      run.figures / f"forecast_skill_{setting}.png",
                                      f"{label}: forecast {setting}, RMSE and ACC per variable", results.get("units"))


def per_channel(ev: Evaluation, values: Tensor, unitless: bool = False) -> dict[str, float]:
    """``{channel: value}`` of a ``(C,)`` score in the fields' unit, converted to each channel's display unit."""
    return {c: float(v) * (1.0 if unitless else ev.units[c][1]) for c, v in zip(ev.frozen.store.channels, values)}


def diffusion(ev: Evaluation) -> dict:
    """Conditional latent diffusion: complete-day latents generated from masked ones, scored as decoded fields
    (mean of the draws; beside the climatology of the same days) and in latent space."""
    settings = ev.downstream
    seed = derive_seed(ev.cfg.train.seed, "diffusion")
    model, schedule, space, _ = train_diffusion(
        ev._part("train", ev.h_clean), ev._part("train", ev.h_masked),
        ev._part("val", ev.h_clean), ev._part("val", ev.h_masked), settings, seed=seed, progress=ev.progress)
    a, b = ev.inner["test"]
    idx = torch.arange(a, b)
    if settings.max_conditions and len(idx) > settings.max_conditions:
        idx = idx[torch.linspace(0, len(idx) - 1, settings.max_conditions).round().long()]
    gen = generate(model, schedule, space, ev.h_masked[idx], settings.diffusion_samples, generator(seed),
                   batch_size=max(settings.batch_size, 256), progress=ev.progress).cpu()  # (N, S, D)
    mean_latents = gen.mean(1)
    mean_fields = ev.frozen.decode(mean_latents)
    truth, climatology = grids.take(ev.physical, idx), grids.take(ev.climatology, idx)
    members = grids.each(lambda f: f.view(len(idx), settings.diffusion_samples, *f.shape[1:]),
                         ev.frozen.decode(gen.reshape(-1, gen.shape[-1])))
    condition_fields = ev.frozen.decode(ev.h_masked[idx])  # the decoder's own answer to the same masked day
    out = {"conditions": len(idx), "samples": settings.diffusion_samples,
           **field_scores(mean_fields, truth, ev.train_range),
           "probabilistic": {"crps": per_channel(ev, metrics.crps(members, truth, ev.area_weights)),
                             "spread_skill": per_channel(ev, metrics.spread_skill(members, truth, ev.area_weights),
                                                            unitless=True)},
           "condition_decoded": {**field_scores(condition_fields, truth, ev.train_range),
                                 "per_variable": ev.variable_scores(ev.day_scores(condition_fields, idx))},
           **diffusion_latent_scores(gen, ev._part("test", ev.h_clean), space.latents.to("cpu"),
                                     settings.density_sigma, settings.realism_k),
           "per_variable": ev.variable_scores(ev.day_scores(mean_fields, idx)),
           "climatology": {**field_scores(climatology, truth, ev.train_range),  # the same days' baseline
                           "per_variable": ev.variable_scores(ev.day_scores(climatology, idx)),
                           "crps": per_channel(ev, metrics.crps(grids.each(lambda f: f[:, None], climatology), truth,
                                                               ev.area_weights))}}
    gen_mask = generator(0)  # an illustration of the condition's sparsity: its ratio, drawn on each native grid
    observed_parts = []
    for part, true_g in zip(ev.frozen.store.parts, grids.as_list(truth)):
        observed = true_g[0].clone()
        keep = random_keep_mask(1, len(part.lat), len(part.lon), settings.condition_mask, settings.condition_mask,
                                gen_mask)
        observed[:, ~keep[0, 0]] = float("nan")
        observed_parts.append(observed)
    _save_maps(ev, "diffusion_reconstruction", "reconstruction",
               f"{ev.label}: conditional diffusion, mean of {settings.diffusion_samples}",
               {"truth": [t[0] for t in grids.as_list(truth)], "sparse input": observed_parts,
                "generated mean": [g[0] for g in grids.as_list(mean_fields)]})
    return out


RECONSTRUCTION_MAP_HIDDEN = 0.9
"""The hidden fraction of the held-back test day's map beside its complete-input decoding."""


def _display_units(ev: Evaluation, maps: list[Tensor]) -> list[Tensor]:
    """(C, H, W) physical maps, one per grid, in the channels' display units (:attr:`Evaluation.units`)."""
    channels = iter(ev.frozen.store.channels)
    return [m * torch.tensor([ev.units[next(channels)][1] for _ in range(len(m))]).view(-1, 1, 1) for m in maps]


def reconstruction(ev: Evaluation) -> dict:
    """Decoded reconstructions of the inner-test days from complete inputs (the encoder's complete-day input) and
    from each hidden fraction of :data:`ROBUSTNESS_RATIOS` (the robustness task's masked latents), written as
    predictions (dims ``hidden, time, lat, lon``) and scored by :func:`score_reconstruction`."""
    a, b = ev.inner["test"]

    def decoded():
        for hidden in tqdm(ROBUSTNESS_RATIOS, desc="reconstruction", leave=False, disable=not ev.progress):
            fields = ev.frozen.decode(ev.h_clean[a:b] if hidden == 0 else ev.inner_test_latents(hidden))
            yield predictions.to_dataset(grids.each(lambda f: f[None], fields), ev.frozen.store, ("hidden", "time"),
                                         {"hidden": [hidden], "time": ev.times[a:b]})

    predictions.write_predictions(ev.run.evaluation, "reconstruction", decoded(), "hidden")
    return score_reconstruction(ev)


def score_reconstruction(ev: Evaluation) -> dict:
    """Every metric of the saved reconstructions (``evaluation/predictions/reconstruction.zarr``) at each hidden
    fraction, beside the climatology of the same days (``evaluation/scores/reconstruction.nc``, dims ``model``,
    ``hidden``, ``variable``); maps of one held-back day for the report."""
    pred = predictions.open_predictions(ev.run.evaluation, "reconstruction")
    if pred is None:
        raise DataError(f"{ev.run.path} has no saved reconstructions to score; evaluate it with --tasks reconstruction")
    days = predictions.day_indices(ev.times, pred["time"].values)
    if days is None:
        raise DataError(f"the saved reconstructions of {ev.run.path} are of days outside this store's test split; "
                        "evaluate the run again (without --rescore)")
    ref, store, hidden = ev.reference(days), ev.frozen.store, [float(h) for h in pred["hidden"].values]
    day = len(days) // 2  # one held-back day for the maps: the middle of the inner test
    per_hidden, map_of = [], {}
    for h in hidden:  # one fraction in memory at a time
        decoded = predictions.to_fields(pred.sel(hidden=h), store)
        per_hidden.append(scores.score(decoded, ref))
        map_of[h] = [p[day] for p in grids.as_list(decoded)]
    model = xr.concat(per_hidden, dim=pd.Index(hidden, name="hidden"))
    climatology = scores.score(ref.climatology, ref)
    table = xr.concat([model, climatology], dim=pd.Index([ev.label, "climatology"], name="model"))
    scores.write(table, ev.run.evaluation, "reconstruction")
    when = ev.times[int(days[day])]
    _save_maps(ev, "reconstruction_test_day", "test day", f"{ev.label}: held-back test day {when}",
               {"truth": _display_units(ev, [t[day] for t in grids.as_list(ref.truth)]),
                **{column: _display_units(ev, map_of[h])
                   for column, h in (("complete", 0.0), ("hidden", RECONSTRUCTION_MAP_HIDDEN))}})
    return {"days": len(days), "hidden": hidden, **scores.pooled(model), "per_variable": scores.per_variable(model),
            "climatology": {**scores.pooled(climatology), "per_variable": scores.per_variable(climatology)},
            "map_day": str(when)}


def _draw_reconstruction(run: Run, results: dict, label: str) -> None:
    if "reconstruction" in results:
        r = results["reconstruction"]
        plots.plot_reconstruction_skill({label: r}, r["climatology"], results.get("units", {}),
                                        run.figures / "reconstruction_skill.png", f"{label}: decoded test days")
    _draw_maps(run, ("reconstruction_",), results.get("units"))


def classify(ev: Evaluation) -> dict:
    """Season classification from sparse embeddings by ``downstream.classify_seeds`` classifiers: their logits of
    the inner-test days written as predictions (``predictions/classify.zarr``, dims ``seed, time, season``; their
    softmax is the class probabilities), scored by :func:`score_classify`."""
    a, b = ev.inner["test"]
    logits = []
    for k in range(ev.downstream.classify_seeds):
        model, h = season_classifier(ev, k)
        logits.append(class_logits(model, h[a:b]))
    saved = xr.Dataset({"logit": (("seed", "time", "season"), torch.stack(logits).numpy())},
                       coords={"seed": np.arange(len(logits)), "time": ev.times[a:b], "season": SEASONS})
    predictions.write_predictions(ev.run.evaluation, "classify", [saved], "seed")
    return score_classify(ev)


def score_classify(ev: Evaluation) -> dict:
    """The saved logits' cross-entropy and accuracy against the days' seasons, mean and population std
    (``*_spread``) over the classifiers, and their summed confusion."""
    saved = predictions.open_predictions(ev.run.evaluation, "classify")
    days = None if saved is None else predictions.day_indices(ev.times, saved["time"].values)
    if days is None:
        raise DataError(f"{ev.run.path} has no saved season classifications of this store's test days to score; "
                        "evaluate it with --tasks classify")
    per_seed = [classification_scores(torch.from_numpy(saved["logit"].sel(seed=k).values), ev.seasons[days])
                for k in saved["seed"].values]
    out: dict = {"seeds": len(per_seed)}
    for key in ("cross_entropy", "accuracy"):
        values = np.array([s[key] for s in per_seed])
        out[key], out[f"{key}_spread"] = float(values.mean()), float(values.std())
    out["confusion"] = np.sum([s["confusion"] for s in per_seed], axis=0).tolist()
    return out


def _draw_classify(run: Run, results: dict, label: str) -> None:
    if "classify" in results:
        plots.plot_confusion(results["classify"]["confusion"], SEASONS,
                             run.figures / "classification_confusion.png", f"{label}: season classification")


def robustness(ev: Evaluation) -> dict:
    """Classification accuracy and one-step forecast RRMSE vs the input mask ratio (0-95%), on the inner test.

    Uses the season classifier and the forecaster of the first forecast setting and seed (trained here
    unless this evaluation already trained them: the same seeded models either way).
    """
    lookback, stride = ev.downstream.forecast_settings[0]
    forecaster = latent_forecaster(ev, lookback, stride, ev.downstream.forecast_seeds[0])
    classifier, _ = season_classifier(ev)
    a, b = ev.inner["test"]
    starts = torch.arange(b - a - lookback)
    targets = a + starts + lookback
    truth = grids.take(ev.physical, targets)
    out: dict = {"mask_ratio": list(ROBUSTNESS_RATIOS), "accuracy": [], "rrmse_l2": [],
                 "chance_accuracy": 1.0 / len(SEASONS),  # the baselines: the inputs' sparsity cannot change them
                 "persistence_rrmse_l2": float(metrics.rrmse(grids.take(ev.physical, targets - 1), truth)),
                 "climatology_rrmse_l2": float(metrics.rrmse(grids.take(ev.climatology, targets), truth))}
    for ratio in tqdm(ROBUSTNESS_RATIOS, desc="robustness", leave=False, disable=not ev.progress):
        h = ev.inner_test_latents(ratio)
        out["accuracy"].append(evaluate_classifier(classifier, h, ev.seasons[a:b])["accuracy"])
        pred = rollout(forecaster, h[starts[:, None] + torch.arange(lookback)], 1)[:, 0].cpu()
        out["rrmse_l2"].append(float(metrics.rrmse(ev.frozen.decode(pred), truth)))
    return out


def _draw_robustness(run: Run, results: dict, label: str) -> None:
    if "robustness" in results:
        plots.plot_robustness({label: results["robustness"]}, run.figures / "robustness.png")


def _trajectory_windows(h_masked: Tensor, lookback: int = 5, stride: int = 5, count: int = 64):
    """Mean embedding of non-overlapping masked look-back windows and the next (masked) day."""
    n = min(count, (len(h_masked) - lookback - 1) // stride + 1)
    if n < 6:
        return None
    starts = torch.arange(n) * stride
    means = h_masked[starts[:, None] + torch.arange(lookback)].mean(1)
    return means.numpy(), h_masked[starts + lookback].numpy()


def diagnostics(ev: Evaluation) -> dict:
    """Smoothness of the masked embeddings' trajectory: temporal and cycle distances (raw and normalised)."""
    n = min(ev.downstream.smoothness_days, len(ev.h_masked))
    h = ev.h_masked[:n]
    out = {}
    for name, fn in (("temporal", metrics.step_distances), ("cycle", metrics.cycle_distances)):
        for suffix, normalise in (("", False), ("_normalised", True)):
            mean, std = metrics.mean_std(fn(h, normalise=normalise))
            out[f"{name}{suffix}"] = {"mean": mean, "std": std}
    np.save(ev.run.evaluation / "smoothness_latents.npy", h.numpy())
    windows = _trajectory_windows(ev.h_masked)
    path = ev.run.evaluation / "trajectory_windows.npz"
    if windows is not None:
        np.savez(path, means=windows[0], next=windows[1])
    else:
        path.unlink(missing_ok=True)
    return out


def _draw_diagnostics(run: Run, results: dict, label: str) -> None:
    path = run.evaluation / "smoothness_latents.npy"
    if not path.exists():
        return
    h = torch.from_numpy(np.load(path))
    figs = run.figures
    plots.plot_distance_series({label: metrics.step_distances(h).numpy()}, "||h_t - h_{t-1}||^2",
                               figs / "temporal_distance.png")
    plots.plot_distance_series({label: metrics.cycle_distances(h).numpy()}, "||h_{t-1} - 2h_t + h_{t+1}||^2",
                               figs / "cycle_distance.png")
    plots.plot_pca({label: h.numpy()}, figs / "pca.png")
    windows = run.evaluation / "trajectory_windows.npz"
    if windows.exists():
        with np.load(windows) as saved:
            plots.plot_trajectories({label: (saved["means"], saved["next"])}, figs / "trajectories.png",
                                    seed=run.config.train.seed)


def _draw_maps(run: Run, stems: tuple[str, ...], units: dict[str, str] | None = None) -> None:
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


_CODE = {
    "forecast": (forecast, lambda run, r, label: (_draw_forecast(run, r, label), _draw_maps(run, ("forecast_",))),
                 score_forecast),
    "diffusion": (diffusion, lambda run, r, label: _draw_maps(run, ("diffusion_",))),
    "reconstruction": (reconstruction, _draw_reconstruction, score_reconstruction),
    "classify": (classify, _draw_classify, score_classify),
    "diagnostics": (diagnostics, _draw_diagnostics),
    "robustness": (robustness, _draw_robustness),
}
TASKS: dict[str, Task] = {name: Task(spec, *_CODE[name]) for name, spec in TASK_SPECS.items()}
"""Each task of :data:`sparta.tasks.TASK_SPECS` with the code that runs it and draws its figures."""
RESCORABLE = [name for name, task in TASKS.items() if task.score is not None]
"""The tasks that keep their predictions, so ``sparta evaluate --rescore`` scores them again."""


def run_tasks(ev: Evaluation, tasks: list[str], rescore: bool = False) -> dict:
    """Run ``tasks`` (names in :data:`TASKS`, in the table's order), write ``metrics.json`` after each, then draw
    every figure from the saved results. ``rescore``: score the tasks' saved predictions again instead (every
    registered metric, nothing trained); only tasks that save their predictions (:data:`RESCORABLE`) can."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    fixed = [name for name in tasks if rescore and TASKS[name].score is None]
    if fixed:
        raise ConfigError(f"task(s) {', '.join(fixed)} keep no predictions to score again; --rescore scores "
                          f"{', '.join(RESCORABLE)}; evaluate the others without --rescore")
    ev.run.evaluation.mkdir(parents=True, exist_ok=True)
    path = ev.run.evaluation / "metrics.json"
    if path.exists():  # keep results of tasks not re-run
        ev.results = {**json.loads(path.read_text()), **ev.results}
    for name, task in TASKS.items():
        if name in tasks:
            log.info("%s: %s", ev.run.path, name)
            ev.results[task.spec.key] = task.score(ev) if rescore else task.run(ev)
            path.write_text(json.dumps(ev.results, indent=1))
    draw_figures(ev.run, [TASKS[name] for name in TASKS if name in tasks])
    return ev.results


def draw_figures(run: Run, tasks: list[Task] | None = None) -> None:
    """Redraw the evaluation figures of ``run`` (every task's, or ``tasks``') from its saved results alone."""
    path = run.evaluation / "metrics.json"
    if not path.exists():
        return
    results = json.loads(path.read_text())
    label = run_label(results.get("method", run.config.method), results.get("fusion", run.config.model.fusion))
    for task in tasks if tasks is not None else TASKS.values():
        task.draw(run, results, label)
