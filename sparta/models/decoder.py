"""Decoder: embedding h -> the full field (B, C, n_lat, n_lon) on the native grid.

``n_blocks`` x2 upsampling blocks (paper: 5) grow a (ceil(n_lat / 2^n), ceil(n_lon / 2^n)) seed to
2^n times its size; the authors reshape their 1000-d h straight to (500, 2, 1), which only fits that
one embedding size and grid, so we map h to the seed with a Linear layer. Where the grown seed
overshoots the grid (121x240 -> 128x256) the output is centre-cropped: cropping keeps every output cell a direct convolution output
(no resampling blur), and the network learns where the grid lies inside its canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sparta.grids import Grid

MIN_CHANNELS = 4


class ResidualBlock(nn.Module):
    """Conv3x3(c->2c)-ReLU-Dropout-Conv3x3(2c->c) added to its input, then ReLU and Dropout."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(2 * channels, channels, 3, padding=1))
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.block(x))


class Decoder(nn.Module):
    """h (B, embed_dim) -> (B, out_channels, n_lat, n_lon), no output activation (z-scored fields).

    Channels halve at each block (floor ``MIN_CHANNELS``): 500 -> 250 -> ... -> 15 in the paper's 5.
    """

    def __init__(self, embed_dim: int, out_channels: int, n_lat: int, n_lon: int,
                 base_channels: int = 500, dropout: float = 0.1, n_blocks: int = 5, linear: bool = False,
                 mean_field: bool = False) -> None:
        super().__init__()
        self.n_lat, self.n_lon = n_lat, n_lon
        self.out_shape = (out_channels, n_lat, n_lon)
        # global path: every output cell reads all of h directly, as an EOF expansion does
        self.linear = nn.Linear(embed_dim, math.prod(self.out_shape)) if linear else None
        self.mean_field = nn.Parameter(torch.zeros(self.out_shape)) if mean_field else None
        scale = 2 ** n_blocks
        self.seed_shape = (base_channels, math.ceil(n_lat / scale), math.ceil(n_lon / scale))
        self.seed = nn.Linear(embed_dim, math.prod(self.seed_shape))
        blocks: list[nn.Module] = []
        c = base_channels
        for _ in range(n_blocks):
            c_next = max(c // 2, MIN_CHANNELS)
            blocks += [nn.ConvTranspose2d(c, c_next, 2, stride=2), ResidualBlock(c_next, dropout)]
            c = c_next
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(c, out_channels, 1)

    @torch.no_grad()
    def start_from_expansion(self, weight: torch.Tensor, mean: torch.Tensor) -> None:
        """fields = ``weight`` h + ``mean`` (flattened) at the start: the linear path set to that
        expansion and the network's output layer to zero (it still learns)."""
        if self.linear is None:
            raise ValueError("starting from an expansion needs the decoder's linear path (model.linear_path=true)")
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(mean)
        self.head.weight.zero_()
        self.head.bias.zero_()

    @torch.no_grad()
    def start_from_mean(self, mean: torch.Tensor) -> None:
        """The per-point output bias (``model.mean_field``) set to ``mean``, (out_channels, n_lat, n_lon)."""
        if self.mean_field is None:
            raise ValueError("starting from a mean field needs model.mean_field=true")
        self.mean_field.copy_(mean.reshape(self.out_shape))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.seed(h).view(-1, *self.seed_shape)))
        top = (x.shape[-2] - self.n_lat) // 2
        left = (x.shape[-1] - self.n_lon) // 2
        x = x[..., top:top + self.n_lat, left:left + self.n_lon]
        if self.mean_field is not None:
            x = x + self.mean_field
        return x if self.linear is None else x + self.linear(h).view(-1, *self.out_shape)


class MultiGridDecoder(nn.Module):
    """h -> a list with one field tensor per grid (variables on several grids).

    Each grid has its own :class:`Decoder`, whose output layer has one channel per variable on
    that grid: every variable is decoded straight back to its own grid.
    """

    def __init__(self, embed_dim: int, layout: Sequence[Grid], base_channels: int = 500,
                 dropout: float = 0.1, n_blocks: int = 5, linear: bool = False, mean_field: bool = False) -> None:
        super().__init__()
        self.decoders = nn.ModuleList(Decoder(embed_dim, len(grid.channels), grid.n_lat, grid.n_lon,
                                              base_channels, dropout, n_blocks, linear, mean_field) for grid in layout)

    def start_from_mean(self, mean: list[torch.Tensor]) -> None:
        """Each grid's decoder from its own mean field (:meth:`Decoder.start_from_mean`)."""
        for decoder, part in zip(self.decoders, mean, strict=True):
            decoder.start_from_mean(part)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        return [decoder(h) for decoder in self.decoders]


def build_decoder(embed_dim: int, layout: Sequence[Grid], base_channels: int = 500,
                  dropout: float = 0.1, n_blocks: int = 5, linear: bool = False, mean_field: bool = False) -> nn.Module:
    """A :class:`Decoder` for one grid, a :class:`MultiGridDecoder` for several."""
    if len(layout) == 1:
        grid = layout[0]
        return Decoder(embed_dim, len(grid.channels), grid.n_lat, grid.n_lon, base_channels, dropout, n_blocks,
                       linear, mean_field)
    return MultiGridDecoder(embed_dim, layout, base_channels, dropout, n_blocks, linear, mean_field)
