"""Downstream models on latent tensors: shapes, known values, and tiny problems they must learn."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn
from torch.nn import functional as F

from sparta.config import DownstreamConfig
from sparta.downstream.classify import SeasonClassifier, evaluate_classifier, train_classifier
from sparta.downstream.common import fit
from sparta.downstream.diffusion import (
    DiffusionSpace,
    LatentStandardizer,
    LatentUNet,
    diffusion_loss,
    generate,
    make_scheduler,
    sample,
    train_diffusion,
)
from sparta.downstream.forecast import (
    LIM_RIDGES,
    LinearInverseModel,
    Seq2SeqLSTM,
    fit_linear_inverse_model,
    make_windows,
    read_contexts,
    rollout,
    train_forecaster,
    train_linear_forecaster,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- common.fit

def _mse(model: nn.Module, batch: tuple[Tensor, ...], _: torch.Generator) -> Tensor:
    return F.mse_loss(model(batch[0]), batch[1])


def test_fit_restores_best_weights_and_resets_epoch_loss() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    # Train and validation targets disagree, so the validation loss is best early and then rises.
    train, val = (x, x @ torch.tensor([[2.0], [0.0], [0.0]])), (x, x @ torch.tensor([[-2.0], [0.0], [0.0]]))
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    history = fit(model, train, val, _mse, epochs=15, lr=0.05, batch_size=16, progress=False)
    val_losses = [h["val_loss"] for h in history]
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert val_losses[-1] > min(val_losses)
    with torch.no_grad():
        final = F.mse_loss(model(val[0]), val[1]).item()
    assert final == pytest.approx(min(val_losses), rel=1e-5)
    # Per-epoch (not running) train loss: the last epoch's is far below the first's.
    assert history[-1]["train_loss"] < 0.1 * history[0]["train_loss"]


def test_fit_reduces_lr_on_plateau() -> None:
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    history = fit(model, (x, x[:, :1]), (x, -x[:, :1]), _mse, epochs=8, lr=0.1, batch_size=8,
                  plateau_patience=1, progress=False)
    lrs = [h["lr"] for h in history]
    assert lrs[0] == pytest.approx(0.1) and min(lrs) <= 0.01 + 1e-12


# ---------------------------------------------------------------- forecast

def test_make_windows_values_and_counts() -> None:
    latents = torch.arange(20.0)[:, None].repeat(1, 2)  # h_t = (t, t)
    ctx, tgt = make_windows(latents, lookback=5, stride=5, horizon=1)
    assert ctx.shape == (3, 5, 2) and tgt.shape == (3, 1, 2)  # (20 - 5 - 1)//5 + 1
    assert ctx[:, :, 0].tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    assert tgt[:, 0, 0].tolist() == [5, 10, 15]
    ctx, tgt = make_windows(latents, lookback=3, stride=1, horizon=4)
    assert len(ctx) == 20 - 3 - 4 + 1
    assert ctx[-1, :, 0].tolist() == [13, 14, 15] and tgt[-1, :, 0].tolist() == [16, 17, 18, 19]
    with pytest.raises(ValueError, match="shorter"):
        make_windows(latents, lookback=18, stride=1, horizon=3)


def test_seq2seq_shapes_and_reference_size() -> None:
    model = Seq2SeqLSTM(6, hidden=5)
    assert model(torch.randn(4, 7, 6), steps=3).shape == (4, 3, 6)
    assert _params(Seq2SeqLSTM(1000, 128)) == 1_286_120


def test_residual_forecaster_starts_as_persistence() -> None:
    model = Seq2SeqLSTM(6, hidden=5, residual=True)
    context = torch.randn(4, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(context, steps=3), context[:, -1:].expand(4, 3, 6))


def test_residual_forecaster_decays_towards_the_mean() -> None:
    # With the head silent, each step keeps (1 - decay) of the departure from the mean: long rollouts relax to it.
    mean = torch.tensor([1.0, -2.0, 0.5])
    model = Seq2SeqLSTM(3, hidden=4, residual=True, mean=mean)
    with torch.no_grad():
        model.decay.fill_(0.5)
        context = torch.randn(2, 5, 3)
        pred = model(context, steps=4)
    expected = mean + (context[:, -1:] - mean) * 0.5 ** torch.arange(1, 5).reshape(1, 4, 1)
    torch.testing.assert_close(pred, expected)


def test_residual_forecaster_takes_the_targets_mean() -> None:
    seq = torch.randn(80, 3) + torch.tensor([5.0, 0.0, -5.0])
    ctx, tgt = make_windows(seq[:60], lookback=4, stride=1, horizon=1)
    vctx, vtgt = make_windows(seq[60:], lookback=4, stride=1, horizon=1)
    cfg = DownstreamConfig(forecast_epochs=1, lstm_hidden=4, batch_size=16, forecast_residual=True)
    model, _ = train_forecaster(ctx, tgt, vctx, vtgt, cfg, seed=0, progress=False)
    torch.testing.assert_close(model.mean, tgt.reshape(-1, 3).mean(0))


def _rotation_sequence(steps: int, dim: int = 4, angles: tuple[float, float] = (0.3, 0.7)) -> Tensor:
    """h_{t+1} = R h_t with R two planar rotations: linear, norm-preserving latent dynamics."""
    rot = torch.zeros(dim, dim)
    for k, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        rot[2 * k:2 * k + 2, 2 * k:2 * k + 2] = torch.tensor([[c, -s], [s, c]])
    h = [torch.tensor([1.0, 0.0, 0.0, 1.0])]
    for _ in range(steps - 1):
        h.append(rot @ h[-1])
    return torch.stack(h)


def test_forecaster_learns_rotation_one_step() -> None:
    """The paper's setting: trained on the next latent only, the one-step forecast is near exact."""
    seq = _rotation_sequence(300)
    ctx, tgt = make_windows(seq[:240], lookback=5, stride=1, horizon=1)
    vctx, vtgt = make_windows(seq[240:], lookback=5, stride=1, horizon=1)
    cfg = DownstreamConfig(forecast_epochs=30, lstm_hidden=32, batch_size=32)
    model, history = train_forecaster(ctx, tgt, vctx, vtgt, cfg, seed=0, progress=False)
    assert min(h["val_loss"] for h in history) < 1e-3
    pred = rollout(model, vctx, steps=1)
    assert F.mse_loss(pred, vtgt) < 0.01 * F.mse_loss(vctx[:, -1:], vtgt)  # vs persistence


def test_forecaster_multistep_rollout_beats_persistence() -> None:
    """Trained on 3-step targets, the fed-back rollout stays accurate for 10 steps.

    (Trained on one step only, as the paper does, the fed-back decoder drifts after the first step
    even on this linear dynamics: its later inputs and states were never trained.)
    """
    seq = _rotation_sequence(300)
    ctx, tgt = make_windows(seq[:240], lookback=5, stride=1, horizon=3)
    vctx, vtgt = make_windows(seq[240:], lookback=5, stride=1, horizon=3)
    cfg = DownstreamConfig(forecast_epochs=30, lstm_hidden=32, batch_size=32)
    model, _ = train_forecaster(ctx, tgt, vctx, vtgt, cfg, seed=0, progress=False)
    tctx, ttgt = make_windows(seq[200:], lookback=5, stride=1, horizon=10)
    pred = rollout(model, tctx, steps=10)
    assert pred.shape == ttgt.shape
    persistence = tctx[:, -1:].expand_as(ttgt)
    assert F.mse_loss(pred, ttgt) < 0.05 * F.mse_loss(persistence, ttgt)


def test_linear_inverse_model_known_value_in_one_dimension() -> None:
    """D = 1: a = (sum x_t x_{t+1} + r) / (sum x_t^2 + r), anomalies from the mean, r = ridge * sum x_t^2."""
    x = torch.tensor([[1.0], [3.0], [2.0], [5.0], [4.0]])
    anomaly = x[:, 0].double() - 3.0
    past, future = anomaly[:-1], anomaly[1:]
    r = 0.5 * float(past @ past)
    model = fit_linear_inverse_model(x, ridge=0.5)
    assert float(model.matrix) == pytest.approx((float(past @ future) + r) / (float(past @ past) + r), rel=1e-6)
    assert float(model.mean) == pytest.approx(3.0)


def test_linear_inverse_model_between_least_squares_and_persistence() -> None:
    """Ridge ~0 recovers linear dynamics exactly (x' = x R^T here); a huge ridge is persistence.

    Whole periods (8 and 4 days) make the sequence mean exactly 0, so anomalies follow the same dynamics.
    """
    seq = _rotation_sequence(64, angles=(math.pi / 4, math.pi / 2))
    exact = fit_linear_inverse_model(seq, ridge=1e-9)
    torch.testing.assert_close(rollout(exact, seq[:-1, None], 1)[:, 0], seq[1:], atol=1e-5, rtol=0)
    assert exact.spectral_radius() == pytest.approx(1.0, abs=1e-4)  # rotations keep the norm
    persistence = fit_linear_inverse_model(seq, ridge=1e9)
    torch.testing.assert_close(persistence.matrix, torch.eye(4), atol=1e-6, rtol=0)


def test_linear_inverse_model_steps_from_the_last_context_day() -> None:
    model = LinearInverseModel(0.5 * torch.eye(2), torch.tensor([1.0, -1.0]))
    context = torch.tensor([[[9.0, 9.0], [3.0, 1.0]]])  # (1, LB=2, D=2): only the last day is read
    pred = rollout(model, context, 3)
    expected = torch.tensor([[2.0, 0.0], [1.5, -0.5], [1.25, -0.75]])  # mean + 0.5^k (x - mean)
    torch.testing.assert_close(pred[0], expected)


def test_linear_forecaster_keeps_the_ridge_that_scores_best() -> None:
    seq = _rotation_sequence(120)
    val_inputs, val_targets = seq[100:-1], seq[101:]
    calls = []

    def score(pred: Tensor) -> float:
        calls.append(pred.shape)
        return float(F.mse_loss(pred, val_targets))

    model, fitted = train_linear_forecaster(seq[:100], val_inputs, score)
    assert calls == [val_targets.shape] * len(LIM_RIDGES)
    assert fitted["ridge"] == min(LIM_RIDGES)  # noise-free linear dynamics: the least shrinkage forecasts best
    persistence_lover = lambda pred: float(F.mse_loss(pred, val_inputs))  # noqa: E731
    _, fitted = train_linear_forecaster(seq[:100], val_inputs, persistence_lover)
    assert fitted["ridge"] == max(LIM_RIDGES) and fitted["val_score"] >= 0


def test_forecaster_is_deterministic_under_seed() -> None:
    seq = _rotation_sequence(60)
    ctx, tgt = make_windows(seq, lookback=3, stride=1, horizon=1)
    cfg = DownstreamConfig(forecast_epochs=2, lstm_hidden=8, batch_size=16)
    (m1, h1), (m2, h2) = (train_forecaster(ctx, tgt, ctx, tgt, cfg, seed=7, progress=False) for _ in range(2))
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    _, h3 = train_forecaster(ctx, tgt, ctx, tgt, cfg, seed=8, progress=False)
    assert h3 != h1


# ---------------------------------------------------------------- diffusion: schedule and sampler
# The schedule and sampler are diffusers' DDPMScheduler. The reference below is the DDPM this project
# wrote by hand before (Ho et al., Algorithm 1), as formulas: linear betas in float64 for t = 1..T
# (index k = t - 1), alpha_bar the cumulative product, q(x_t | x_0), and the reverse step
# x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(1 - beta_t) + sqrt(beta_t) z, no z at t = 1.

CONFIGS = [(1000, 1e-4, 0.02), (100, 1e-4, 0.05), (50, 1e-4, 0.2), (10, 1e-4, 0.02)]


def _ref_schedule(steps: int, beta_start: float, beta_end: float) -> tuple[Tensor, Tensor]:
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return betas, torch.cumprod(1 - betas, 0)


def _ref_step(eps: Tensor, k: int, x: Tensor, betas: Tensor, abars: Tensor, z: Tensor) -> Tensor:
    beta, abar = float(betas[k]), float(abars[k])
    mean = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
    return mean + math.sqrt(beta) * z if k > 0 else mean


@pytest.mark.parametrize("steps,beta_start,beta_end", CONFIGS)
def test_scheduler_schedule_equals_reference(steps: int, beta_start: float, beta_end: float) -> None:
    s = make_scheduler(steps, beta_start, beta_end)
    betas, abars = _ref_schedule(steps, beta_start, beta_end)
    # diffusers keeps the schedule in float32: measured max relative difference 1.1e-7 (betas)
    # and 3.6e-7 (alpha_bar, T = 1000); bound 1e-6
    assert torch.allclose(s.betas.double(), betas, rtol=1e-6, atol=0)
    assert torch.allclose(s.alphas_cumprod.double(), abars, rtol=1e-6, atol=0)
    x0, noise = torch.randn(2, 8, 5, generator=torch.Generator().manual_seed(0))
    k = torch.arange(8) * (steps - 1) // 7
    ab = abars[k][:, None]
    want = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()).float()
    assert torch.allclose(s.add_noise(x0, noise, k), want, rtol=0, atol=2e-6)  # q_sample; measured 7.2e-7


def test_scheduler_known_values() -> None:
    s = make_scheduler(1000, 1e-4, 0.02)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-4)  # x_T is almost pure noise
    assert bool((s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all())
    assert not s.config.clip_sample and s.config.variance_type == "fixed_large"
    with pytest.raises(ValueError, match="beta_start <= beta_end"):
        make_scheduler(10, 0.02, 1e-4)


@pytest.mark.parametrize("steps,beta_start,beta_end", CONFIGS)
def test_scheduler_step_equals_reference(steps: int, beta_start: float, beta_end: float) -> None:
    """One reverse step, at every t, from the same x_t, eps and generator seed: mean and variance together."""
    s = make_scheduler(steps, beta_start, beta_end)
    betas, abars = _ref_schedule(steps, beta_start, beta_end)
    x, eps = torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(0))
    worst = 0.0
    for k in range(steps):
        got = s.step(eps, k, x, generator=torch.Generator().manual_seed(k)).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(k))  # the draw step() makes
        worst = max(worst, float((got - _ref_step(eps, k, x, betas, abars, z)).abs().max()))
    # Measured (unit-scale x and eps): 3.3e-4 at T = 1000 (worst at t = 3, where diffusers' beta_t,
    # recomputed as 1 - alpha_bar_t / alpha_bar_{t-1} in float32, is off by 5e-4 relative),
    # 2.0e-5 at T = 100, 3.1e-6 at T = 50, 1.3e-5 at T = 10. Bound 5e-4.
    assert worst < 5e-4
    # "fixed_small" (the posterior variance, beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)) is not
    # Algorithm 1's: at t = 2 its noise is about 0.7x; measured off by 0.014 (T = 1000) to 0.22 (T = 50)
    small = DDPMScheduler(**{**s.config, "variance_type": "fixed_small"})
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    off = small.step(eps, 1, x, generator=torch.Generator().manual_seed(1)).prev_sample - _ref_step(eps, 1, x, betas,
                                                                                                  abars, z)
    assert float(off.abs().max()) > 20 * worst


def test_training_draws_equal_reference() -> None:
    """The loss draws t ~ U{1..T} and the noise as before: k = randint(0, T) is randint(1, T + 1) - 1."""
    s = make_scheduler(100, 1e-4, 0.05)
    betas, abars = _ref_schedule(100, 1e-4, 0.05)
    x0, cond = torch.randn(2, 32, 6, generator=torch.Generator().manual_seed(0))
    seen = {}

    def model(x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    loss = diffusion_loss(s, model, x0, cond, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    t = torch.randint(1, 101, (32,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    assert torch.equal(seen["t"], t / 100)
    ab = abars[t - 1][:, None]
    assert torch.allclose(seen["x"], (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).float(), rtol=0, atol=5e-6)  # 1.3e-6
    assert torch.allclose(loss, F.mse_loss(torch.zeros_like(noise), noise))


def test_sampler_chain_equals_reference() -> None:
    """The whole chain (T = 100, an untrained denoiser) from one seed: diffusers and the reference formulas."""
    steps = 100
    s = make_scheduler(steps, 1e-4, 0.05)
    betas, abars = _ref_schedule(steps, 1e-4, 0.05)
    torch.manual_seed(0)
    net = LatentUNet(8, hidden=16, time_dim=8, cond_tokens=2).eval()
    cond = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    got = sample(s, net, cond, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(cond.shape, generator=g)
    with torch.no_grad():
        for k in range(steps - 1, -1, -1):
            eps = net(x, torch.full((16,), (k + 1) / steps), cond)
            x = _ref_step(eps, k, x, betas, abars, torch.randn(x.shape, generator=g) if k > 0 else None)
    # measured max |difference| 1.1e-4 on draws of std 5.3 (largest |x| 17: the untrained denoiser
    # drifts), i.e. 7e-6 of the largest value; bound 1e-5 of it
    assert float((got - x).abs().max()) < 1e-5 * float(x.abs().max())
    assert torch.equal(got, sample(s, net, cond, torch.Generator().manual_seed(5)))  # deterministic under the seed


class _Oracle(nn.Module):
    """Exact noise for a point-mass data distribution at ``point``."""

    def __init__(self, point: Tensor, scheduler) -> None:
        super().__init__()
        self.point, self.scheduler = point, scheduler

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        k = torch.round(t * self.scheduler.config.num_train_timesteps).long() - 1
        abar = self.scheduler.alphas_cumprod[k][:, None]
        return (x - abar.sqrt() * self.point) / (1 - abar).sqrt()


def test_sampling_with_oracle_recovers_point_mass() -> None:
    scheduler = make_scheduler(100, 1e-4, 0.05)
    point = torch.tensor([3.0, -2.0, 0.5])
    samples = sample(scheduler, _Oracle(point, scheduler), torch.zeros(5, 3), torch.Generator().manual_seed(0))
    assert torch.allclose(samples, point.expand(5, 3), atol=1e-4)


# ---------------------------------------------------------------- diffusion: network

def test_unet_shapes_and_sizes() -> None:
    model = LatentUNet(12, hidden=32, time_dim=16, cond_tokens=4)
    assert model(torch.randn(5, 12), torch.rand(5), torch.randn(5, 12)).shape == (5, 12)
    tiny = LatentUNet(10, hidden=10, time_dim=8, cond_tokens=3)  # widths that divide nothing evenly
    assert tiny(torch.randn(2, 10), torch.rand(2), torch.randn(2, 10)).shape == (2, 10)
    assert 10e6 < _params(LatentUNet(1000, 1024)) < 20e6


def test_cross_attention_depends_on_condition_and_query() -> None:
    torch.manual_seed(0)
    model = LatentUNet(16, hidden=32, time_dim=16, cond_tokens=4).eval()
    x, t = torch.randn(3, 16), torch.rand(3)
    c1, c2 = torch.randn(3, 16), torch.randn(3, 16)
    with torch.no_grad():
        assert not torch.allclose(model(x, t, c1), model(x, t, c2), atol=1e-4)
        _, w = model.enc1.cross(torch.randn(3, 16), model.condition_tokens(c1), need_weights=True)
    assert w.shape == (3, 4, 4)  # (batch, query tokens, condition tokens)
    assert torch.allclose(w.sum(-1), torch.ones(3, 4), atol=1e-5)
    assert w.max() < 0.99  # spread over several tokens, not the degenerate weight 1
    assert (w[:, 0] - w[:, 1]).abs().max() > 1e-3  # different queries attend differently


def test_diffusion_is_deterministic_and_keeps_global_rng() -> None:
    x, c = torch.randn(2, 40, 4, generator=torch.Generator().manual_seed(0))
    cfg = DownstreamConfig(diffusion_epochs=2, diffusion_steps=10, diffusion_hidden=16, condition_tokens=2,
                           batch_size=16)
    rng_before = torch.random.get_rng_state()
    runs = [train_diffusion(x, c, x[:8], c[:8], cfg, seed=3, progress=False) for _ in range(2)]
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    (m1, s1, st1, h1), (m2, _, _, h2) = runs
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    draws = [generate(m1, s1, st1, c[:3], 2, torch.Generator().manual_seed(5), progress=False) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])


def test_standardizer_round_trip() -> None:
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.01, 1.0, 5.0, 0.1, 2.0]) + 3.0
    st = LatentStandardizer.fit(x)
    z = st(x)
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(5), atol=1e-4)
    assert torch.allclose(st.inverse(z), x, atol=1e-5)
    assert set(st.state_dict()) == {"mean", "std"}


def test_conditional_diffusion_learns_toy_mapping() -> None:
    """Target = a fixed linear map of the condition (+ small noise); samples should follow it."""
    g = torch.Generator().manual_seed(0)
    dim = 6
    mix = torch.randn(dim, dim, generator=g) / math.sqrt(dim)

    def pairs(n: int) -> tuple[Tensor, Tensor]:
        cond = torch.randn(n, dim, generator=g)
        return 0.1 * (cond @ mix) + 0.005 * torch.randn(n, dim, generator=g) + 1.0, cond

    (x, c), (vx, vc), (tx, tc) = pairs(512), pairs(128), pairs(32)
    cfg = DownstreamConfig(diffusion_epochs=20, diffusion_steps=50, beta_end=0.2, diffusion_hidden=64,
                           condition_tokens=4, batch_size=64)
    model, schedule, st, history = train_diffusion(x, c, vx, vc, cfg, seed=0, progress=False)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert min(h["val_loss"] for h in history) < 0.5 * history[0]["val_loss"]
    samples = generate(model, schedule, st, tc, n_samples=8, generator=torch.Generator().manual_seed(1),
                       batch_size=100, progress=False)
    assert samples.shape == (32, 8, dim)
    err = F.mse_loss(samples.mean(1), tx)
    unconditional = F.mse_loss(x.mean(0).expand_as(tx), tx)
    assert err < 0.3 * unconditional  # measured 0.184 (diffusion_lr 1e-3), 0.145 at 1e-2


def test_diffusion_space_round_trips_in_both_modes() -> None:
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 4, generator=g) * 3 + 1, torch.randn(50, 4, generator=g)
    for residual in (False, True):
        space = DiffusionSpace.fit(x, c, residual)
        torch.testing.assert_close(space.generated(space.target(x, c), c), x)
        z = space.target(x, c)  # what the DDPM learns to generate: unit variance either way
        torch.testing.assert_close(z.std(0), torch.ones(4))
    assert torch.equal(DiffusionSpace.fit(x, c, True).condition(c), LatentStandardizer.fit(x)(c))


def test_residual_diffusion_starts_at_the_condition() -> None:
    """A complete-day latent close to its masked condition (a robust encoder's case) and too few epochs to learn the
    mapping: the residual DDPM's mean stays near the condition, the latent DDPM's does not (measured: 0.0005 vs 1.32
    of the target's 1.0 variance)."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(256, 6, generator=g)
    x = c + 0.02 * torch.randn(256, 6, generator=g)
    errors = {}
    for residual in (False, True):
        cfg = DownstreamConfig(diffusion_epochs=1, diffusion_steps=20, diffusion_hidden=16, condition_tokens=2,
                               batch_size=64, diffusion_residual=residual)
        model, schedule, space, _ = train_diffusion(x, c, x[:32], c[:32], cfg, seed=0, progress=False)
        draws = generate(model, schedule, space, c[:32], 4, torch.Generator().manual_seed(1), progress=False)
        errors[residual] = float(F.mse_loss(draws.mean(1), x[:32]))
    assert errors[True] < 0.01 < 0.5 < errors[False]


# ---------------------------------------------------------------- classification

def test_classifier_reference_size() -> None:
    assert _params(SeasonClassifier(1000)) == 266_688
    assert SeasonClassifier(16).eval()(torch.randn(3, 16)).shape == (3, 4)


def test_classifier_learns_separable_classes() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 3.0 * torch.randn(4, 16, generator=g)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, 4, (n,), generator=g)
        return centres[y] + torch.randn(n, 16, generator=g), y

    (h, y), (vh, vy), (th, ty) = sample(400), sample(100), sample(200)
    cfg = DownstreamConfig(classifier_epochs=20, lr=1e-2, batch_size=64)
    model, history = train_classifier(h, y, vh, vy, cfg, seed=0, progress=False)
    result = evaluate_classifier(model, th, ty)
    assert result["accuracy"] > 0.9
    assert result["cross_entropy"] < history[0]["val_loss"]
    confusion = torch.tensor(result["confusion"])
    assert confusion.shape == (4, 4) and int(confusion.sum()) == 200
    assert confusion.diagonal().sum() / 200 == pytest.approx(result["accuracy"])
    assert confusion.sum(1).tolist() == torch.bincount(ty, minlength=4).tolist()


# ---------------------------------------------------------------- forecast inputs re-masked at every read

def test_read_contexts_draws_a_mask_per_day_and_read() -> None:
    draws = (100.0 * torch.arange(4)[:, None, None] + torch.arange(10)[None, :, None]).expand(4, 10, 3)  # k, t
    days = torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    g = torch.Generator().manual_seed(0)
    first, second = read_contexts(days, draws, g), read_contexts(days, draws, g)
    assert first.shape == (3, 3, 3) and torch.equal(first[..., 0] % 100, days.float())  # the right days
    k1, k2 = first[..., 0] // 100, second[..., 0] // 100
    assert not torch.equal(k1, k2)  # a second read of the same windows sees other masks
    assert k1[0, 1] != k1[1, 0] or k1[1, 1] != k1[2, 0]  # a day shared by two windows is drawn for each
    assert set(torch.cat([k1, k2]).flatten().tolist()) == {0, 1, 2, 3}
    assert torch.equal(read_contexts(days, draws[:1], g), draws[0][days])  # one draw: the fixed mask


def test_forecaster_trains_on_mask_draws_and_a_single_draw_is_the_plain_context() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(40, 4, generator=g).cumsum(0) / 4
    noisy = torch.stack([h, h + 0.1 * torch.randn(40, 4, generator=g)])  # two "mask draws" per day
    days, tgt = make_windows(torch.arange(40)[:, None], 5, 1, 1)[0][..., 0], make_windows(h, 5, 1, 1)[1]
    cfg = DownstreamConfig(forecast_epochs=3, lstm_hidden=8, batch_size=16)
    m_days, hist = train_forecaster(days, tgt, days[:6], tgt[:6], cfg, seed=0, progress=False, draws=noisy)
    assert len(hist) == 3 and all(math.isfinite(e["val_loss"]) for e in hist)
    m1, _ = train_forecaster(days, tgt, days[:6], tgt[:6], cfg, seed=0, progress=False, draws=noisy[:1])
    m0, _ = train_forecaster(h[days], tgt, h[days[:6]], tgt[:6], cfg, seed=0, progress=False)
    ctx = h[days[:3]]
    assert rollout(m1, ctx, 2).shape == (3, 2, 4) and not torch.equal(rollout(m_days, ctx, 2), rollout(m1, ctx, 2))
    assert torch.isfinite(rollout(m0, ctx, 2)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classifier_scores_equal_a_counting_reference(seed):
    """torchmetrics' confusion matrix and accuracy equal counting by hand (row = true, column = predicted)."""
    from sparta.downstream.classify import evaluate_classifier

    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(37, 4, generator=gen)
    y = torch.randint(0, 4, (37,), generator=gen)
    model = torch.nn.Sequential(torch.nn.Identity())
    model.register_parameter("dummy", torch.nn.Parameter(torch.zeros(1)))
    out = evaluate_classifier(model, logits, y)
    pred = logits.argmax(-1)
    expected = [[int(((y == i) & (pred == j)).sum()) for j in range(4)] for i in range(4)]
    assert out["confusion"] == expected
    assert out["accuracy"] == float((pred == y).float().mean())
