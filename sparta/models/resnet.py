"""ResNet-18 encoder with GroupNorm, written out because torchvision is not a dependency.

The paper replaces every BatchNorm but the first with GroupNorm so that embeddings do not depend on
batch composition (BatchNorm leaks batch statistics into contrastive learning); the authors' code
uses one group per channel, which is our default (``gn_groups=0``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparta.config import ConfigError

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
    learns what it misses.
    """

    def __init__(self, in_channels: int, embed_dim: int = 1000, width: int = 64,
                 stem_norm: StemNorm = "batch", gn_groups: int = 0, stem: Stem = "imagenet",
                 pool: tuple[int, int] = (1, 1), linear_grid: tuple[int, int] | None = None,
                 norm: Norm = "group") -> None:
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
        self.linear = LinearPath(in_channels, linear_grid, embed_dim) if linear_grid is not None else None
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(self.pool(self.stages(self.stem(x))).flatten(1))
        return h if self.linear is None else h + self.linear(x)


class LinearPath(nn.Module):
    """Field (B, C, H, W) -> (B, embed_dim) by one linear map of the observed values.

    The input is average-pooled to ``grid`` (the native grid: an identity there) and flattened.
    Hidden values arrive as exact zeros (every SPARTA mask fills them so); the map reads the observed
    values only, as anomalies from ``centre`` (the train mean once EOF-initialised, else 0), and divides
    by the observed fraction, so a sparse field gives an estimate of its complete projection rather
    than one shrunk toward the fill value. A complete field gets the plain affine map.
    """

    def __init__(self, in_channels: int, grid: tuple[int, int], embed_dim: int) -> None:
        super().__init__()
        n = in_channels * grid[0] * grid[1]
        self.pool = nn.AdaptiveAvgPool2d(tuple(grid))
        self.proj = nn.Linear(n, embed_dim)
        self.register_buffer("centre", torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.pool(x).flatten(1)
        keep = flat != 0
        observed = keep.sum(1, keepdim=True).clamp(min=1) / flat.shape[1]
        anomalies = torch.where(keep, flat - self.centre.to(flat.dtype), 0.0)
        return nn.functional.linear(anomalies, self.proj.weight) / observed + self.proj.bias
