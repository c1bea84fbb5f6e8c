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

    def __init__(self, c_in: int, c_out: int, stride: int, gn_groups: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.norm1 = group_norm(c_out, gn_groups)
        self.conv2 = _conv3x3(c_out, c_out)
        self.norm2 = group_norm(c_out, gn_groups)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                            group_norm(c_out, gn_groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet18Encoder(nn.Module):
    """(B, in_channels, H, W) -> h (B, embed_dim): ResNet-18 whose fc head output is the embedding.

    Any H, W >= 16 works (global average pooling); h has no activation, as in the paper. With one
    GroupNorm group per channel a stage whose map is 1x1 normalises every channel to its bias (no
    signal, no gradient) and a 1x2 map to +-1: the last stage is 1x2 at 32x64 inputs, 3x5 at 72x144.
    """

    def __init__(self, in_channels: int, embed_dim: int = 1000, width: int = 64,
                 stem_norm: StemNorm = "batch", gn_groups: int = 0) -> None:
        super().__init__()
        if stem_norm not in ("batch", "group"):
            raise ConfigError(f"model.stem_norm must be 'batch' or 'group', got '{stem_norm}'")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width) if stem_norm == "batch" else group_norm(width, gn_groups),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, c_in = [], width
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride, gn_groups),
                                        BasicBlock(c_out, c_out, 1, gn_groups)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's ResNet init: He-normal (fan_out) convs, unit-scale zero-shift norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))
