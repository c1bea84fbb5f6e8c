"""Known-value tests of sparta.losses against hand-computed numbers and NumPy loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparta import dist
from sparta.losses import (
    blend_alpha,
    blended_loss,
    cycle_loss,
    nt_xent,
    per_channel_mse,
    reconstruction_loss,
    temporal_contrastive_loss,
)


def nt_xent_loop(z_a: np.ndarray, z_b: np.ndarray, tau: float) -> float:
    """Paper eq. 4-5, one anchor at a time: 2N anchors, positive = partner view, k != i."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(math.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(z[i] @ z[j] / tau) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("tau", [0.1, 0.3, 1.0])
def test_nt_xent_matches_loop_reference(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n * 100 + d)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    z_b = torch.randn(n, d, generator=g, dtype=torch.float64)
    assert nt_xent(z_a, z_b, tau).item() == pytest.approx(nt_xent_loop(z_a.numpy(), z_b.numpy(), tau), rel=1e-10)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_nt_xent_identical_embeddings(n: int) -> None:
    z = torch.ones(n, 4)
    assert nt_xent(z, z.clone(), 0.3).item() == pytest.approx(-math.log(1 / (2 * n - 1)), abs=1e-6)


def test_nt_xent_symmetric_and_scale_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert nt_xent(a, b, 0.5).item() == pytest.approx(nt_xent(b, a, 0.5).item(), rel=1e-6)
    assert nt_xent(3.0 * a, b, 0.5).item() == pytest.approx(nt_xent(a, b, 0.5).item(), rel=1e-6)


def test_nt_xent_hand_worked_2x2() -> None:
    # a = [e1, e2], b = [e1, -e2], tau = 1. Cosines from each anchor (self excluded):
    # a1: pos b1 = 1, negatives a2 = 0, b2 = 0        -> l = -log(e / (e + 2))
    # a2: pos b2 = -1, negatives a1 = 0, b1 = 0       -> l = -log(e^-1 / (e^-1 + 2))
    # b1 and b2 mirror a1 and a2.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    e = math.e
    expected = (-math.log(e / (e + 2)) - math.log((1 / e) / (1 / e + 2))) / 2
    assert expected == pytest.approx((0.5514 + 1.8620) / 2, abs=1e-4)
    assert nt_xent(a, b, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_gradient_matches_loop_reference_by_finite_difference() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, generator=g, dtype=torch.float64)
    nt_xent(a, b, 0.3).backward()
    step = 1e-6
    bump = torch.zeros_like(a)
    bump[1, 2] = step
    a0 = a.detach().numpy()
    numeric = (nt_xent_loop(a0 + bump.numpy(), b.numpy(), 0.3) - nt_xent_loop(a0 - bump.numpy(), b.numpy(), 0.3)) / (
        2 * step
    )
    assert a.grad[1, 2].item() == pytest.approx(numeric, rel=1e-5)


def test_nt_xent_single_process_does_not_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("distributed helper called in a single process")

    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    assert dist.gather(z) is z
    dist.barrier()
    monkeypatch.setattr(dist, "gather", fail)
    monkeypatch.setattr(dist, "rank", fail)
    assert torch.isfinite(nt_xent(z, z + 0.1, 0.3))


def test_nt_xent_gather_path_uses_rank_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated ranks, each holding 3 of 6 pairs: the mean of their losses is the combined loss."""
    g = torch.Generator().manual_seed(3)
    a_all = torch.randn(6, 5, generator=g, dtype=torch.float64)
    b_all = torch.randn(6, 5, generator=g, dtype=torch.float64)
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    per_rank = []
    for r in (0, 1):
        rows = slice(3 * r, 3 * r + 3)

        def fake_gather(t: torch.Tensor, rows: slice = rows) -> torch.Tensor:
            """All-gather stand-in: the global batch of whichever view ``t`` is this rank's part of."""
            for full in (a_all, b_all):
                if torch.allclose(t, torch.nn.functional.normalize(full[rows], dim=1)):
                    return torch.nn.functional.normalize(full, dim=1)
            raise AssertionError("unexpected tensor gathered")

        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        monkeypatch.setattr(dist, "gather", fake_gather)
        per_rank.append(nt_xent(a_all[rows], b_all[rows], 0.3).item())
    monkeypatch.undo()
    assert per_rank[0] != pytest.approx(per_rank[1])
    assert sum(per_rank) / 2 == pytest.approx(nt_xent(a_all, b_all, 0.3).item(), rel=1e-10)


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent(torch.zeros(2, 3), torch.zeros(3, 3), 0.3)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.ones(2, 3), torch.ones(2, 3), 0.0)


def test_temporal_loss_is_sum_of_pair_losses() -> None:
    g = torch.Generator().manual_seed(4)
    z_t, z_m, z_p = (torch.randn(5, 8, generator=g) for _ in range(3))
    expected = nt_xent(z_t, z_p, 0.3) + nt_xent(z_t, z_m, 0.3)
    assert temporal_contrastive_loss(z_t, z_m, z_p, 0.3).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cycle_loss_hand_values() -> None:
    h_t = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    velocity = torch.tensor([[0.5, -1.0], [3.0, 2.0]])
    assert cycle_loss(h_t - velocity, h_t, h_t + velocity).item() == 0.0  # linear trajectory
    # h_plus - 2 h_t + h_minus: row 0 -> (0 - 2 + 0, 0 - 4 + 1) = (-2, -3); row 1 -> (2, 0)
    h_minus = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    h_plus = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert cycle_loss(h_minus, h_t, h_plus).item() == pytest.approx((4 + 9 + 4 + 0) / 4)


def test_cycle_loss_matches_loop_reference() -> None:
    g = torch.Generator().manual_seed(5)
    hm, ht, hp = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(3))
    n, d = ht.shape
    expected = sum(sum((hp[i, k] - 2 * ht[i, k] + hm[i, k]).item() ** 2 for k in range(d)) / d for i in range(n)) / n
    assert cycle_loss(hm, ht, hp).item() == pytest.approx(expected, rel=1e-12)


def test_reconstruction_loss_known_values() -> None:
    target = torch.zeros(2, 3, 4, 5)
    pred = target.clone()
    pred[:, 0] = 1.0  # MSE 1
    pred[:, 1] = 2.0  # MSE 4
    pred[0, 2] = 3.0  # MSE 9 on half the samples -> 4.5
    assert per_channel_mse(pred, target).tolist() == pytest.approx([1.0, 4.0, 4.5])
    assert reconstruction_loss(pred, target).item() == pytest.approx(9.5)


def test_area_weighted_reconstruction_loss_known_values() -> None:
    """loss.area_weighted: a row's squared error counts by its weight (mean 1), so an error only in the row of
    weight 1.5 of two rows costs 1.5x its unweighted loss; uniform weights change nothing."""
    target = torch.zeros(2, 1, 2, 3)
    pred = target.clone()
    pred[:, :, 1] = 2.0  # squared error 4 on row 1 only: unweighted MSE 2
    weights = torch.tensor([0.5, 1.5])
    assert per_channel_mse(pred, target).item() == pytest.approx(2.0)
    assert per_channel_mse(pred, target, weights).item() == pytest.approx(3.0)
    assert reconstruction_loss([pred, pred], [target, target], [weights, torch.ones(2)]).item() == pytest.approx(5.0)
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    torch.testing.assert_close(reconstruction_loss(a, b, torch.ones(4)), reconstruction_loss(a, b))


def test_reconstruction_loss_is_c_times_mean_mse_when_channels_equal() -> None:
    g = torch.Generator().manual_seed(6)
    error = torch.randn(3, 1, 4, 4, generator=g).expand(3, 5, 4, 4)
    target = torch.randn(3, 5, 4, 4, generator=g)
    pred = target + error
    mean_mse = torch.nn.functional.mse_loss(pred, target)
    assert reconstruction_loss(pred, target).item() == pytest.approx(5 * mean_mse.item(), rel=1e-6)


@pytest.mark.parametrize(("epoch", "alpha"), [(0, 1.0), (50, 0.6065), (249, 0.0829)])
def test_blend_alpha(epoch: int, alpha: float) -> None:
    assert blend_alpha(epoch, k=0.01) == pytest.approx(alpha, abs=5e-5)
    assert blend_alpha(epoch, k=0.01, start=0.5) == pytest.approx(0.5 * alpha, abs=5e-5)


def test_blended_loss() -> None:
    c, r = torch.tensor(2.0), torch.tensor(10.0)
    assert blended_loss(c, r, 1.0).item() == 2.0
    assert blended_loss(c, r, 0.0).item() == 10.0
    assert blended_loss(c, r, 0.25).item() == pytest.approx(0.25 * 2 + 0.75 * 10)
