"""SPARTA training losses (paper sections 3.2, 3.3.1, 3.4.2 and 5, equations 4-9 and 13-17).

Each loss is a pure function of tensors; the training loop composes them:

* stage 1 (eq. 9):  ``L_c = temporal_contrastive_loss(z_t, z_minus, z_plus, tau)
  + cycle_loss(h_minus, h_t, h_plus)``;
* stage 2 (eq. 13-17): ``L_c`` additionally includes the reconstruction of the two masked,
  augmented views ``reconstruction_loss(x_hat_minus, x_minus) + reconstruction_loss(x_hat_plus,
  x_plus)`` (eq. 16), ``L_r = reconstruction_loss(x_hat_t, x_t)`` (eq. 17), and the total is
  ``blended_loss(L_c, L_r, blend_alpha(epoch, k))``;
* stage 3: ``L_r`` alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sparta import dist
from sparta.grids import Fields


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric SimCLR NT-Xent loss (paper eq. 4-5).

    With ``s(u, v) = u.v / (|u| |v|)`` (cosine similarity) and the ``2N`` embeddings
    ``{z_a[i]} U {z_b[i]}``, each anchor ``i`` has one positive ``j`` (its partner view) and
    ``2N - 2`` negatives (all others except itself)::

        l(i, j) = -log( exp(s(z_i, z_j)/tau) / sum_{k != i} exp(s(z_i, z_k)/tau) )
        L = 1/(2N) * sum over the 2N (anchor, positive) pairs of l(i, j)

    so ``nt_xent(a, b) == nt_xent(b, a)``; identical embeddings give ``log(2N - 1)``; ``N = 1``
    gives 0 (no negatives).

    Args:
        z_a: ``(N, D)`` projections of the first views.
        z_b: ``(N, D)`` projections of the second views; row ``i`` is the positive of ``z_a[i]``.
        temperature: ``tau > 0``.

    Returns:
        Scalar loss.

    Distributed: with ``W > 1`` processes, ``z_a`` and ``z_b`` are gathered (autograd-aware,
    :func:`sparta.dist.gather`) so every local anchor sees the ``2WN - 2`` negatives of the global
    batch; the local anchors' positions in the gathered batch are offset by ``rank * N``. The
    value on each rank is the mean over that rank's ``2N`` anchors; its mean over ranks equals the
    single-process loss on the combined batch, and so do the gradients after DDP's averaging.
    Every rank must pass the same ``N``. With one process nothing touches ``torch.distributed``.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"nt_xent needs two (N, D) tensors of equal shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"nt_xent temperature must be > 0, got {temperature}")
    n = z_a.shape[0]
    a = F.normalize(z_a, dim=1)
    b = F.normalize(z_b, dim=1)
    if dist.world_size() > 1:
        a_all, b_all, offset = dist.gather(a), dist.gather(b), dist.rank() * n
    else:
        a_all, b_all, offset = a, b, 0
    m = a_all.shape[0]
    anchors = torch.cat([a, b])  # (2N, D)
    candidates = torch.cat([a_all, b_all])  # (2M, D): all first views, then all second views
    logits = anchors @ candidates.T / temperature  # (2N, 2M)
    local = torch.arange(n, device=z_a.device) + offset
    self_index = torch.cat([local, local + m])
    positive_index = torch.cat([local + m, local])
    is_self = F.one_hot(self_index, num_classes=2 * m).bool()
    logits = logits.masked_fill(is_self, float("-inf"))
    return F.cross_entropy(logits, positive_index)


def temporal_contrastive_loss(
    z_t: torch.Tensor, z_minus: torch.Tensor, z_plus: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Temporal contrastive loss over the two positive pairs (paper eq. 6-7).

    ``l_c = NT-Xent(z_t, z_{t+dt}) + NT-Xent(z_t, z_{t-dt})``, each term the symmetric
    :func:`nt_xent` (both directions, ``2N - 2`` negatives), as the authors' code does: two pair
    losses summed, each averaged over its ``2N`` anchors.

    Args:
        z_t: ``(N, D)`` projections of the anchors at day t.
        z_minus: ``(N, D)`` projections at ``t - dt`` (row i pairs with ``z_t[i]``).
        z_plus: ``(N, D)`` projections at ``t + dt``.
        temperature: ``tau > 0``.

    Returns:
        Scalar loss.
    """
    return nt_xent(z_t, z_plus, temperature) + nt_xent(z_t, z_minus, temperature)


def cycle_loss(h_minus: torch.Tensor, h_t: torch.Tensor, h_plus: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency loss on encoder embeddings (paper eq. 8 / 14).

    ``l_cycle = 1/N sum_n 1/d sum_i (h_{t+dt}^i - 2 h_t^i + h_{t-dt}^i)^2``, the mean squared
    second central difference; zero for any linear trajectory.

    Args:
        h_minus, h_t, h_plus: ``(N, d)`` encoder outputs at ``t - dt``, ``t``, ``t + dt``.

    Returns:
        Scalar loss.
    """
    return (h_plus - 2.0 * h_t + h_minus).pow(2).mean()


def per_channel_mse(pred: torch.Tensor, target: torch.Tensor, lat_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of each channel: ``mse_c = mean_{n, spatial} (pred - target)^2``.

    Args:
        pred, target: ``(N, C, ...)`` fields (e.g. ``(N, C, H, W)``), same shape.
        lat_weights: ``(H,)`` weights of the latitude rows with mean 1 (:func:`sparta.metrics.lat_weights`):
            each point's squared error counts by the area of its cell, as the scores weight it.

    Returns:
        ``(C,)`` per-channel MSE.
    """
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(
            f"per_channel_mse needs equal (N, C, ...) shapes, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    reduce_dims = [0, *range(2, pred.ndim)]
    squared = (pred - target).pow(2)
    if lat_weights is not None:
        squared = squared * lat_weights.to(squared.dtype)[:, None]
    return squared.mean(dim=reduce_dims)


def reconstruction_loss(pred: Fields, target: Fields, lat_weights: Fields | None = None) -> torch.Tensor:
    """Reconstruction loss (paper eq. 17): ``L_r = sum_{c=0}^{C-1} MSE(pred^c, target^c)``.

    The sum (not the mean) over channels, as in the paper and the authors' code: ``C`` times the
    mean MSE when every channel has the same error. Each channel's MSE is taken on its own grid,
    so for variables on several grids the sum runs over every grid's channels.

    Args:
        pred, target: ``(N, C, ...)`` fields, same shape (normalised units in training), or
            lists of them with one entry per grid.
        lat_weights: None (every point counts alike, as in the paper) or each grid's ``(H,)`` area weights
            (``loss.area_weighted``).

    Returns:
        Scalar loss.
    """
    if isinstance(pred, list):
        weights = [None] * len(pred) if lat_weights is None else lat_weights
        return sum(per_channel_mse(p, t, w).sum() for p, t, w in zip(pred, target, weights, strict=True))
    return per_channel_mse(pred, target, lat_weights).sum()


def blend_alpha(epoch: int, k: float, start: float = 1.0) -> float:
    """Contrastive weight of the stage-2 blend (paper section 5): ``alpha = start * exp(-k * epoch)``.

    With ``k = 0.01``: 1.0 at epoch 0, 0.6065 at epoch 50, 0.0834 at epoch 249.
    """
    return start * math.exp(-k * epoch)


def blended_loss(contrastive: torch.Tensor, reconstruction: torch.Tensor, alpha: float) -> torch.Tensor:
    """Stage-2 objective (paper section 5): ``L = alpha * L_c + (1 - alpha) * L_r``.

    Args:
        contrastive: scalar ``L_c`` of eq. 16, i.e. the caller has already added the cycle loss
            (eq. 15) and the reconstruction losses of the masked ``t - dt`` and ``t + dt`` views
            (eq. 16) to the temporal NT-Xent loss.
        reconstruction: scalar ``L_r`` of eq. 17 (reconstruction of the masked anchor).
        alpha: blend weight, usually :func:`blend_alpha` of the epoch.

    Returns:
        Scalar loss.
    """
    return alpha * contrastive + (1.0 - alpha) * reconstruction
