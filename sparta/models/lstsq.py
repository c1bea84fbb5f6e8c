"""The masked least squares of partly observed fields, solved in one place for the EOF model and the learned
encoders' linear paths.

With ``Q`` (F, K) a basis of patterns with orthonormal columns, ``y`` a field observed where the keep mask
``K`` is True, the coefficients ``c`` minimise ``|K (y - Q c)|^2 + r |(1 - K) Q c|^2``, i.e.
``((1 - r) Q^T K Q + r I) c = Q^T K y``. The ridge ``r`` (:data:`RIDGE`) penalises the anomaly the patterns
put at the hidden points, which keeps the fit from chasing the few observed values when few are observed,
and vanishes when nothing is hidden. The system's eigenvalues lie in [r, 1], so its condition number is at
most 1/r = 100 and float32 suffices.

Solved by Cholesky on the ``K x K`` Gram matrix of the observed (or, when fewer, the hidden) values,
chosen by measurement (docs/decisions.md): F = 5x64x32 = 10240, K = 256, batches of 64 with per-sample
masks, against a float64 solve, on this project's shared 2-core CPU: Cholesky 3.1 / 5.4 / 3.7 / 3.5 s at
0 / 70 / 90 / 95% hidden with a filled field within 8e-7 (relative to its largest value); the conjugate
gradients the linear paths used (tolerance 1e-2) 0.04 / 0.57 / 1.5 / 2.7 s within 0 / 2.9e-3 / 1.3e-2 /
1.2e-2. Cholesky is exact whatever the mask, deterministic, and costs about as much at high sparsity.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Weight of the hidden-point anomaly in the masked least squares, relative to the misfit at observed points.
# Quick EOF baseline, test days decoded at 70 / 90 / 95% hidden: 0.965 / 1.67 / 3.81% at 1e-6, 0.964 / 1.53 /
# 1.89% at 1e-3, 0.961 / 1.36 / 1.78% at 0.01, 0.984 / 1.54 / 2.10% at 0.03. The quick autoencoder's fill:
# 0.93 / 1.49% (70 / 90%) at 0.001, 0.94 / 1.37% at 0.01, 1.01 / 1.69% at 0.05.
RIDGE = 0.01
CHUNK_BYTES = 2**28  # bound on the temporaries of a chunk of the solve (float32): 256 MiB


@torch.no_grad()
def masked_lstsq(y: Tensor, keep: Tensor, basis: Tensor) -> Tensor:
    """Coefficients (B, K) of the patterns ``basis`` (F, K) fitted to ``y`` (B, F), 0 where ``keep`` (1 or B,
    F; True = observed) is False, in float32 whatever the autocast, returned in ``y``'s dtype. A mask shared
    by the batch (one row) is factorised once."""
    with torch.autocast(y.device.type, enabled=False):
        q = basis.float()
        k = q.shape[1]
        rhs = y.float() @ q  # Q^T K y: y is already 0 at hidden points
        full = q.T @ q  # I, up to rounding and zero patterns
        eye = torch.eye(k, dtype=q.dtype, device=q.device)

        def solve(g: Tensor, b: Tensor) -> Tensor:
            return torch.cholesky_solve(b, torch.linalg.cholesky(g + RIDGE * (eye - g)))

        if len(keep) == 1:
            return solve(_observed_gram(q, full, keep)[0], rhs.T).T.to(y.dtype)
        step = max(1, CHUNK_BYTES // (4 * k * max(k, keep.shape[1])))
        out = [solve(_observed_gram(q, full, keep[a:a + step]), rhs[a:a + step, :, None])[..., 0]
               for a in range(0, len(keep), step)]
    return torch.cat(out).to(y.dtype)


def _observed_gram(q: Tensor, full: Tensor, keep: Tensor) -> Tensor:
    """``Q^T K Q`` per mask row (b, K, K), summed over the observed or, when fewer, the hidden values
    (``Q^T Q - Q_h^T Q_h``), gathered so the cost follows that count, not F."""
    observed = torch.count_nonzero(keep, dim=1)
    use_hidden = int(keep.shape[1] - observed.min()) < int(observed.max())
    sel = ~keep if use_hidden else keep
    count = int(keep.shape[1] - observed.min()) if use_hidden else int(observed.max())
    if count == 0:
        g = torch.zeros(len(keep), *full.shape, dtype=q.dtype, device=q.device)
    else:
        flag, idx = sel.to(q.dtype).topk(count, dim=1)  # the selected values first; 0-flagged fillers after
        picked = q[idx] * flag[..., None]  # (b, count, K)
        g = picked.transpose(1, 2) @ picked
    return full - g if use_hidden else g
