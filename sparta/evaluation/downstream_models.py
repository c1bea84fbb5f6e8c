"""The downstream models several tasks share, trained on demand and cached by their settings and seed
(:meth:`~sparta.evaluation.state.Evaluation.cached`): a task gets the same seeded model whether or not another
task trained it first."""

from __future__ import annotations

import torch
from torch import Tensor

from sparta import grids, metrics
from sparta.data.store import DataError
from sparta.downstream.classify import train_classifier
from sparta.downstream.forecast import LinearInverseModel, make_windows, train_forecaster, train_linear_forecaster
from sparta.evaluation.state import Evaluation
from sparta.seeding import derive_seed


def latent_forecaster(ev: Evaluation, lookback: int, stride: int, seed: int) -> torch.nn.Module:
    """The latent forecaster of one look-back/stride setting and seed, trained on the inner train/val.

    Inputs: 70%-masked days, re-masked at every read (a random one of the mask draws per day);
    targets: embeddings of the complete next days.
    """
    def train() -> torch.nn.Module:
        check_forecast_lengths(ev, f"LB{lookback}_S{stride}", lookback, ev.downstream.forecast_horizon)
        horizon = ev.downstream.forecast_horizon
        days = torch.arange(len(ev.h_clean))[:, None]
        ctx, _ = make_windows(ev.inner_part("train", days), lookback, stride, horizon)
        _, tgt = make_windows(ev.inner_part("train", ev.h_clean), lookback, stride, horizon)
        val_ctx, _ = make_windows(ev.inner_part("val", days), lookback, stride, horizon)
        _, val_tgt = make_windows(ev.inner_part("val", ev.h_clean), lookback, stride, horizon)
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
        model, _ = train_classifier(ev.inner_part("train", h), ev.inner_part("train", ev.seasons),
                                    ev.inner_part("val", h), ev.inner_part("val", ev.seasons), settings,
                                    seed=derive_seed(seed, str(k)) if k else seed, progress=ev.progress)
        return model, h

    return ev.cached(("classify", k), train)


def check_forecast_lengths(ev: Evaluation, label: str, lookback: int, horizon: int) -> None:
    need = {"train": lookback + horizon, "val": lookback + horizon, "test": lookback + ev.downstream.rollout_steps}
    short = {k: (b - a, need[k]) for k, (a, b) in ev.inner.items() if b - a < need[k]}
    if short:
        listed = ", ".join(f"inner {k} has {have} days, needs {n}" for k, (have, n) in short.items())
        raise DataError(f"forecast {label}: the test split is too short ({listed}); use a longer record "
                        "or lower downstream.rollout_steps / the look-back in downstream.forecast_settings")
