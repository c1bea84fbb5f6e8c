"""Where a grid lies: the whole globe (WeatherBench2's equiangular grids) or a regional lat/lon box.

A global grid ``LONxLAT`` has the coordinates of :func:`sparta.grids.grid_coords`, longitudes
0..360 and periodic. A regional grid is ``LONxLAT`` points spread evenly over a box
``(lat_first, lat_last, lon_first, lon_last)`` of cell centres, both ends included (how the CDS
and most national services cut an area: ``[50, 58, -10, 2]`` at 49x33 is the 0.25 degree grid over
the British Isles). Longitudes of a box are kept monotonic across Greenwich: a box given as
``350..2`` (0..360 notation) becomes ``-10..2``, and a source in 0..360 is read in the box's frame,
so its points 350..359.75 come out as -10..-0.25, west of 0..2. A box does not wrap: nothing
periodic (longitude rolls, circular padding) may be applied to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparta.grids import grid_coords, parse_grid

#: Coordinates closer than this (degrees) are the same point.
TOL = 1e-3


@dataclass(frozen=True)
class Box:
    """A regional box of cell centres, latitude ascending, longitude monotonic (``lon_last > lon_first``)."""

    lat_first: float
    lat_last: float
    lon_first: float
    lon_last: float

    @classmethod
    def parse(cls, box: Sequence[float]) -> Box:
        """From ``data.box`` = ``[lat_first, lat_last, lon_first, lon_last]``; ``lon_last < lon_first`` crosses
        Greenwich in 0..360 notation (``350, 2``) and is made monotonic (``-10, 2``)."""
        if len(box) != 4:
            raise ValueError(f"data.box must be [lat_first, lat_last, lon_first, lon_last], got {list(box)}")
        lat0, lat1, lon0, lon1 = (float(v) for v in box)
        if not -90.0 <= lat0 < lat1 <= 90.0:
            raise ValueError(f"data.box latitudes must rise within -90..90 (lat_first < lat_last), got {lat0:g}..{lat1:g}")
        if not (-180.0 <= lon0 <= 360.0 and -180.0 <= lon1 <= 360.0):
            raise ValueError(f"data.box longitudes must lie in -180..360, got {lon0:g}..{lon1:g}")
        if lon1 <= lon0:  # crosses Greenwich (or the dateline) in its notation
            lon0 -= 360.0
        if lon1 - lon0 >= 360.0:
            raise ValueError(f"data.box spans {lon1 - lon0:g} degrees of longitude; a regional box spans less "
                             "than 360 (drop data.box for a global grid)")
        return cls(lat0, lat1, lon0, lon1)

    def coords(self, grid: str) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)`` of the ``LONxLAT`` grid over the box: evenly spaced, both ends included."""
        n_lon, n_lat = parse_grid(grid)
        return np.linspace(self.lat_first, self.lat_last, n_lat), np.linspace(self.lon_first, self.lon_last, n_lon)

    def as_list(self) -> list[float]:
        return [self.lat_first, self.lat_last, self.lon_first, self.lon_last]

    def label(self) -> str:
        return f"latitude {self.lat_first:g}..{self.lat_last:g}, longitude {self.lon_first:g}..{self.lon_last:g}"


def target_coords(grid: str, box: Box | None) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` of ``grid``: WeatherBench2's global equiangular grid, or evenly spaced over ``box``."""
    return grid_coords(grid) if box is None else box.coords(grid)


def to_frame(lon: np.ndarray, start: float) -> np.ndarray:
    """Longitudes moved by whole turns into ``[start, start + 360)`` (``-TOL`` of slack at the start)."""
    return (np.asarray(lon, dtype=np.float64) - (start - TOL)) % 360.0 + (start - TOL)


def lon_step(lon: np.ndarray) -> float:
    """The typical spacing of a set of longitudes (median of neighbouring gaps, on the circle)."""
    ring = np.sort(np.asarray(lon, dtype=np.float64) % 360.0)
    return float(np.median(np.diff(ring))) if ring.size > 1 else 360.0


def is_global_lon(lon: np.ndarray) -> bool:
    """Whether the longitudes go round the globe (their cells, one step each, sum to 360 degrees)."""
    return len(lon) * lon_step(lon) >= 360.0 - TOL


def contiguous_start(lon: np.ndarray) -> float:
    """The westernmost longitude of a regional set, in -180..180 when the set crosses Greenwich.

    The set is cut at its largest gap on the circle, so ``350..359.75, 0..2`` starts at 350 and reads
    monotonic from -10. A global set starts at its smallest value in 0..360.
    """
    ring = np.sort(np.asarray(lon, dtype=np.float64) % 360.0)
    if ring.size < 2 or is_global_lon(lon):
        return float(ring[0]) if ring.size else 0.0
    gaps = np.diff(np.concatenate([ring, ring[:1] + 360.0]))
    start = float(ring[(int(np.argmax(gaps)) + 1) % ring.size])
    end = start + 360.0 - float(gaps.max())
    if end > 360.0 + TOL or (start >= 180.0 and np.asarray(lon).min() < 0):  # crosses Greenwich, or given in -180..180
        start -= 360.0
    return start


def lat_edges(lat: np.ndarray) -> np.ndarray:
    """Cell edges of ascending latitudes: halfway between centres, half a step beyond the ends, clipped to the poles."""
    lat = np.asarray(lat, dtype=np.float64)
    step = (lat[-1] - lat[0]) / max(len(lat) - 1, 1)
    inner = (lat[1:] + lat[:-1]) / 2
    return np.clip(np.concatenate([[lat[0] - step / 2], inner, [lat[-1] + step / 2]]), -90.0, 90.0)


def describe(lat: np.ndarray, lon: np.ndarray) -> str:
    """``latitude 50..58, longitude -10..2, 49x33 points at 0.25x0.25 degrees`` of a source's grid."""
    lat = np.sort(np.asarray(lat, dtype=np.float64))
    start = contiguous_start(lon)
    lon = np.sort(to_frame(lon, start))
    d_lat = float(np.median(np.diff(lat))) if lat.size > 1 else 0.0
    return (f"latitude {lat[0]:g}..{lat[-1]:g}, longitude {lon[0]:g}..{lon[-1]:g}, {lon.size}x{lat.size} points "
            f"at {lon_step(lon):g}x{d_lat:g} degrees")


def is_gaussian_lat(lat: np.ndarray) -> bool:
    """Whether the latitudes are those of a Gaussian grid (spectral models' grids, e.g. SPEEDY's), in any order."""
    if len(lat) < 2:
        return False
    nodes, _ = np.polynomial.legendre.leggauss(len(lat))
    return bool(np.allclose(np.sort(lat), np.rad2deg(np.arcsin(nodes)), atol=1e-3))


def is_global(lat: np.ndarray, lon: np.ndarray) -> bool:
    """Whether a source's grid covers the sphere: round the globe in longitude and pole to pole in latitude."""
    lat = np.asarray(lat, dtype=np.float64)
    if is_gaussian_lat(lat):
        return is_global_lon(lon)
    d_lat = float(np.median(np.abs(np.diff(np.sort(lat))))) if lat.size > 1 else 0.0
    span = float(lat.max() - lat.min())
    return is_global_lon(lon) and (span + d_lat >= 180.0 - TOL or span >= 180.0 - TOL)
