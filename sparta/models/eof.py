"""EOF/PCA: the linear baseline climate science compares against first (``method=pca``).

A sample's fields (z-scored with the store's train statistics, every channel of every grid
flattened into one vector ``x`` of ``F`` values) are area-weighted, ``y = w * (x - mean)`` with
``w = sqrt(cell area)`` normalised to mean square 1 (``sqrt(cos lat)`` away from the poles; a
polar cap cell keeps its true, small but positive area, see :func:`sparta.metrics.lat_weights`).
The EOFs ``E`` (``K x F``, orthonormal rows) are the leading eigenvectors of the train split's
covariance of ``y``. The embedding is the standardised principal components, the climate
convention: ``h_k = E_k y / sqrt(lambda_k)``, unit variance over the train split (``lambda_k``, the
variance of the raw coefficient ``E_k y``). Standardised, every coordinate has the scale the
downstream networks expect; with raw coefficients (spanning two decades here) the LSTM's 100-day
rollout drifted from 2.4% to 27% RRMSE on the quick preset, standardised it stays at 3.5-5%.
Decoding is the linear inverse ``x = mean + (sqrt(lambda) h) E / w``.

Partly observed samples (a keep mask, True = observed) are encoded by weighted least squares on
the observed values only: ``c`` minimises ``|y_o - E_o^T c|^2 + r |E_h^T c|^2``, i.e.
``(G_o + r (I - G_o)) c = E_o y_o`` with ``G_o = E_o E_o^T``. The ridge ``r`` (:data:`sparta.models.lstsq.RIDGE`)
penalises the anomaly the EOFs put at the *hidden* points, which keeps the fit from chasing the few
observed values when few points are observed (or fewer than ``K``), and vanishes when nothing is
hidden: a complete sample gets exactly the plain projection. The learned encoders' linear paths
fill hidden points with the same solver (:func:`sparta.models.lstsq.masked_lstsq`).
Hidden values are never read (they may be anything, NaN included). Solved by preconditioned conjugate
gradients to a relative residual of 1e-5 (fitted fields within ~1e-4 of float64's): ~0.05 s for 48
samples at the quick size (K=256, 5x64x32) on this project's 2-core CPU.

The fit is exact and deterministic: an eigendecomposition (float64) of the smaller of the
``N x N`` Gram and ``F x F`` covariance matrices of the train anomalies, EOF signs fixed so that
each EOF's largest-magnitude value is positive. ``K`` beyond the data's rank (at most ``N - 1``)
gets zero EOFs (their coefficients are always 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from sparta import grids
from sparta.config import Config, ConfigError
from sparta.grids import Fields, Grid
from sparta.metrics import lat_weights
from sparta.models.lstsq import masked_lstsq

log = logging.getLogger(__name__)

_CHUNK_BYTES = 2**28  # bound on the temporaries of the fit (float64): 256 MiB


class EOFModel(nn.Module):
    """Leading EOFs of the train split: ``encode`` fields -> standardised PCs h, ``decode`` h -> fields.

    Buffers (saved in checkpoints): ``mean`` (F,), ``weights`` (F,), ``components`` (K, F),
    ``explained_variance`` (K,) (variance of each raw coefficient ``E y`` over the train split) and
    ``total_variance`` (the train split's total weighted variance). Built empty by
    :func:`sparta.models.build.build_model`; :func:`fit_eof` or a checkpoint fills them.
    """

    def __init__(self, embed_dim: int, layout: Sequence[Grid]) -> None:
        super().__init__()
        self.layout = list(layout)
        self.channels = [c for grid in self.layout for c in grid.channels]
        self.sizes = [len(g.channels) * g.n_lat * g.n_lon for g in self.layout]
        n = sum(self.sizes)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("components", torch.zeros(embed_dim, n))
        self.register_buffer("explained_variance", torch.zeros(embed_dim))
        self.register_buffer("total_variance", torch.zeros(()))

    @property
    def embed_dim(self) -> int:
        return self.components.shape[0]

    @property
    def pc_std(self) -> Tensor:
        """(K,) standard deviation of each raw coefficient over the train split (1 for a zero EOF)."""
        std = self.explained_variance.sqrt()
        return torch.where(std > 0, std, 1.0)

    # ---------------------------------------------------------------- shapes
    def flatten(self, x: Fields) -> Tensor:
        """Fields (B, C, H, W), or one such tensor per grid, -> (B, F) in the store's channel order."""
        parts = grids.as_list(x)
        if len(parts) != len(self.layout):
            raise ValueError(f"expected fields on {len(self.layout)} grid(s), got {len(parts)}")
        for part, grid in zip(parts, self.layout):
            if tuple(part.shape[1:]) != (len(grid.channels), grid.n_lat, grid.n_lon):
                raise ValueError(f"fields of shape {tuple(part.shape)} do not match the model's grid "
                                 f"({len(grid.channels)}, {grid.n_lat}, {grid.n_lon}); the EOF model works "
                                 "on the native grid only")
        return torch.cat([part.reshape(part.shape[0], -1) for part in parts], dim=1)

    def unflatten(self, flat: Tensor) -> Fields:
        """(B, F) -> fields on the model's grid(s): one tensor, or a list with one per grid."""
        out = [piece.reshape(len(flat), len(g.channels), g.n_lat, g.n_lon)
               for piece, g in zip(flat.split(self.sizes, dim=1), self.layout)]
        return out if len(out) > 1 else out[0]

    def _flat_keep(self, keep: Fields, batch: int) -> Tensor:
        """Keep masks (1 or B, 1 or C, H, W) per grid -> (1 or B, F) bool."""
        parts = []
        for part, grid in zip(grids.as_list(keep), self.layout):
            part = part.bool()
            while part.dim() < 4:
                part = part[None]
            shape = (part.shape[0] if part.shape[0] == 1 else batch, len(grid.channels), grid.n_lat, grid.n_lon)
            parts.append(part.expand(shape).reshape(shape[0], -1))
        rows = {p.shape[0] for p in parts}
        return torch.cat([p.expand(max(rows), -1) for p in parts], dim=1)

    # ---------------------------------------------------------------- encode / decode
    def encode(self, x: Fields, keep: Fields | None = None) -> Tensor:
        """Normalised fields -> h (B, K), the standardised principal components. ``keep`` (True =
        observed; per grid, broadcast over the batch and channels) switches to the least-squares fit
        of the observed values only."""
        return self.coefficients(x, keep) / self.pc_std

    def coefficients(self, x: Fields, keep: Fields | None = None) -> Tensor:
        """The raw EOF coefficients ``E y`` (B, K), by projection or, with ``keep``, masked least squares."""
        flat = self.flatten(x)
        y = (flat - self.mean) * self.weights
        if keep is None:
            return y @ self.components.T
        m = self._flat_keep(keep, len(flat)).to(flat.device)
        complete = m.all(dim=1)
        if bool(complete.all()):  # nothing hidden: the plain projection
            return y @ self.components.T
        coeffs = masked_lstsq(torch.where(m, y, 0.0), m, self.components.T)
        if bool(complete.any()):  # fully observed samples get the plain projection, exactly
            coeffs = torch.where(complete[:, None], y @ self.components.T, coeffs)
        return coeffs

    def linear_maps(self) -> tuple[Tensor, Tensor]:
        """The complete-field maps as matrices: (projection (K, F), expansion (F, K)) with ``encode(x) =
        projection (x - mean)`` and ``decode(h) = expansion h + mean`` on flattened fields."""
        std = self.pc_std
        return self.components * self.weights / std[:, None], (self.components / self.weights).T * std

    def decode(self, h: Tensor) -> Fields:
        """h (B, K) -> normalised fields on the native grid (a list, one per grid, for several)."""
        flat = (h * self.pc_std) @ self.components / self.weights + self.mean
        return self.unflatten(flat)

    def forward(self, x: Fields, keep: Fields | None = None) -> Tensor:
        return self.encode(x, keep)


def build_eof(cfg: Config, layout: Sequence[Grid]) -> EOFModel:
    """The ``pca`` family's model, empty: :func:`fit_eof` or a checkpoint fills its buffers."""
    return EOFModel(cfg.model.embed_dim, layout)


def area_weights(layout: Sequence[Grid], lats: Sequence[np.ndarray]) -> Tensor:
    """(F,) ``sqrt(cell area)`` per value, normalised to mean square 1 on each grid (:func:`lat_weights`)."""
    out = []
    for grid, lat in zip(layout, lats, strict=True):
        w = lat_weights(torch.as_tensor(np.asarray(lat), dtype=torch.float64)).sqrt()
        out.append(w[None, :, None].expand(len(grid.channels), grid.n_lat, grid.n_lon).reshape(-1))
    return torch.cat(out)


def _eigh(a: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, on one thread below 2048 rows: there MKL's threaded solver is slower (876 rows:
    0.12 s on one thread against 0.4 s on two idle cores, and 6-9 s when the cores are shared)."""
    threads = torch.get_num_threads()
    if len(a) >= 2048 or threads == 1:
        return torch.linalg.eigh(a)
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(a)
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def fit_eof(fields: Fields, layout: Sequence[Grid], embed_dim: int,
            lats: Sequence[np.ndarray] | None = None) -> EOFModel:
    """The EOF model of normalised train fields ``(N, C, H, W)`` (or one array per grid of ``layout``).

    ``lats``: each grid's latitudes in degrees for the area weighting; ``None`` weighs every value
    equally (plain PCA). Exact and deterministic; memory: the data once in float32, plus the
    ``min(N, F)``-square Gram or covariance matrix in float64.
    """
    f = sum(len(g.channels) * g.n_lat * g.n_lon for g in layout)
    if embed_dim > f:  # before the (embed_dim, f) components are allocated
        raise ConfigError(f"model.embed_dim={embed_dim} EOFs exceed the {f} values of one sample "
                          f"({grids.layout_label(layout)}); choose model.embed_dim <= {f}")
    model = EOFModel(embed_dim, layout)
    x = model.flatten(grids.each(lambda p: torch.as_tensor(np.asarray(p, dtype=np.float32)), fields))
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"the EOF fit needs at least 2 train samples, got {n}")
    w = area_weights(layout, lats) if lats is not None else torch.ones(f, dtype=torch.float64)
    rows = max(1, _CHUNK_BYTES // (8 * f))
    mean = sum(x[i:i + rows].double().sum(0) for i in range(0, n, rows)) / n

    def anomalies(i: int, j: int) -> Tensor:  # weighted anomalies of samples i:j, float64
        return (x[i:j].double() - mean) * w

    k = min(embed_dim, n - 1)
    if n <= f:  # Gram N x N: EOFs = A^T U / sqrt(lambda)
        cols = max(1, _CHUNK_BYTES // (8 * n))
        gram = torch.zeros(n, n, dtype=torch.float64)
        for c in range(0, f, cols):
            a = ((x[:, c:c + cols].double() - mean[c:c + cols]) * w[c:c + cols])
            gram += a @ a.T
        eigval, eigvec = _eigh(gram)
        eigval, eigvec = eigval.flip(0)[:k], eigvec.flip(1)[:, :k]
        keep = eigval > eigval[0].clamp(min=0) * 1e-10
        comps = torch.zeros(k, f, dtype=torch.float64)
        for i in range(0, n, rows):
            comps += eigvec[i:i + rows].T @ anomalies(i, min(i + rows, n))
        comps[keep] /= eigval[keep].sqrt()[:, None]
        comps[~keep] = 0.0
        total = gram.trace()
    else:  # covariance F x F: EOFs are its eigenvectors
        cov = torch.zeros(f, f, dtype=torch.float64)
        for i in range(0, n, rows):
            a = anomalies(i, min(i + rows, n))
            cov += a.T @ a
        eigval, eigvec = _eigh(cov)
        eigval, comps = eigval.flip(0)[:k], eigvec.flip(1)[:, :k].T.contiguous()
        keep = eigval > eigval[0].clamp(min=0) * 1e-10
        comps[~keep] = 0.0
        total = cov.trace()
    eigval = torch.where(keep, eigval, 0.0)
    # sign convention: each EOF's largest-magnitude value is positive
    peak = comps.gather(1, comps.abs().argmax(1, keepdim=True))
    comps *= torch.where(peak < 0, -1.0, 1.0).to(comps.dtype)
    if k < embed_dim or not bool(keep.all()):
        log.warning("the train split has rank %d < model.embed_dim=%d: the remaining EOFs are zero",
                    int(keep.sum()), embed_dim)
    model.mean.copy_(mean.float())
    model.weights.copy_(w.float())
    model.components[:k].copy_(comps.float())
    model.explained_variance[:k].copy_((eigval / (n - 1)).float())
    model.total_variance.copy_((total / (n - 1)).float())
    return model.eval()


@torch.no_grad()
def split_rrmse(model: EOFModel, store, split: str, batch_size: int = 256) -> float:
    """RRMSE (%) of the complete days of a store split, encoded and decoded, in physical units (pooled
    over every day, channel and grid point, as :func:`sparta.metrics.rrmse`)."""
    start, stop = store.split_range(split)
    err2 = ref2 = 0.0
    for first in range(start, stop, batch_size):
        truth = store.read(slice(first, min(first + batch_size, stop)))
        x = grids.each(torch.from_numpy, store.normalise(truth))
        pred = store.denormalise(model.decode(model.encode(x)))
        for p, t in zip(grids.as_list(pred), grids.as_list(truth)):
            t = torch.tensor(t, dtype=torch.float64)
            err2 += float((p.double() - t).pow(2).sum())
            ref2 += float(t.pow(2).sum())
    return 100.0 * math.sqrt(err2 / ref2)
