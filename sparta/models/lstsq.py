"""The masked least squares of partly observed fields, solved in one place for the EOF model and the learned
encoders' linear paths.

With ``Q`` (F, K) a basis of patterns with orthonormal columns, ``y`` a field observed where the keep mask
``K`` is True, the coefficients ``c`` minimise ``|K (y - Q c)|^2 + r |(1 - K) Q c|^2``, i.e.
``((1 - r) Q^T K Q + r I) c = Q^T K y``. The ridge ``r`` (:data:`RIDGE`) penalises the anomaly the patterns
put at the hidden points, which keeps the fit from chasing the few observed values when few are observed,
and vanishes when nothing is hidden. The system's eigenvalues lie in [r, 1], so its condition number is at
most 1/r = 100 and float32 suffices.

Solved by conjugate gradients, per sample, in float32 whatever the autocast, preconditioned by the observed
fraction ``p`` (a random mask's ``Q^T K Q`` is about ``p I``) and started from ``Q^T K y / p``, each sample until
its residual is :data:`TOLERANCE` of its right-hand side. Chosen by measurement (docs/decisions.md): on the
quick preset's 256 EOFs of 5x64x32 fields, 48 samples with their own masks, idle 2-core CPU, against a float64
solve, this solver took 0.026 / 0.046 / 0.074 / 0.072 s at 30 / 70 / 90 / 95% hidden, the fitted field within
2e-5 / 4e-5 / 8e-5 / 4e-5 of its largest value; a Cholesky factorisation of the masked Gram matrix was exact
to 2e-6 but took 0.22 / 0.22 / 0.10 / 0.06 s, and SPARTA's decoder stage and every sparse evaluation run it.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Weight of the hidden-point anomaly in the masked least squares, relative to the misfit at observed points.
# Quick EOF baseline, test days decoded at 70 / 90 / 95% hidden: 0.965 / 1.67 / 3.81% at 1e-6, 0.964 / 1.53 /
# 1.89% at 1e-3, 0.961 / 1.36 / 1.78% at 0.01, 0.984 / 1.54 / 2.10% at 0.03. The quick autoencoder's fill:
# 0.93 / 1.49% (70 / 90%) at 0.001, 0.94 / 1.37% at 0.01, 1.01 / 1.69% at 0.05.
RIDGE = 0.01
TOLERANCE = 1e-5  # relative residual at which a sample's solve stops (1e-2: fitted fields off by up to 6%)
MAX_ITERATIONS = 200  # the preconditioned system's condition number is at most 1/RIDGE: ~60 iterations suffice


@torch.no_grad()
def masked_lstsq(y: Tensor, keep: Tensor, basis: Tensor) -> Tensor:
    """Coefficients (B, K) of the patterns ``basis`` (F, K, orthonormal columns) fitted to ``y`` (B, F), read
    where ``keep`` (1 or B, F; True = observed) is True, in ``y``'s dtype. A sample with nothing observed gets 0."""
    with torch.autocast(y.device.type, enabled=False):
        q = basis.float()
        mask = keep.to(q.dtype)
        rhs = torch.where(keep, y.float(), 0.0) @ q  # Q^T K y

        def system(c: Tensor, mask: Tensor) -> Tensor:
            return (1 - RIDGE) * (((c @ q.T) * mask) @ q) + RIDGE * c

        scale = (1 - RIDGE) * mask.mean(1, keepdim=True) + RIDGE
        c = rhs / scale
        residual = rhs - system(c, mask)
        direction = residual / scale
        rz = (residual * direction).sum(1, keepdim=True)
        bound = TOLERANCE * rhs.norm(dim=1)
        rows = torch.arange(len(c), device=c.device)  # samples still iterating: each stops once converged
        for _ in range(MAX_ITERATIONS):
            rows = rows[residual[rows].norm(dim=1) > bound[rows]]
            if len(rows) == 0:
                break
            step, row_scale = direction[rows], scale[rows] if len(scale) > 1 else scale
            applied = system(step, mask[rows] if len(mask) > 1 else mask)
            alpha = rz[rows] / (step * applied).sum(1, keepdim=True).clamp_min(1e-30)
            c[rows] += alpha * step
            r_now = residual[rows] - alpha * applied
            z = r_now / row_scale
            rz_next = (r_now * z).sum(1, keepdim=True)
            residual[rows] = r_now
            direction[rows] = z + rz_next / rz[rows].clamp_min(1e-30) * step
            rz[rows] = rz_next
    return c.to(y.dtype)
