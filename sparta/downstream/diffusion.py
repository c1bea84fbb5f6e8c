"""Conditional DDPM in latent space (paper section 4.2, Algorithm 1).

The noise schedule and the ancestral sampler are diffusers' ``DDPMScheduler``: Ho et al.'s linear
betas, epsilon prediction, and the sampler's variance sigma_t^2 = beta_t (diffusers' "fixed_large",
Algorithm 1's choice; "fixed_small" would be the posterior variance). Latents must never be clipped,
so ``clip_sample=False`` (diffusers clips to [-1, 1] by default). The DDPM runs on standardised
latents (unit variance per dimension): the reference fed raw, small-scale latents to a
unit-variance noise process. The condition (the latent of a masked sample) is standardised with
the same statistics, since it lives in the same space.

Timesteps are diffusers' indices k = 0..T-1, k meaning k + 1 noising steps (the paper's t = k + 1);
the denoiser sees the paper's t / T = (k + 1) / T.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from sparta.config import DownstreamConfig
from sparta.downstream.common import fit, seeded


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def make_scheduler(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMScheduler:
    """Linear beta schedule of Ho et al. over ``steps`` timesteps, sampled with sigma_t^2 = beta_t, no clipping."""
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return DDPMScheduler(num_train_timesteps=steps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule="linear", variance_type="fixed_large", clip_sample=False,
                         prediction_type="epsilon")


def model_time(k: Tensor, scheduler: DDPMScheduler) -> Tensor:
    """The denoiser's time input for diffusers' timestep indices ``k``: the paper's t / T = (k + 1) / T."""
    return (k + 1) / scheduler.config.num_train_timesteps


def diffusion_loss(scheduler: DDPMScheduler, model: nn.Module, x0: Tensor, cond: Tensor,
                   generator: torch.Generator) -> Tensor:
    """Epsilon-prediction MSE with the paper's t ~ U{1..T} (k ~ U{0..T-1}; t = 0 would be a noiseless, useless target)."""
    k = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator,
                      device=generator.device).to(x0.device)
    noise = _randn(tuple(x0.shape), generator, x0)
    return F.mse_loss(model(scheduler.add_noise(x0, noise, k), model_time(k, scheduler), cond), noise)


def sample(scheduler: DDPMScheduler, model: nn.Module, cond: Tensor, generator: torch.Generator,
           progress: bool = False) -> Tensor:
    """Algorithm 1: ancestral sampling from N(0, I), sigma_t = sqrt(beta_t), no noise at the last step (t = 1).

    The condition lives in the latent space, so the sample takes its shape. The paper's printed
    update divides by sqrt(1 - alpha_t); the DDPM update (the reference code, and diffusers) divides
    by sqrt(1 - alpha_bar_t). Every draw comes from ``generator``, in the same order as before
    diffusers (x_T, then one draw per step after the denoiser's call), so a seed gives the same draws.
    """
    model.eval()
    x = _randn(tuple(cond.shape), generator, cond)
    with torch.no_grad():
        for k in tqdm(range(scheduler.config.num_train_timesteps - 1, -1, -1), desc="sample",
                      disable=not progress, leave=False):
            eps = model(x, model_time(torch.full((len(x),), k, device=x.device), scheduler), cond)
            x = scheduler.step(eps, k, x, generator=generator).prev_sample
    return x


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t in [0, 1] (t/T, as the reference) with periods from 1 to 1/1000."""
    freqs = 2 * math.pi * torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2, device=t.device))
    angles = t[:, None].float() * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class CrossAttention(nn.Module):
    """Queries: the hidden state split into tokens; keys/values: the condition tokens.

    Several condition tokens are what makes this attention: over a single token (the reference)
    the softmax weight is always 1 and the block reduces to a linear function of the condition.
    Token and head counts fall back to common divisors so that any width works (tiny test sizes).
    """

    def __init__(self, width: int, token_dim: int, query_tokens: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.query_tokens = math.gcd(query_tokens, width)
        qdim = width // self.query_tokens
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(qdim, math.gcd(heads, qdim), kdim=token_dim, vdim=token_dim,
                                          batch_first=True)

    def forward(self, x: Tensor, cond_tokens: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x`` (B, W), ``cond_tokens`` (B, K, token_dim) -> (update (B, W), weights (B, Q, K) or None)."""
        q = self.norm(x).view(len(x), self.query_tokens, -1)
        out, weights = self.attn(q, cond_tokens, cond_tokens, need_weights=need_weights)
        return out.reshape(len(x), -1), weights


class _Block(nn.Module):
    """Timestep injection, residual MLP (Linear-Norm-SiLU-Linear), then residual cross-attention."""

    def __init__(self, d_in: int, d_out: int, time_dim: int, token_dim: int, heads: int) -> None:
        super().__init__()
        self.time = nn.Linear(time_dim, d_in)
        self.mlp = nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU(), nn.Linear(d_out, d_out))
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.cross = CrossAttention(d_out, token_dim, heads=heads)

    def forward(self, x: Tensor, t_emb: Tensor, cond_tokens: Tensor) -> Tensor:
        x = x + self.time(t_emb)
        x = self.skip(x) + self.mlp(x)
        return x + self.cross(x, cond_tokens)[0]


class LatentUNet(nn.Module):
    """The paper's "linear U-Net": an MLP U-Net over a latent vector, cross-attending to a condition.

    Widths hidden -> hidden/2 -> hidden/4 (bottleneck) -> hidden/2 -> hidden, with the encoder
    outputs concatenated into the decoder blocks. The condition (B, D) is projected once to
    ``cond_tokens`` tokens of ``hidden // cond_tokens`` features (a Linear, so D need not divide).
    """

    def __init__(self, latent_dim: int, hidden: int = 1024, time_dim: int = 256, cond_tokens: int = 8,
                 heads: int = 4) -> None:
        super().__init__()
        self.time_dim = time_dim
        h1, h2, h4 = hidden, max(hidden // 2, 1), max(hidden // 4, 1)
        token_dim = max(hidden // cond_tokens, 4)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.cond_proj = nn.Sequential(nn.Linear(latent_dim, cond_tokens * token_dim),
                                       nn.Unflatten(1, (cond_tokens, token_dim)), nn.LayerNorm(token_dim))
        self.inp = nn.Linear(latent_dim, h1)

        def block(d_in: int, d_out: int) -> _Block:
            return _Block(d_in, d_out, time_dim, token_dim, heads)

        self.enc1, self.enc2, self.mid = block(h1, h2), block(h2, h4), block(h4, h4)
        self.dec2, self.dec1, self.dec0 = block(2 * h4, h2), block(2 * h2, h1), block(2 * h1, h1)
        self.out = nn.Sequential(nn.LayerNorm(h1), nn.SiLU(), nn.Linear(h1, latent_dim))

    def condition_tokens(self, cond: Tensor) -> Tensor:
        """(B, D) condition -> (B, cond_tokens, token_dim) keys/values for every block."""
        return self.cond_proj(cond)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predict the noise in ``x`` (B, D) at diffusion time ``t`` (B,) in [0, 1] given ``cond`` (B, D)."""
        t_emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        c = self.condition_tokens(cond)
        h0 = self.inp(x)
        h1 = self.enc1(h0, t_emb, c)
        h2 = self.enc2(h1, t_emb, c)
        y = self.mid(h2, t_emb, c)
        y = self.dec2(torch.cat([y, h2], -1), t_emb, c)
        y = self.dec1(torch.cat([y, h1], -1), t_emb, c)
        y = self.dec0(torch.cat([y, h0], -1), t_emb, c)
        return self.out(y)


class LatentStandardizer(nn.Module):
    """Per-dimension z-scoring fitted on the training latents; buffers, so it checkpoints with tensors."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @classmethod
    def fit(cls, latents: Tensor, eps: float = 1e-6) -> LatentStandardizer:
        """Mean and std over the sample axis of (N, D); std floored at ``eps`` for constant dimensions."""
        return cls(latents.mean(0), latents.std(0).clamp_min(eps))

    def forward(self, latents: Tensor) -> Tensor:
        return (latents - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


class DiffusionSpace(nn.Module):
    """Where the DDPM runs. Conditions are latents standardised with the complete-day latents' statistics
    (``latents``, also the space the latent scores use). What it generates is, by default (the paper), the
    standardised complete-day latent; with ``residual``, the complete-day latent minus its condition,
    standardised by ``target`` (as CorrDiff diffuses the residual of a regression): a generation then starts
    at the condition's own latent and the denoiser only has to learn what masking changed, which a small
    training set can teach where the whole latent distribution it cannot."""

    def __init__(self, latents: LatentStandardizer, target: LatentStandardizer, residual: bool) -> None:
        super().__init__()
        self.latents, self.target_scale, self.residual = latents, target, residual

    @classmethod
    def fit(cls, latents: Tensor, conds: Tensor, residual: bool) -> DiffusionSpace:
        standardizer = LatentStandardizer.fit(latents)
        return cls(standardizer, LatentStandardizer.fit(latents - conds) if residual else standardizer, residual)

    def condition(self, conds: Tensor) -> Tensor:
        return self.latents(conds)

    def target(self, latents: Tensor, conds: Tensor) -> Tensor:
        return self.target_scale(latents - conds if self.residual else latents)

    def generated(self, z: Tensor, conds: Tensor) -> Tensor:
        """Standardised draws ``z`` of the conditions ``conds`` (raw latents) -> raw latents."""
        x = self.target_scale.inverse(z)
        return x + conds if self.residual else x


def train_diffusion(latents: Tensor, conds: Tensor, val_latents: Tensor, val_conds: Tensor,
                    cfg: DownstreamConfig, seed: int = 0, progress: bool = True
                    ) -> tuple[LatentUNet, DDPMScheduler, DiffusionSpace, list[dict[str, float]]]:
    """Fit the :class:`DiffusionSpace` on ``latents`` (and ``cfg.diffusion_residual``), then the denoiser on
    (target, condition) pairs.

    Adam lr ``cfg.diffusion_lr``, batch ``cfg.batch_size``, ``cfg.diffusion_epochs`` epochs; the
    per-epoch loss is that epoch's alone and the plateau scheduler watches the validation loss
    (the reference's running mean over all epochs kept the LR from ever dropping).
    """
    space = DiffusionSpace.fit(latents, conds, cfg.diffusion_residual)
    scheduler = make_scheduler(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        return diffusion_loss(scheduler, model, batch[0], batch[1], generator)

    train = (space.target(latents, conds), space.condition(conds))
    val = (space.target(val_latents, val_conds), space.condition(val_conds))
    with seeded(seed):
        model = LatentUNet(latents.shape[-1], cfg.diffusion_hidden, cond_tokens=cfg.condition_tokens)
        history = fit(model, train, val, loss_fn, epochs=cfg.diffusion_epochs, lr=cfg.diffusion_lr,
                      batch_size=cfg.batch_size, seed=seed, progress=progress, desc="diffusion")
    return model, scheduler, space, history


def generate(model: LatentUNet, scheduler: DDPMScheduler, space: DiffusionSpace, conds: Tensor,
             n_samples: int, generator: torch.Generator, batch_size: int = 512,
             progress: bool = True) -> Tensor:
    """``n_samples`` DDPM draws per condition: (N, D) conditions -> (N, n_samples, D), original scale.

    Rows are (condition, draw) pairs sampled ``batch_size`` at a time; the progress bar counts
    denoising steps, the slow part.
    """
    device = next(model.parameters()).device
    space = space.to(device)
    conds = conds.to(device).repeat_interleave(n_samples, 0)
    rows = space.condition(conds)
    out = torch.cat([sample(scheduler, model, chunk, generator, progress) for chunk in rows.split(batch_size)])
    return space.generated(out, conds).view(-1, n_samples, conds.shape[-1])
