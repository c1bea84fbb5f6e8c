"""Downstream evaluation of a trained run (paper sections 4, 6.1.3 and 7).

The encoder and decoder are frozen. As in the paper, every downstream model trains
and is scored on the store's *test* split, itself cut chronologically 60/20/20
("inner" train/val/test). Spaces:

- forecast and diffusion RRMSE/SSIM/PSNR: decoded fields in physical units;
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
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sparta import grids, metrics, plots
from sparta.augment import random_keep_mask
from sparta.data.store import DataError, PreparedStore, Store, split_bounds
from sparta.grids import Fields
from sparta.inference import FrozenModel, load_frozen  # noqa: F401 (FrozenModel: re-exported)
from sparta.downstream.classify import evaluate_classifier, train_classifier
from sparta.downstream.diffusion import generate, train_diffusion
from sparta.downstream.forecast import make_windows, rollout, train_forecaster
from sparta.runs import Run
from sparta.seeding import derive_seed, generator

log = logging.getLogger(__name__)

TASKS = ("forecast", "diffusion", "classify", "diagnostics", "robustness")
ROBUSTNESS_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SEASONS = ["DJF", "MAM", "JJA", "SON"]


FIELD_METRICS = ("rrmse_paper", "rrmse_l2", "ssim_paper", "ssim", "psnr_paper", "psnr")
"""Keys of :func:`field_scores`, the scores of decoded fields (forecast per lead, diffusion)."""

DEFINITIONS = {
    "rrmse_paper": "RRMSE (paper formula), %: sqrt(mean (pred - true)^2) / mean(true) x 100, pooled over samples, "
                   "channels and grid points in physical units (the authors' compute_error); the paper's tables",
    "rrmse_l2": "RRMSE (L2, ours), %: ||pred - true||_2 / ||true||_2 x 100, pooled in physical units; per channel "
                "(rrmse_l2_per_channel) it stays well conditioned where the paper formula divides by a mean near 0 "
                "(u850, v850)",
    "rrmse_l2_per_channel": "forecast RRMSE (L2, ours) per channel at each reported lead, %",
    "ssim_paper": "SSIM (paper): both fields min-max scaled per channel with the downstream-train block's minimum and "
                  "maximum, torchmetrics defaults (11x11 Gaussian window, sigma 1.5, data range 1), per image jointly "
                  "over channels, mean over images",
    "psnr_paper": "PSNR (paper), dB: the same min-max scaling, 10 log10(1 / MSE) per image, mean over images",
    "ssim": "SSIM (ours): per channel, 7x7 Gaussian window (sigma 0.955), data range = the truth's max - min of that "
            "channel over the scored days, mean over channels",
    "psnr": "PSNR (ours), dB: per channel, MSE pooled over the scored days, data range = the truth's max - min of "
            "that channel, mean over channels",
    "robustness.rrmse_l2": "one-step forecast RRMSE (L2, ours) vs the input mask ratio, %",
    "latent_std_all_samples": "diffusion Std dev (paper): std of every value of every generated draw of every "
                              "condition (the authors' zh_samples.std())",
    "latent_std_per_condition": "diffusion std across the draws of one condition (ours), mean over conditions and "
                                "latent dimensions",
    "density_paper": "latent density (eq. 18, sigma 20) of the mean of the draws of each condition (the paper's)",
    "density_per_draw": "latent density (eq. 18) of every draw (ours)",
    "realism_paper": "realism (eq. 19, k 5) of the mean of the draws of each condition (the paper's)",
    "realism_per_draw": "realism (eq. 19) of every draw (ours)",
    "*_standardised": "the same on latents standardised with the downstream-train mean and std (comparable between "
                      "models); reference set: the complete inner-test days' latents",
}
"""One line per metric key of metrics.json, written beside the results (``definitions``)."""


def field_scores(pred: Fields, true: Fields, train_range: tuple) -> dict[str, float]:
    """Physical-unit scores of (N, C, H, W) fields (or one per grid), :data:`FIELD_METRICS`: pooled RRMSE by the
    paper's formula and by ours, SSIM and PSNR by the authors' definitions (``train_range``: per-channel
    minimum and maximum of the downstream-train block) and by ours."""
    lo, hi = train_range
    return {"rrmse_paper": float(metrics.rrmse_paper(pred, true)), "rrmse_l2": float(metrics.rrmse(pred, true)),
            "ssim_paper": float(metrics.ssim_paper(pred, true, lo, hi)), "ssim": float(metrics.ssim(pred, true)),
            "psnr_paper": float(metrics.psnr_paper(pred, true, lo, hi)), "psnr": float(metrics.psnr(pred, true))}


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
    """Runs the downstream tasks for one trained run and writes their results."""

    def __init__(self, run: Run, store: Store, progress: bool = True, device: str = "auto"):
        self.run, self.progress = run, progress
        self.frozen = load_frozen(run.require_best(), store, device, expect_digest=run.config.digest())
        self.cfg = self.frozen.cfg
        self.ds = self.cfg.downstream
        start, stop = store.split_range("test")
        test = store.read(slice(start, stop))
        self.fields = store.normalise(test)  # normalised test split
        self.physical = grids.each(lambda part: torch.from_numpy(np.array(part)), test)
        self.seasons = torch.as_tensor(store.seasons[start:stop])
        self.times = store.times[start:stop]
        self.inner = split_bounds(stop - start, self.cfg.data.split)
        if min(b - a for a, b in self.inner.values()) < 2:
            raise DataError(f"the test split ({stop - start} days) is too short to cut into inner train/val/test")
        seed = self.cfg.train.seed
        cond = self.ds.condition_mask
        log.info("encoding %d test days (complete and %.0f%% masked)", stop - start, 100 * cond)
        self.h_clean = self.frozen.encode(self.fields)
        self.h_masked = self.frozen.encode(self.fields, cond, seed=derive_seed(seed, "condition-mask"))
        self.forecaster: tuple[torch.nn.Module, int] | None = None  # kept for the robustness task
        self.classifier: torch.nn.Module | None = None
        self.results: dict = {"run": str(run.path), "method": self.cfg.method, "fusion": self.cfg.model.fusion,
                              "preset": self.cfg.preset, "source": store.source, "definitions": DEFINITIONS}

    @cached_property
    def train_range(self) -> tuple:
        """Per-channel (minimum, maximum) of the inner-train days in physical units, one (C,) pair per grid (a list
        for fields on several grids): the authors' scaling for SSIM and PSNR."""
        a, b = self.inner["train"]
        parts = [(x[a:b].amin(dim=(0, 2, 3)), x[a:b].amax(dim=(0, 2, 3))) for x in grids.as_list(self.physical)]
        if isinstance(self.physical, list):
            return [lo for lo, _ in parts], [hi for _, hi in parts]
        return parts[0]

    def _part(self, name: str, x):
        a, b = self.inner[name]
        return x[a:b]

    # ---------------------------------------------------------------- forecasting
    def forecast(self) -> dict:
        ds, out, curves_rows = self.ds, {}, []
        steps = ds.rollout_steps
        climatology = self._monthly_climatology()
        for lookback, stride in ds.forecast_settings:
            label = f"LB{lookback}_S{stride}"
            seeds = ds.forecast_seeds if stride > 1 else ds.forecast_seeds[:1]
            # inputs: 70%-masked days, re-masked at every read (a random one of the mask draws per day);
            # targets: embeddings of the complete next days, which are decoded
            horizon = ds.forecast_horizon
            self._check_forecast_lengths(label, lookback, horizon)
            days = torch.arange(len(self.h_clean))[:, None]
            ctx, _ = make_windows(self._part("train", days), lookback, stride, horizon)
            _, tgt = make_windows(self._part("train", self.h_clean), lookback, stride, horizon)
            val_ctx, _ = make_windows(self._part("val", days), lookback, stride, horizon)
            _, val_tgt = make_windows(self._part("val", self.h_clean), lookback, stride, horizon)
            ctx, val_ctx = ctx[..., 0], val_ctx[..., 0]  # (N, LB) day indices into self.mask_draws
            a, b = self.inner["test"]
            n_windows = b - a - lookback - steps + 1
            starts = torch.arange(a, a + n_windows)
            test_ctx = self.h_masked[starts[:, None] + torch.arange(lookback)]
            per_seed = []
            for seed in seeds:
                model, _ = train_forecaster(ctx, tgt, val_ctx, val_tgt, ds, seed=seed, progress=self.progress,
                                            draws=self.mask_draws)
                if self.forecaster is None:
                    self.forecaster = (model, lookback)
                pred = rollout(model, test_ctx, steps).cpu()
                per_seed.append(self._score_rollout(pred, starts + lookback, label, seed, curves_rows))
            out[label] = self._summarise_seeds(per_seed)
            baselines = self._baselines(starts + lookback, climatology)
            out[label]["baselines"] = {formula: {name: {str(t): curve[t - 1] for t in ds.lead_times}
                                                 for name, curve in per_name.items()}
                                       for formula, per_name in baselines.items()}
            baseline_curves: dict[str, dict[str, np.ndarray]] = {}
            for formula, per_name in baselines.items():
                for name, curve in per_name.items():
                    baseline_curves.setdefault(name, {})[formula] = np.array(curve)
            plots.plot_forecast_curves({self._label(): {k: np.array(v) for k, v in out[label]["curve"].items()},
                                        **baseline_curves},
                                       self.run.figures / f"forecast_curves_{label}.png",
                                       f"{self._label()}: forecast {label}")
        self._write_curves(curves_rows)
        self.results["forecast"] = out
        return out

    @cached_property
    def mask_draws(self) -> Tensor:
        """(K, days, D): ``downstream.forecast_mask_draws`` encodings of every test-split day, each with its own
        ``condition_mask`` draw; the first is ``h_masked`` (the test windows' inputs), so K = 1 is one fixed
        mask per day."""
        cond, seed = self.ds.condition_mask, self.cfg.train.seed
        extra = [self.frozen.encode(self.fields, cond, seed=derive_seed(seed, "condition-mask", str(k)))
                 for k in range(1, self.ds.forecast_mask_draws)]
        return torch.stack([self.h_masked, *extra])

    def _check_forecast_lengths(self, label: str, lookback: int, horizon: int) -> None:
        need = {"train": lookback + horizon, "val": lookback + horizon, "test": lookback + self.ds.rollout_steps}
        short = {k: (b - a, need[k]) for k, (a, b) in self.inner.items() if b - a < need[k]}
        if short:
            listed = ", ".join(f"inner {k} has {have} days, needs {n}" for k, (have, n) in short.items())
            raise DataError(f"forecast {label}: the test split is too short ({listed}); use a longer record "
                            "or lower downstream.rollout_steps / the look-back in downstream.forecast_settings")

    def _score_rollout(self, pred: Tensor, first_target: Tensor, label: str, seed: int, rows: list) -> dict:
        """Decode each lead step of a (N, steps, D) rollout and score it against the truth."""
        curve: dict[str, list[float]] = {k: [] for k in FIELD_METRICS}
        per_channel: dict[int, list[float]] = {}
        map_lead = min(50, pred.shape[1])
        for step in tqdm(range(pred.shape[1]), desc=f"score {label}", leave=False, disable=not self.progress):
            fields = self.frozen.decode(pred[:, step])
            truth = grids.take(self.physical, first_target + step)
            for k, v in field_scores(fields, truth, self.train_range).items():
                curve[k].append(v)
                rows.append({"setting": label, "seed": seed, "lead": step + 1, "metric": k, "value": v})
            if step + 1 in self.ds.lead_times:
                per_channel[step + 1] = metrics.rrmse(fields, truth, per_channel=True).tolist()
            if step + 1 == map_lead and label == self._map_setting() and seed == self.ds.forecast_seeds[0]:
                for part, pred_g, true_g in zip(self.frozen.store.parts, grids.as_list(fields), grids.as_list(truth)):
                    plots.plot_error_maps(pred_g[0].numpy(), true_g[0].numpy(), part.channels, part.lat, part.lon,
                                          f"{self._label()} forecast {label}, T={map_lead}",
                                          self._figure(f"forecast_error_{label}_T{map_lead}", part))
        return {"curve": curve, "rrmse_l2_per_channel": per_channel}

    def _map_setting(self) -> str:
        lb, s = self.ds.forecast_settings[0]
        return f"LB{lb}_S{s}"

    def _summarise_seeds(self, per_seed: list[dict]) -> dict:
        leads = self.ds.lead_times
        summary: dict = {"seeds": len(per_seed), "curve": {}, "at": {}}
        for metric in FIELD_METRICS:
            stacked = np.array([s["curve"][metric] for s in per_seed])  # (seeds, steps)
            summary["curve"][metric] = stacked.mean(0).tolist()
            summary["at"][metric] = {str(t): float(stacked[:, t - 1].mean()) for t in leads}
            summary["at"][f"{metric}_spread"] = {str(t): float(stacked[:, t - 1].std()) for t in leads}
        channels = self.frozen.store.channels
        summary["rrmse_l2_per_channel"] = {
            str(t): dict(zip(channels, np.mean([s["rrmse_l2_per_channel"][t] for s in per_seed], 0).tolist()))
            for t in leads}
        return summary

    def _monthly_climatology(self) -> Fields:
        """Mean field per calendar month over the store's train split (physical units; 0 for an absent month)."""
        store = self.frozen.store
        a, b = store.split_range("train")
        months = store.times[a:b].astype("datetime64[M]").astype(int) % 12
        per_month = []
        for m in range(12):
            days = np.flatnonzero(months == m) + a
            per_month.append(grids.each(lambda x: torch.as_tensor(x, dtype=torch.float64).sum(0) / max(days.size, 1),
                                        store.read(days)))
        return grids.each(lambda x: x.float(), grids.stack(per_month))

    @cached_property
    def _reconstruction_errors(self) -> tuple[Tensor, Tensor, Tensor, int]:
        """Per test day of the decoded complete-input latents: squared error, squared truth and summed truth,
        and the values per day: decoded once for every forecast setting; a pooled RRMSE (either formula)
        over any set of days sums them."""
        recon = self.frozen.decode(self.h_clean)
        truth = grids.as_list(self.physical)
        err2 = sum((p.double() - t.double()).pow(2).sum((1, 2, 3)) for p, t in zip(grids.as_list(recon), truth))
        ref2 = sum(t.double().pow(2).sum((1, 2, 3)) for t in truth)
        ref1 = sum(t.double().sum((1, 2, 3)) for t in truth)
        return err2, ref2, ref1, sum(t[0].numel() for t in truth)

    def _baselines(self, first_target: Tensor, climatology: Tensor) -> dict[str, dict[str, list[float]]]:
        """Per-lead RRMSE, ``{formula: {baseline: curve}}`` for both formulas (``rrmse_paper``, ``rrmse_l2``), of
        persistence (the last look-back day, complete), monthly climatology and the model's reconstruction
        ceiling: its decoder on the true (complete-input) latents of the target days, the best any latent
        forecast can score through this decoder."""
        months = torch.as_tensor(self.times.astype("datetime64[M]").astype(int) % 12)
        names = ("persistence", "climatology", "reconstruction ceiling")
        formulas = {"rrmse_paper": metrics.rrmse_paper, "rrmse_l2": metrics.rrmse}
        out: dict[str, dict[str, list[float]]] = {f: {name: [] for name in names} for f in formulas}
        last_seen = grids.take(self.physical, first_target - 1)
        err2, ref2, ref1, per_day = self._reconstruction_errors
        for step in range(self.ds.rollout_steps):
            targets = first_target + step
            truth = grids.take(self.physical, targets)
            month_mean = grids.take(climatology, months[targets])
            for formula, fn in formulas.items():
                out[formula]["persistence"].append(float(fn(last_seen, truth)))
                out[formula]["climatology"].append(float(fn(month_mean, truth)))
            n = per_day * len(targets)
            out["rrmse_l2"]["reconstruction ceiling"].append(float((err2[targets].sum() / ref2[targets].sum()).sqrt()
                                                                   * 100.0))
            out["rrmse_paper"]["reconstruction ceiling"].append(float((err2[targets].sum() / n).sqrt()
                                                                      / (ref1[targets].sum() / n) * 100.0))
        return out

    def _write_curves(self, rows: list[dict]) -> None:
        path = self.run.evaluation / "forecast_curves.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["setting", "seed", "lead", "metric", "value"])
            writer.writeheader()
            writer.writerows(rows)

    # ---------------------------------------------------------------- diffusion
    def diffusion(self) -> dict:
        ds = self.ds
        seed = derive_seed(self.cfg.train.seed, "diffusion")
        model, schedule, standardizer, _ = train_diffusion(
            self._part("train", self.h_clean), self._part("train", self.h_masked),
            self._part("val", self.h_clean), self._part("val", self.h_masked), ds, seed=seed, progress=self.progress)
        a, b = self.inner["test"]
        idx = torch.arange(a, b)
        if ds.max_conditions and len(idx) > ds.max_conditions:
            idx = idx[torch.linspace(0, len(idx) - 1, ds.max_conditions).round().long()]
        gen = generate(model, schedule, standardizer, self.h_masked[idx], ds.diffusion_samples, generator(seed),
                       batch_size=max(ds.batch_size, 256), progress=self.progress).cpu()  # (N, S, D)
        mean_latents = gen.mean(1)
        mean_fields = self.frozen.decode(mean_latents)
        truth = grids.take(self.physical, idx)
        out = {"conditions": len(idx), "samples": ds.diffusion_samples,
               **field_scores(mean_fields, truth, self.train_range),
               **diffusion_latent_scores(gen, self._part("test", self.h_clean), standardizer.to("cpu"),
                                         ds.density_sigma, ds.realism_k)}
        gen_mask = generator(0)  # an illustration of the condition's sparsity: its ratio, drawn on each native grid
        for part, true_g, gen_g in zip(self.frozen.store.parts, grids.as_list(truth), grids.as_list(mean_fields)):
            observed = true_g[0].clone()
            keep = random_keep_mask(1, len(part.lat), len(part.lon), ds.condition_mask, ds.condition_mask, gen_mask)
            observed[:, ~keep[0, 0]] = float("nan")
            plots.plot_reconstructions(true_g[0].numpy(), observed.numpy(), gen_g[0].numpy(), part.channels,
                                       part.lat, part.lon, self._figure("diffusion_reconstruction", part),
                                       f"{self._label()}: conditional diffusion, mean of {ds.diffusion_samples}")
        self.results["diffusion"] = out
        return out

    # ---------------------------------------------------------------- classification
    def classify(self) -> dict:
        ds, seed = self.ds, derive_seed(self.cfg.train.seed, "classify")
        h = self.frozen.encode(self.fields, (ds.classify_mask_low, ds.classify_mask_high), seed=seed)
        model, _ = train_classifier(self._part("train", h), self._part("train", self.seasons),
                                    self._part("val", h), self._part("val", self.seasons), ds, seed=seed,
                                    progress=self.progress)
        out = evaluate_classifier(model, self._part("test", h), self._part("test", self.seasons))
        plots.plot_confusion(out["confusion"], SEASONS, self.run.figures / "classification_confusion.png",
                             f"{self._label()}: season classification")
        self.results["classify"] = out
        self.classifier = model
        return out

    # ---------------------------------------------------------------- robustness
    def robustness(self) -> dict:
        """Classification accuracy and one-step forecast RRMSE vs the input mask ratio (0-95%).

        Uses the classifier and the first forecaster trained in this evaluation, on the inner test.
        """
        if self.classifier is None or self.forecaster is None:
            raise ValueError("the robustness task needs the forecast and classify tasks in the same evaluation")
        forecaster, lookback = self.forecaster
        a, b = self.inner["test"]
        starts = torch.arange(b - a - lookback)
        out: dict[str, list[float]] = {"mask_ratio": list(ROBUSTNESS_RATIOS), "accuracy": [], "rrmse_l2": []}
        for ratio in tqdm(ROBUSTNESS_RATIOS, desc="robustness", leave=False, disable=not self.progress):
            h = self.frozen.encode(grids.take(self.fields, slice(a, b)), ratio,
                                   seed=derive_seed(self.cfg.train.seed, "robust", str(ratio)))
            out["accuracy"].append(evaluate_classifier(self.classifier, h, self.seasons[a:b])["accuracy"])
            pred = rollout(forecaster, h[starts[:, None] + torch.arange(lookback)], 1)[:, 0].cpu()
            truth = grids.take(self.physical, a + starts + lookback)
            out["rrmse_l2"].append(float(metrics.rrmse(self.frozen.decode(pred), truth)))
        plots.plot_robustness({self._label(): {k: np.array(v) for k, v in out.items()}},
                              self.run.figures / "robustness.png")
        self.results["robustness"] = out
        return out

    # ---------------------------------------------------------------- diagnostics
    def diagnostics(self) -> dict:
        n = min(self.ds.smoothness_days, len(self.h_masked))
        h = self.h_masked[:n]
        out = {}
        for name, fn in (("temporal", metrics.step_distances), ("cycle", metrics.cycle_distances)):
            for suffix, normalise in (("", False), ("_normalised", True)):
                mean, std = metrics.mean_std(fn(h, normalise=normalise))
                out[f"{name}{suffix}"] = {"mean": mean, "std": std}
        label = self._label()
        figs = self.run.figures
        plots.plot_distance_series({label: metrics.step_distances(h).numpy()}, "||h_t - h_{t-1}||^2",
                                   figs / "temporal_distance.png")
        plots.plot_distance_series({label: metrics.cycle_distances(h).numpy()}, "||h_{t-1} - 2h_t + h_{t+1}||^2",
                                   figs / "cycle_distance.png")
        plots.plot_pca({label: h.numpy()}, figs / "pca.png")
        np.save(self.run.evaluation / "smoothness_latents.npy", h.numpy())
        windows = self._trajectory_windows()
        if windows is not None:
            plots.plot_trajectories({label: windows}, figs / "trajectories.png", seed=self.cfg.train.seed)
        self.results["smoothness"] = out
        return out

    def _trajectory_windows(self, lookback: int = 5, stride: int = 5, count: int = 64):
        """Mean embedding of non-overlapping masked look-back windows and the next (masked) day."""
        n = min(count, (len(self.h_masked) - lookback - 1) // stride + 1)
        if n < 6:
            return None
        starts = torch.arange(n) * stride
        means = self.h_masked[starts[:, None] + torch.arange(lookback)].mean(1)
        return means.numpy(), self.h_masked[starts + lookback].numpy()

    # ---------------------------------------------------------------- driver
    def _figure(self, stem: str, part: PreparedStore) -> Path:
        """Figure path; maps of a store on several grids get one figure per grid."""
        suffix = f"_{part.grid}" if len(self.frozen.store.parts) > 1 else ""
        return self.run.figures / f"{stem}{suffix}.png"

    def _label(self) -> str:
        if self.cfg.method == "pca":
            return "EOF/PCA"
        return "Autoencoder" if self.cfg.method == "autoencoder" else f"SPARTA ({self.cfg.model.fusion})"

    def run_tasks(self, tasks: list[str]) -> dict:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
        self.run.evaluation.mkdir(parents=True, exist_ok=True)
        path = self.run.evaluation / "metrics.json"
        if path.exists():  # keep results of tasks not re-run
            self.results = {**json.loads(path.read_text()), **self.results}
        for task in TASKS:
            if task in tasks:
                log.info("%s: %s", self.run.path, task)
                getattr(self, task)()
                path.write_text(json.dumps(self.results, indent=1))
        return self.results
