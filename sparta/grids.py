"""Fields whose variables lie on different grids.

Every variable may have its own grid (``data.variable_grids``, late fusion only). Variables that
share a grid form one :class:`Grid`, and a store lists its grids in the order their variables
first appear in ``data.variables``; its channels are that grouping's order. A batch of fields is
then one array ``(N, C, H, W)`` when there is a single grid, or a list of such arrays, one per
grid. The helpers below apply array operations to either form, so the data path, losses and
metrics are written once for both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

A = TypeVar("A")
Fields = Any  # a numpy array or torch tensor (N, C, H, W), or a list of them (one per grid)


#: Points per field a grid may have: 10x ERA5's native 0.25 degree grid (1440x721), or 0.1 degree (3600x1801). A
#: larger grid is refused when it is named, before anything allocates a field or a matrix of its size.
MAX_GRID_POINTS = 10_000_000


def parse_grid(grid: str, least: int = 2) -> tuple[int, int]:
    """``'64x32'`` (WeatherBench2's name: longitudes x latitudes) -> ``(n_lon, n_lat)``.

    Each axis needs ``least`` points (2 for a grid of cells; 1 for a pooling size such as ``model.pool=1x1``),
    and the grid at most :data:`MAX_GRID_POINTS`.
    """
    match = re.fullmatch(r"(\d+)x(\d+)", grid)
    if not match or int(match[1]) < least or int(match[2]) < least:
        points = "point" if least == 1 else "points"
        raise ValueError(f"grid '{grid}' is not of the form LONxLAT with at least {least} {points} each, e.g. 64x32")
    n_lon, n_lat = int(match[1]), int(match[2])
    if n_lon * n_lat > MAX_GRID_POINTS:
        raise ValueError(f"grid '{grid}' has {n_lon * n_lat:.3g} points per field, more than SPARTA handles "
                         f"({MAX_GRID_POINTS:.0e}; ERA5's native 0.25 degree grid, 1440x721, has 1.04e+06)")
    return n_lon, n_lat


def grid_coords(grid: str):
    """``'64x32'`` -> ``(lat ascending, lon)`` in degrees of the WeatherBench2 equiangular grid.

    Even LAT: cell centres without poles (64x32: -87.1875..87.1875 step 5.625); odd LAT
    (e.g. 240x121): both poles included. Longitudes start at 0 with step 360/LON.
    """
    n_lon, n_lat = parse_grid(grid)
    lon = np.arange(n_lon) * 360.0 / n_lon
    if n_lat % 2:
        lat = np.linspace(-90.0, 90.0, n_lat)
    else:
        step = 180.0 / n_lat
        lat = -90.0 + step / 2 + step * np.arange(n_lat)
    return lat, lon


def rename_lat_lon(ds):
    """An xarray Dataset or DataArray with ``latitude``/``longitude`` (WeatherBench2, CDS) renamed ``lat``/``lon``."""
    names = set(ds.dims) | set(ds.coords) | set(getattr(ds, "data_vars", ()))
    return ds.rename({k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in names})


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
        n_lon, n_lat = parse_grid(grid)
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
