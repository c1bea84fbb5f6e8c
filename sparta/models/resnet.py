"""ResNet-18 encoder with GroupNorm, written out because torchvision is not a dependency.

The paper replaces every BatchNorm but the first with GroupNorm so that embeddings do not depend on
batch composition (BatchNorm leaks batch statistics into contrastive learning); the authors' code
uses one group per channel, which is our default (``gn_groups=0``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from sparta.config import ConfigError
from sparta.models.lstsq import masked_lstsq

StemNorm = Literal["batch", "group"]
Norm = Literal["group", "batch"]
Stem = Literal["imagenet", "cifar"]


def group_norm(channels: int, gn_groups: int) -> nn.GroupNorm:
    """GroupNorm over ``channels``; ``gn_groups=0`` means one group per channel (the authors' choice)."""
    groups = channels if gn_groups == 0 else gn_groups
    if channels % groups:
        raise ConfigError(f"model.gn_groups={gn_groups} does not divide a layer's {channels} channels; "
                          "use 0 (one group per channel) or a divisor of model.width")
    return nn.GroupNorm(groups, channels)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a strided 1x1 conv + norm matches shapes when they change."""

    def __init__(self, c_in: int, c_out: int, stride: int, gn_groups: int, norm: Norm = "group") -> None:
        super().__init__()
        def make_norm() -> nn.Module:
            return group_norm(c_out, gn_groups) if norm == "group" else nn.BatchNorm2d(c_out)

        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.norm1 = make_norm()
        self.conv2 = _conv3x3(c_out, c_out)
        self.norm2 = make_norm()
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), make_norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet18Encoder(nn.Module):
    """(B, in_channels, H, W) -> h (B, embed_dim): ResNet-18 whose fc head output is the embedding.

    h has no activation, as in the paper. The paper's network (``stem="imagenet"``, ``pool=(1, 1)``)
    downsamples 32x and averages the last map globally: h keeps *what* is in the field but not
    *where*, and with one GroupNorm group per channel a 1x2 last map (32x64 inputs) normalises every
    channel to +-1. ``stem="cifar"`` (3x3 stride-1 conv, no max-pool, as ResNets for 32x32 images)
    downsamples 8x instead, and ``pool=(h, w)`` average-pools the last map to an h x w grid that the
    fc layer reads position by position, so the embedding keeps where the weather is (a decoder needs
    that; a season classifier does not). Inputs need at least 16 (imagenet) or 4 (cifar) points per axis.

    ``norm="group"`` (paper) normalises each sample's feature maps by their own statistics, so the
    strided blocks (whose shortcut is normalised too) discard how strong a sample's anomalies are;
    ``norm="batch"`` keeps amplitudes (fixed affine maps at evaluation) at the price of batch
    statistics during training (all-reduced across processes under DDP).

    ``linear_grid=(n_lat, n_lon)`` adds a :class:`LinearPath` beside the network. A deep network
    learns large-scale patterns slowly from few steps; the linear path holds an EOF-like projection
    from the first steps (or the EOFs themselves, :meth:`start_from_projection`), and the network
    learns what it misses. ``linear_fill``: see :class:`LinearPath`.
    """

    def __init__(self, in_channels: int, embed_dim: int = 1000, width: int = 64,
                 stem_norm: StemNorm = "batch", gn_groups: int = 0, stem: Stem = "imagenet",
                 pool: tuple[int, int] = (1, 1), linear_grid: tuple[int, int] | None = None,
                 norm: Norm = "group", linear_fill: bool = False) -> None:
        super().__init__()
        if stem_norm not in ("batch", "group"):
            raise ConfigError(f"model.stem_norm must be 'batch' or 'group', got '{stem_norm}'")
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"model.stem must be 'imagenet' or 'cifar', got '{stem}'")
        first_norm = nn.BatchNorm2d(width) if stem_norm == "batch" else group_norm(width, gn_groups)
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False), first_norm,
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), first_norm,
                                      nn.ReLU(inplace=True))
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, c_in = [], width
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride, gn_groups, norm),
                                        BasicBlock(c_out, c_out, 1, gn_groups, norm)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(tuple(pool))
        self.fc = nn.Linear(widths[-1] * pool[0] * pool[1], embed_dim)
        self.linear = LinearPath(in_channels, linear_grid, embed_dim, linear_fill) if linear_grid is not None else None
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's ResNet init: He-normal (fan_out) convs, unit-scale zero-shift norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def start_from_projection(self, weight: torch.Tensor, centre: torch.Tensor) -> None:
        """h = ``weight`` (x - ``centre``) at the start: the linear path set to that projection and the
        network's output layer to zero (it still learns: its gradient does not vanish)."""
        if self.linear is None:
            raise ConfigError("starting from a projection needs the encoder's linear path (model.linear_path=true)")
        self.linear.proj.weight.copy_(weight)
        self.linear.proj.bias.zero_()
        self.linear.centre.copy_(centre)
        self.fc.weight.zero_()
        self.fc.bias.zero_()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: the observation mask (B, 1 or C, H, W), True = observed; None = complete. The network
        reads ``x`` as it is (hidden values are 0 there); only the linear path reads ``keep``."""
        h = self.fc(self.pool(self.stages(self.stem(x))).flatten(1))
        return h if self.linear is None else h + self.linear(x, keep)


class LinearPath(nn.Module):
    """Field (B, C, H, W) -> (B, embed_dim) by one linear map of the field's anomalies from ``centre``
    (the train mean once EOF-initialised, else 0).

    The input is average-pooled to ``grid`` (the native grid: an identity there) and flattened, and so
    is the observation mask ``keep``: a pooled value is observed when an observed input value enters it.
    Hidden values are never read as anomalies, whatever they are. In training the map of the observed values is divided by the observed fraction, an
    unbiased estimate of the complete map. With ``fill`` (for patterns worth fitting: the EOFs, which
    ``model.linear_init=eof`` starts from), evaluation first fills the hidden values by the
    least-squares fit of the map's own patterns (:func:`fill_hidden`) and maps that best estimate.
    Training keeps the cheap estimate: the fit made the quick preset's steps 2.7x slower, and training with it decoded 70%-hidden days no better. Random patterns fit noise, so
    random-start paths (late fusion) never fill (docs/decisions.md). A complete field gets the
    plain affine map.
    """

    def __init__(self, in_channels: int, grid: tuple[int, int], embed_dim: int, fill: bool = False) -> None:
        super().__init__()
        n = in_channels * grid[0] * grid[1]
        self.pool = nn.AdaptiveAvgPool2d(tuple(grid))
        self.proj = nn.Linear(n, embed_dim)
        self.fill = fill
        self.register_buffer("centre", torch.zeros(n))
        self._basis: tuple[tuple, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        flat = self.pool(x).flatten(1)[:, None]  # (B, 1, n): one path
        keep = pooled_keep(self.pool, keep, x).flatten(1)[:, None]
        anomalies = torch.where(keep, flat - self.centre.to(flat.dtype), 0.0)
        basis = self.basis()[None] if self.fill and not self.training else None
        return observed_map(anomalies, keep, self.proj.weight[None], basis)[:, 0] + self.proj.bias

    @torch.compiler.disable  # a cache in Python state
    @torch.no_grad()
    def basis(self) -> torch.Tensor:
        """(n, D) float32 orthonormal basis of the span of the weight rows (its patterns), computed again only
        when the weight has changed (a QR costs ~30 ms at 10240 x 256, as much as filling 48 samples)."""
        weight = self.proj.weight
        key = (weight._version, weight.data_ptr(), weight.device)
        if self._basis is None or self._basis[0] != key:
            self._basis = key, torch.linalg.qr(weight.float().T).Q
        return self._basis[1]


def pooled_keep(pool: nn.Module, keep: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The observation mask (B, 1 or C, H, W) of ``x`` (B, C, H, W) after ``pool``, flattened per channel ->
    (B, C, n) bool; None (complete) -> all True."""
    if keep is None:
        return torch.ones(x.shape[0], x.shape[1], math.prod(pool.output_size), dtype=torch.bool, device=x.device)
    return pool(keep.to(x.dtype).expand(x.shape)).flatten(2) != 0


def observed_map(anomalies: torch.Tensor, keep: torch.Tensor, weight: torch.Tensor,
                 basis: torch.Tensor | None) -> torch.Tensor:
    """k linear maps ``weight`` (k, D, n) of partly observed ``anomalies`` (B, k, n), 0 where ``keep`` is False
    -> (B, k, D): of the field filled by :func:`fill_hidden` in ``basis`` (k, n, D), or without one divided
    by the observed fraction."""
    if basis is not None:
        return torch.einsum("bkn,kdn->bkd", fill_hidden(anomalies, keep, basis), weight)
    observed = keep.sum(2, keepdim=True).clamp(min=1) / keep.shape[2]
    return torch.einsum("bkn,kdn->bkd", anomalies, weight) / observed


@torch.compiler.disable  # a solve whose cost follows the mask: left to eager mode
@torch.no_grad()
def fill_hidden(anomalies: torch.Tensor, keep: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``anomalies`` (B, k, n) with their hidden points (``keep`` False) set to the least-squares fit of
    the patterns ``basis`` (k, n, D, orthonormal columns: :meth:`LinearPath.basis`) to the observed ones
    -> (B, k, n); complete rows come back as they are. The fit is the EOF model's masked least squares
    (:func:`sparta.models.lstsq.masked_lstsq`, same ridge), one path after another; it is a fixed input:
    gradients reach a weight through its map only.
    """
    if bool(keep.all()):
        return anomalies
    y = torch.where(keep, anomalies, 0.0)
    fit = torch.stack([masked_lstsq(y[:, i], keep[:, i], q) @ q.T.to(y.dtype) for i, q in enumerate(basis)], 1)
    return torch.where(keep, anomalies, fit.to(anomalies.dtype))


# ---------------------------------------------------------------- several encoders as one network
# Late fusion runs one single-channel encoder per variable. Run one after another, each convolution
# is small (one input channel, a batch of one variable) and the cores idle between kernels. The
# functions below run k encoders of identical structure as ONE network on the (B, k, H, W) stack of
# their inputs: every convolution is one grouped convolution (groups=k) whose weight is the
# concatenation of the k encoders' weights, every Linear one batched matmul over stacked weights.
# The parameters stay in the encoders (same checkpoint layout, same optimiser groups); the
# concatenations are rebuilt at every call and differentiable, so gradients land in each encoder.
# Norms see each encoder's own channels: GroupNorm and BatchNorm2d run grouped (their groups and
# statistics never straddle two encoders' channels; BatchNorm's running statistics are written back
# to each encoder), any other norm (the global batch norm under DDP) runs as each encoder's own module
# on its slice, so its cross-process reduction stays exactly its own.


def _cat_param(modules: list[nn.Module], name: str) -> torch.Tensor | None:
    parts = [getattr(m, name) for m in modules]
    return None if parts[0] is None else torch.cat(parts)


def _grouped_conv(convs: list[nn.Conv2d], x: torch.Tensor) -> torch.Tensor:
    c = convs[0]
    return nn.functional.conv2d(x, _cat_param(convs, "weight"), _cat_param(convs, "bias"), c.stride, c.padding,
                                c.dilation, c.groups * len(convs))


def _grouped_norm(norms: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    first = norms[0]
    if type(first) is nn.GroupNorm:
        return nn.functional.group_norm(x, first.num_groups * len(norms), _cat_param(norms, "weight"),
                                        _cat_param(norms, "bias"), first.eps)
    if type(first) is nn.BatchNorm2d:
        return _grouped_batch_norm(norms, x)
    # other norms (the processes' global batch norm under DDP): each encoder's module on its channels
    return torch.cat([norm(part) for norm, part in zip(norms, x.chunk(len(norms), dim=1))], dim=1)


def _grouped_batch_norm(norms: list[nn.BatchNorm2d], x: torch.Tensor) -> torch.Tensor:
    """k BatchNorm2d as one over the concatenated channels (statistics are per channel either way),
    following ``nn.BatchNorm2d.forward``; updated running statistics are written back to each module.
    (Per-module calls on channel slices cost 2.5x as much in the backward pass on CPU: measured.)"""
    first = norms[0]
    tracked = first.track_running_stats and first.running_mean is not None
    factor = 0.0 if first.momentum is None else first.momentum
    if first.training and tracked:
        for norm in norms:
            norm.num_batches_tracked.add_(1)
        if first.momentum is None:  # cumulative moving average
            factor = 1.0 / float(first.num_batches_tracked)
    mean = torch.cat([n.running_mean for n in norms]) if tracked else None
    var = torch.cat([n.running_var for n in norms]) if tracked else None
    out = nn.functional.batch_norm(x, mean, var, _cat_param(norms, "weight"), _cat_param(norms, "bias"),
                                   first.training or not tracked, factor, first.eps)
    if first.training and tracked:
        with torch.no_grad():
            for norm, m, v in zip(norms, mean.chunk(len(norms)), var.chunk(len(norms))):
                norm.running_mean.copy_(m)
                norm.running_var.copy_(v)
    return out


def _grouped_block(blocks: list[BasicBlock], x: torch.Tensor) -> torch.Tensor:
    out = torch.relu(_grouped_norm([b.norm1 for b in blocks], _grouped_conv([b.conv1 for b in blocks], x)))
    out = _grouped_norm([b.norm2 for b in blocks], _grouped_conv([b.conv2 for b in blocks], out))
    if isinstance(blocks[0].downsample, nn.Identity):
        shortcut = x
    else:
        shortcut = _grouped_norm([b.downsample[1] for b in blocks],
                                 _grouped_conv([b.downsample[0] for b in blocks], x))
    return torch.relu(out + shortcut)


def grouped_encoders_forward(encoders: list[ResNet18Encoder], x: torch.Tensor,
                             keep: torch.Tensor | None = None) -> torch.Tensor:
    """k single-channel :class:`ResNet18Encoder` s (identical structure) on x (B, k, H, W) observed where
    ``keep`` (B, 1 or k, H, W; None = complete), channel i to encoder i, as one network -> (B, k, embed_dim):
    the same mathematics as ``torch.stack([enc(x[:, i:i+1], keep[:, i:i+1]) for i, enc in ...], 1)``."""
    k, first = len(encoders), encoders[0]
    if x.shape[1] != k or any(e.stem[0].in_channels != 1 for e in encoders):
        raise ValueError(f"grouped encoders take one input channel each: {k} encoders, input {tuple(x.shape)}")
    stems = [e.stem for e in encoders]
    out = _grouped_norm([s[1] for s in stems], _grouped_conv([s[0] for s in stems], x))
    out = first.stem[2:](out)  # ReLU (+ max-pool): per channel, no parameters
    for i, stage in enumerate(first.stages):
        for j in range(len(stage)):
            out = _grouped_block([e.stages[i][j] for e in encoders], out)
    feats = first.pool(out).flatten(1).view(len(x), k, -1)  # encoder i's pooled maps, in its own order
    weight = torch.stack([e.fc.weight for e in encoders])  # (k, embed_dim, features)
    h = torch.einsum("bkf,kef->bke", feats, weight) + torch.stack([e.fc.bias for e in encoders])
    if first.linear is not None:
        h = h + grouped_linear_paths([e.linear for e in encoders], x, keep)
    return h


def grouped_linear_paths(paths: list[LinearPath], x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """k single-channel :class:`LinearPath` s on one grid, on x (B, k, H, W) observed where ``keep`` -> (B, k,
    embed_dim): each path's map of its own channel, as :meth:`LinearPath.forward` computes it."""
    grid = tuple(paths[0].pool.output_size)
    if any(tuple(p.pool.output_size) != grid or p.proj.in_features != math.prod(grid) for p in paths):
        raise ValueError("grouped linear paths need one grid and one input channel each")
    flat = paths[0].pool(x).flatten(2)  # (B, k, n)
    keep = pooled_keep(paths[0].pool, keep, x)
    centre = torch.stack([p.centre for p in paths]).to(flat.dtype)  # (k, n)
    weight = torch.stack([p.proj.weight for p in paths])  # (k, embed_dim, n)
    anomalies = torch.where(keep, flat - centre, 0.0)
    basis = torch.stack([p.basis() for p in paths]) if paths[0].fill and not paths[0].training else None
    return observed_map(anomalies, keep, weight, basis) + torch.stack([p.proj.bias for p in paths])
