"""The forecasts' baselines on the days a forecast setting scores: persistence, the day-of-year climatology
and the model's reconstruction ceiling (its decoder on the true latents of the target days)."""

from __future__ import annotations

import torch
from torch import Tensor

from sparta import grids, metrics
from sparta.evaluation.state import Evaluation


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
