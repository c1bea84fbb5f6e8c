"""The classification task: the season of sparse inner-test days from their embeddings, by several seeded
classifiers whose logits are saved as predictions and scored."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from sparta import plots, predictions
from sparta.data.store import DataError
from sparta.downstream.classify import class_logits, classification_scores
from sparta.evaluation.downstream_models import season_classifier
from sparta.evaluation.state import SEASONS, Evaluation, Task
from sparta.runs import Run
from sparta.tasks import TASK_SPECS


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


TASK = Task(TASK_SPECS["classify"], classify, _draw_classify, score_classify)
