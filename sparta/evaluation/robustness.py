"""The robustness task: season accuracy and one-step forecast error against the fraction of each day hidden."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from sparta import grids, metrics, plots
from sparta.downstream.classify import evaluate_classifier
from sparta.downstream.forecast import rollout
from sparta.evaluation.downstream_models import latent_forecaster, season_classifier
from sparta.evaluation.state import ROBUSTNESS_RATIOS, SEASONS, Evaluation, Task
from sparta.runs import Run
from sparta.tasks import TASK_SPECS


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


TASK = Task(TASK_SPECS["robustness"], robustness, _draw_robustness)
