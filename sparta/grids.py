"""Fields whose variables lie on different grids.

Every variable may have its own grid (``data.variable_grids``, late fusion only). Variables that
share a grid form one :class:`Grid`, and a store lists its grids in the order their variables
first appear in ``data.variables``; its channels are that grouping's order. A batch of fields is
then one array ``(N, C, H, W)`` when there is a single grid, or a list of such arrays, one per
grid. The helpers below apply array operations to either form, so the data path, losses and
metrics are written once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

A = TypeVar("A")
Fields = Any  # a numpy array or torch tensor (N, C, H, W), or a list of them (one per grid)


@dataclass(frozen=True)
class Grid:
    """The channels that share one grid, its size, and whether it goes round the globe."""

    channels: tuple[str, ...]
    n_lat: int
    n_lon: int
    #: Longitude wraps round the globe. False for a regional box, where nothing may roll or pad circularly.
    periodic: bool = True

    @classmethod
    def named(cls, grid: str, channels: Sequence[str]) -> Grid:
        """From a WeatherBench2 grid name, lon x lat: ``Grid.named("64x32", ["t2m"])``."""
        n_lon, n_lat = (int(n) for n in grid.split("x"))
        return cls(tuple(channels), n_lat, n_lon)

    @property
    def name(self) -> str:
        return f"{self.n_lon}x{self.n_lat}"


def layout_label(layout: Sequence[Grid]) -> str:
    """``64x32`` for one grid; ``128x64[t2m]+64x32[z850,u850]`` when variables are on several."""
    if len(layout) == 1:
        return layout[0].name
    return "+".join(f"{g.name}[{','.join(g.channels)}]" for g in layout)


def each(fn: Callable[[A], Any], x: Fields) -> Fields:
    """``fn`` applied to the array, or to every grid's array."""
    return [fn(part) for part in x] if isinstance(x, list) else fn(x)


def take(x: Fields, index) -> Fields:
    """Samples ``index`` (an int, slice or index array along the first axis) of every grid."""
    return each(lambda part: part[index], x)


def cat(batches: Sequence[Fields]) -> Fields:
    """Concatenate tensor batches along the sample axis, grid by grid."""
    import torch  # on use: the data layer imports this module and runs without torch

    if isinstance(batches[0], list):
        return [torch.cat(parts) for parts in zip(*batches)]
    return torch.cat(list(batches))


def length(x: Fields) -> int:
    """Number of samples."""
    return len(x[0]) if isinstance(x, list) else len(x)


def split_channels(x: Fields) -> list:
    """Every channel as its own ``(N, 1, H, W)`` tensor, in channel order (the late-fusion inputs)."""
    return [part[:, c:c + 1] for part in as_list(x) for c in range(part.shape[1])]


def stack(samples: Sequence[Fields]) -> Fields:
    """Stack tensor samples along a new first axis, grid by grid."""
    import torch  # on use, as in `cat`

    if isinstance(samples[0], list):
        return [torch.stack(parts) for parts in zip(*samples)]
    return torch.stack(list(samples))


def per_grid(values: Sequence, layout: Sequence[Grid]) -> list:
    """A per-channel sequence (e.g. normalisation statistics) cut into one piece per grid of ``layout``."""
    pieces, first = [], 0
    for grid in layout:
        pieces.append(values[first:first + len(grid.channels)])
        first += len(grid.channels)
    return pieces


def as_list(x: Fields) -> list:
    """The per-grid arrays: ``x`` itself if it is a list, else ``[x]``."""
    return x if isinstance(x, list) else [x]
