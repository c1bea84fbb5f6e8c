"""The forecast task: latent rollouts of every look-back/stride setting and seed (and of the linear inverse
model), saved as latent predictions and scored, decoded, per lead step beside the baselines."""

from __future__ import annotations

import csv

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from sparta import grids, metrics, plots, predictions
from sparta.data.store import DataError
from sparta.downstream.forecast import LIM_SETTING, rollout
from sparta.evaluation.baselines import forecast_baselines, variable_baselines
from sparta.evaluation.downstream_models import check_forecast_lengths, latent_forecaster, linear_forecaster
from sparta.evaluation.state import (EVERY_LEAD, FIELD_KEYS, Evaluation, Task, draw_maps, field_scores, save_maps,
                                     write_csv)
from sparta.runs import Run
from sparta.tasks import TASK_SPECS


def _score_rollout(ev: Evaluation, pred: Tensor, first_target: Tensor, label: str, seed: int, rows: list) -> dict:
    """Decode each lead step of a (N, steps, D) rollout and score it against the truth: the :data:`EVERY_LEAD`
    scores and the per-variable RMSE and ACC at every step (``curve``, ``per_variable``), every score at the
    reported ``downstream.lead_times`` (``at``)."""
    curve: dict[str, list[float]] = {k: [] for k in EVERY_LEAD}
    per_variable: dict[str, dict[str, list[float]]] = {name: {} for name in metrics.VARIABLE_METRICS}
    at: dict[str, dict[int, float]] = {k: {} for k in FIELD_KEYS}
    per_channel: dict[int, list[float]] = {}
    map_lead = min(50, pred.shape[1])
    for step in tqdm(range(pred.shape[1]), desc=f"score {label}", leave=False, disable=not ev.progress):
        lead, reported = step + 1, step + 1 in ev.downstream.lead_times
        fields = ev.frozen.decode(pred[:, step])
        truth = grids.take(ev.physical, first_target + step)
        pooled = field_scores(fields, truth, ev.train_range, FIELD_KEYS if reported else EVERY_LEAD)
        for k, v in pooled.items():
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
            save_maps(ev, f"forecast_error_{label}_T{map_lead}", "error",
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
    for metric in FIELD_KEYS:  # every score at the reported leads
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


def forecast(ev: Evaluation) -> dict:
    """Latent forecasting: LSTM rollouts from masked look-back windows (and the linear inverse model's, from the
    last day of the first setting's windows), written as predictions (:func:`_write_rollouts`) and scored by
    :func:`score_forecast`."""
    settings = ev.downstream
    for lookback, stride in settings.forecast_settings:
        label = f"LB{lookback}_S{stride}"
        seeds = settings.forecast_seeds if stride > 1 else settings.forecast_seeds[:1]
        check_forecast_lengths(ev, label, lookback, settings.forecast_horizon)
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
    write_csv(ev.run, "forecast_curves.csv", curves_rows, ["setting", "seed", "lead", "metric", "value"])
    write_csv(ev.run, "forecast_baselines.csv", baseline_rows, ["setting", "baseline", "lead", "metric", "value"])
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


TASK = Task(TASK_SPECS["forecast"], forecast,
            lambda run, r, label: (_draw_forecast(run, r, label), draw_maps(run, ("forecast_",))), score_forecast)
