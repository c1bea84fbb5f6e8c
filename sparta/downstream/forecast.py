"""Autoregressive forecasting in latent space: a seq2seq LSTM (paper section 4.1) and a linear inverse model.

The LSTM is trained on the next-step latent only (eq. 10) and evaluated by feeding its own
predictions back for many steps, entirely in latent space; decoding and data-space scores are the
orchestrator's job. Teacher forcing is left out: with a one-step target it never applies.
Multi-step targets (H > 1) are accepted too: they train the decoder on its own fed-back outputs,
which the one-step setting never does, so its long rollouts drift (see the tests).

The linear inverse model (LIM; Penland & Sardeshmukh 1995, the classic forecast of EOF coefficients)
is the same rollout with one fitted matrix: with the few hundred days the downstream split holds it
forecasts the next day better than the LSTM (docs/decisions.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sparta.config import DownstreamConfig
from sparta.downstream.common import fit, seeded


class Seq2SeqLSTM(nn.Module):
    """Encoder LSTM over the look-back latents; decoder LSTM + linear head, fed its own output.

    The decoder's first input is the last context latent (as the reference). At D=1000, hidden 128
    it has the reference's 1,286,120 parameters.

    ``residual``: each step is the previous latent plus the head's output, minus a learned decay per
    latent dimension, held in [0, 1], towards ``mean`` (the training targets' mean; a negative decay
    made some quick rollouts grow without bound). Head and decay start at zero, so an
    untrained model is persistence and training learns the departures from it; the decay lets long
    rollouts relax towards the mean state instead of accumulating the head's errors (without it the
    quick rollouts drifted to 3x climatology's error by T=100).
    """

    def __init__(self, embed_dim: int, hidden: int = 128, dropout: float = 0.0, residual: bool = False,
                 mean: Tensor | None = None) -> None:
        super().__init__()
        self.encoder = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.decoder = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, embed_dim)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.decay = nn.Parameter(torch.zeros(embed_dim))
            self.register_buffer("mean", torch.zeros(embed_dim) if mean is None else mean.detach().clone().float())

    def forward(self, context: Tensor, steps: int) -> Tensor:
        """``context`` (B, LB, D) -> predicted latents (B, steps, D)."""
        _, state = self.encoder(context)
        x = context[:, -1:]
        preds = []
        for _ in range(steps):
            out, state = self.decoder(x, state)
            step = self.head(self.dropout(out))
            x = x + step - self.decay.clamp(0.0, 1.0) * (x - self.mean) if self.residual else step
            preds.append(x)
        return torch.cat(preds, dim=1)


class LinearInverseModel(nn.Module):
    """``x' = mean + (x - mean) @ matrix``, stepped from the last context latent: a rollout with the LSTM's
    interface (``context`` (B, LB, D) -> (B, steps, D); only the last day is read)."""

    def __init__(self, matrix: Tensor, mean: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix.float())
        self.register_buffer("mean", mean.float())

    def forward(self, context: Tensor, steps: int) -> Tensor:
        x, preds = context[:, -1], []
        for _ in range(steps):
            x = self.mean + (x - self.mean) @ self.matrix
            preds.append(x)
        return torch.stack(preds, dim=1)

    def spectral_radius(self) -> float:
        """Largest eigenvalue modulus: below 1, rollouts relax to the mean; above, some pattern grows."""
        return float(torch.linalg.eigvals(self.matrix.double()).abs().max())


LIM_SETTING = "LIM"
"""The linear inverse model's key among the forecast settings (``LB{look-back}_S{stride}``) of metrics.json."""

LIM_RIDGES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Ridges (relative to the mean latent variance) the LIM chooses from on the validation days; on the quick
runs' 527 training days the choice was 1 (docs/decisions.md)."""


def fit_linear_inverse_model(latents: Tensor, ridge: float) -> LinearInverseModel:
    """The LIM of a (T, D) sequence of consecutive latents: the ridge regression of each day on the day
    before, shrunk towards persistence (``matrix`` = identity) rather than towards zero.

    Minimises ``||Y - X A||^2 + r ||A - I||^2`` over anomalies from the sequence mean, with
    ``r = ridge * trace(X^T X) / D``: ``ridge`` is relative to the mean variance, so it means the same at
    any latent scale. ``ridge -> 0`` is the least-squares LIM (which overfits a few hundred days),
    ``ridge -> inf`` is persistence.
    """
    x = latents.double()
    mean = x.mean(0)
    past, future = x[:-1] - mean, x[1:] - mean
    gram = past.T @ past
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    r = ridge * gram.diagonal().mean()
    matrix = torch.linalg.solve(gram + r * eye, past.T @ future + r * eye)
    return LinearInverseModel(matrix, mean)


def train_linear_forecaster(latents: Tensor, val_inputs: Tensor, score: Callable[[Tensor], float],
                            ridges: tuple[float, ...] = LIM_RIDGES) -> tuple[LinearInverseModel, dict[str, float]]:
    """Fit a LIM on ``latents`` (T, D), consecutive complete days, for each ridge and keep the one whose
    next-day forecasts from ``val_inputs`` (N, D) ``score`` lowest (the evaluation passes the decoded
    fields' RRMSE: the latent MSE chose a ridge 3x smaller that forecast worse on every quick run).

    Returns the model and ``{"ridge", "val_score", "spectral_radius"}``.
    """
    scored = []
    for ridge in ridges:
        model = fit_linear_inverse_model(latents, ridge)
        scored.append((score(rollout(model, val_inputs[:, None], 1)[:, 0]), ridge, model))
    val_score, ridge, model = min(scored, key=lambda item: item[0])
    return model, {"ridge": ridge, "val_score": val_score, "spectral_radius": model.spectral_radius()}


def make_windows(latents: Tensor, lookback: int, stride: int, horizon: int) -> tuple[Tensor, Tensor]:
    """Cut a (T, D) latent sequence into (context (N, LB, D), target (N, horizon, D)) windows.

    Window ``i`` starts at ``i * stride`` (the paper's sampling interval S, as in the reference):
    the stride thins the window starts, the steps inside a window stay consecutive.
    ``N = (T - lookback - horizon) // stride + 1``.
    """
    if lookback < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"lookback, stride and horizon must be >= 1, got {lookback}, {stride}, {horizon}")
    span = lookback + horizon
    if len(latents) < span:
        raise ValueError(f"a sequence of {len(latents)} steps is shorter than lookback + horizon = {span}")
    starts = torch.arange(0, len(latents) - span + 1, stride, device=latents.device)
    windows = latents[starts[:, None] + torch.arange(span, device=latents.device)]
    return windows[:, :lookback], windows[:, lookback:]


def read_contexts(days: Tensor, draws: Tensor, generator: torch.Generator) -> Tensor:
    """Context latents of a read of windows: ``days`` (B, LB) day indices into ``draws`` (K, T, D), K mask
    draws per day; each (window, day) takes one of the K draws at random, so every read of a window
    sees fresh masks (the authors' dataset masks at every read) -> (B, LB, D)."""
    pick = torch.randint(len(draws), tuple(days.shape), generator=generator, device=generator.device)
    return draws[pick.to(draws.device), days.to(draws.device)]


def train_forecaster(ctx: Tensor, tgt_next: Tensor, val_ctx: Tensor, val_tgt: Tensor, cfg: DownstreamConfig,
                     seed: int = 0, progress: bool = True, dropout: float = 0.0, draws: Tensor | None = None
                     ) -> tuple[Seq2SeqLSTM, list[dict[str, float]]]:
    """Train on next-latent MSE (eq. 10, mean over elements as the reference's ``MSELoss``).

    Contexts are (N, LB, D) latents, or with ``draws`` (K, T, D), K masked encodings of T days, (N, LB)
    day indices into it: every read of a window (each epoch, and each validation pass) then draws
    one of the K masks per day (:func:`read_contexts`). Targets are (N, H, D) as ``make_windows``
    gives them (H = 1 is the paper's setting) or (N, D). Adam lr ``cfg.forecast_lr`` (else ``cfg.lr``), weight decay 1e-6,
    batch ``cfg.batch_size``, ``cfg.forecast_epochs`` epochs. ``dropout`` 0.3 reproduces the
    reference's LB5/S5 runs.
    """
    tgt_next, val_tgt = (t[:, None] if t.ndim == 2 else t for t in (tgt_next, val_tgt))

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        context, target = batch
        if draws is not None:
            context = read_contexts(context, draws, generator).to(target.device)
        return F.mse_loss(model(context, target.shape[1]), target)

    with seeded(seed):
        mean = tgt_next.reshape(-1, tgt_next.shape[-1]).mean(0) if cfg.forecast_residual else None
        model = Seq2SeqLSTM(tgt_next.shape[-1], cfg.lstm_hidden, dropout, cfg.forecast_residual, mean=mean)
        history = fit(model, (ctx, tgt_next), (val_ctx, val_tgt), loss_fn, epochs=cfg.forecast_epochs,
                      lr=cfg.forecast_lr or cfg.lr, batch_size=cfg.batch_size, weight_decay=1e-6, seed=seed,
                      progress=progress, desc="forecast")
    return model, history


def rollout(model: nn.Module, context: Tensor, steps: int) -> Tensor:
    """Forecast ``steps`` latents (B, steps, D) from ``context`` (B, LB, D), never re-encoding."""
    model.eval()
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    with torch.no_grad():
        return model(context.to(device), steps)
