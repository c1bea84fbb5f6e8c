"""ERA5 as the Copernicus CDS delivers it -> the WeatherBench2 schema, and conservative regridding.

CDS downloads differ from WeatherBench2 stores in names and layout, not content:

* short variable names (``t2m``, ``z``, ``u``, ...) instead of long ones;
* netCDF before 2024: ``time`` and ``level``; packed int16 (xarray unpacks it and turns
  ``_FillValue``/``missing_value`` into NaN); ERA5/ERA5T mixes carry an ``expver`` dimension;
* netCDF since 2024: ``valid_time`` and ``pressure_level``, plus ``expver``/``number`` coords;
* GRIB (read by cfgrib): ``isobaricInhPa``, ``valid_time``, one dataset per level type.

``normalise`` maps all of these to ``time``/``level`` and long names; ``select_fields`` in
``sparta.data.weatherbench`` then makes latitude ascending and longitude 0..360 (or monotonic over a
regional box), and with ``regrid=True`` calls ``regrid_conservative`` when the source grid is not the
target grid.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import reduce

import numpy as np
import xarray as xr

from sparta.domain import Box, is_gaussian_lat, is_global_lon, target_coords
from sparta.data.store import DataError
from sparta.data.variables import SHORT_NAMES

#: CDS/ECMWF short name -> WeatherBench2 long name (``t2m`` -> ``2m_temperature``).
CDS_NAMES = {short: long for long, short in SHORT_NAMES.items()}
GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2")
_LEVEL_DIMS = ("pressure_level", "isobaricInhPa")
_CDS_COORDS = ("valid_time", "expver", *_LEVEL_DIMS)


def is_cds(ds: xr.Dataset) -> bool:
    """Whether ``ds`` uses CDS/cfgrib names (short variable names or CDS coordinates)."""
    return any(name in ds.data_vars for name in CDS_NAMES) or any(name in ds.variables for name in _CDS_COORDS)


def normalise(ds: xr.Dataset) -> xr.Dataset:
    """Rename a CDS netCDF (old or 2024+ convention) or cfgrib dataset to the WeatherBench2 schema.

    Dims become ``time`` and ``level`` (hPa), short names become long ones, a single ensemble
    member is squeezed (several stay, for ``data.member``), ERA5/ERA5T halves along ``expver`` are combined (the non-NaN one
    wins), and auxiliary coordinates (``expver``, ``number``, ``step``, cfgrib's level markers)
    are dropped. Latitude order and longitude range are left to ``select_fields``.
    """
    ds = ds.rename({s: long for s, long in CDS_NAMES.items() if s in ds.data_vars and long not in ds.data_vars})
    valid = ds.variables.get("valid_time")
    if valid is not None and valid.ndim == 1 and "valid_time" not in ds.dims:
        ds = ds.swap_dims({valid.dims[0]: "valid_time"})  # cfgrib's default: valid_time along time
    if "valid_time" in ds.dims:
        ds = ds.drop_vars([n for n in ("time", "step") if n in ds.variables]).rename(valid_time="time")
    for name in _LEVEL_DIMS:
        if name in ds.variables:
            # cfgrib gives a single level as a scalar coordinate; make it a dimension of length 1.
            ds = (ds.expand_dims(name) if ds[name].ndim == 0 else ds).rename({name: "level"})
    if "number" in ds.dims and ds.sizes["number"] == 1:
        ds = ds.isel(number=0)  # several members stay: select_fields takes data.member
    if "expver" in ds.dims:
        ds = reduce(lambda a, b: a.fillna(b), [ds.isel(expver=i, drop=True) for i in range(ds.sizes["expver"])])
    return ds.reset_coords(drop=True)


def open_grib(files: Sequence[str]) -> xr.Dataset:
    """Open GRIB files lazily with cfgrib and combine them into one normalised dataset.

    cfgrib splits a file into one dataset per level type (surface, 2 m, pressure levels);
    they are merged with an outer join, so a variable missing at a level or time comes out
    NaN and is reported by the NaN check of ``write_store``.
    """
    try:
        import cfgrib
    except (ImportError, RuntimeError) as err:  # RuntimeError: the ecCodes library itself is missing
        raise DataError(f"reading GRIB needs cfgrib and ecCodes ({type(err).__name__}: {err}); "
                        "`pip install cfgrib eccodes`, or download netCDF from the CDS instead") from None
    parts = []
    # cfgrib scans a file once per level type; a scratch index spares the rescans without
    # writing .idx files next to the data (the opened datasets keep their index in memory).
    with tempfile.TemporaryDirectory(prefix="sparta-grib-") as scratch:
        for i, path in enumerate(files):
            # Index by valid time, so forecast steps of accumulated fields land on their hour.
            options = {"time_dims": ("valid_time",), "indexpath": f"{scratch}/{i}.{{short_hash}}.idx"}
            try:
                parts += cfgrib.open_datasets(path, backend_kwargs=options, chunks={})
            except Exception as err:  # noqa: BLE001 - cfgrib/ecCodes raise many types; all mean "unreadable"
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise DataError(f"cannot read '{path}' as GRIB (cfgrib): {type(err).__name__}: {first}; "
                                "check that it is a GRIB file") from None
    return xr.combine_by_coords([normalise(p) for p in parts], data_vars="minimal", coords="minimal",
                                compat="override", join="outer", combine_attrs="drop_conflicts")


def gaussian_latitude_edges(n_lat: int) -> np.ndarray:
    """Cell edges (degrees, ascending) of the ``n_lat``-point Gaussian grid: each cell's area is its quadrature weight."""
    _, weights = np.polynomial.legendre.leggauss(n_lat)
    sin_edges = np.concatenate([[-1.0], -1.0 + np.cumsum(weights[:-1]), [1.0]])  # the weights sum to 2
    return np.rad2deg(np.arcsin(np.clip(sin_edges, -1.0, 1.0)))


def _edges(centres: np.ndarray, name: str, grid: str) -> np.ndarray:
    """Cell edges of a regular axis (halfway between centres, latitude clipped to the poles) or of Gaussian latitudes."""
    n = len(centres)
    if name == "latitude" and n >= 2 and is_gaussian_lat(centres) and centres[0] < centres[-1]:
        return gaussian_latitude_edges(n)
    step = (centres[-1] - centres[0]) / max(n - 1, 1)
    if n < 2 or not np.allclose(np.diff(centres), step, atol=1e-4):
        raise DataError(f"cannot regrid: the source {name}s are neither regularly spaced (step {step:.4f}) nor "
                        f"Gaussian; only regular and Gaussian lat-lon grids are supported, regrid the data to {grid} "
                        "yourself")
    edges = np.concatenate([[centres[0] - step / 2], (centres[1:] + centres[:-1]) / 2, [centres[-1] + step / 2]])
    return np.clip(edges, -90.0, 90.0) if name == "latitude" else edges


def _overlap(src: np.ndarray, dst: np.ndarray, period: float | None = None) -> np.ndarray:
    """``(dst cell, src cell)`` lengths of overlap of two sets of 1-D cells given by their edges."""
    shifts = (0.0,) if period is None else (-period, 0.0, period)
    lo, hi = dst[:-1, None], dst[1:, None]
    return sum(np.clip(np.minimum(hi, src[None, 1:] + s) - np.maximum(lo, src[None, :-1] + s), 0.0, None)
               for s in shifts)


def _check_covered(covered: np.ndarray, width: np.ndarray, name: str, src: np.ndarray, dst: np.ndarray,
                   grid: str, box: Box | None, deg=lambda e: e) -> None:
    """Refuse a target whose cells reach beyond the source along one axis (nothing to average there)."""
    short = np.flatnonzero(covered < width * (1 - 1e-6) - 1e-12)
    if not short.size:
        return
    where = f"the {grid} grid over data.box ({box.label()})" if box is not None else f"the global {grid} grid"
    have = f"{round(deg(src[0]), 4):g}..{round(deg(src[-1]), 4):g}"
    need = f"{round(deg(dst[0]), 4):g}..{round(deg(dst[-1]), 4):g}"
    fix = ("choose data.box (and data.grid) so that its cells lie inside the source" if box is not None else
           "set data.box to a box inside the source (with data.grid, its number of points) to prepare a regional grid")
    raise DataError(f"cannot regrid: the source's cells cover {name} {have} (cell edges), but the cells of {where} "
                    f"span {need}; {fix}")


def regrid_conservative(da: xr.DataArray, grid: str, box: Box | None = None) -> xr.DataArray:
    """Area-weighted conservative regridding of ``(..., lat, lon)`` onto ``grid``: WeatherBench2's global
    equiangular grid, or ``grid`` points spread over the regional ``box`` (``sparta.domain``).

    ``da`` must be on a regular or Gaussian lat-lon grid, latitude ascending and longitude monotonic (as
    ``select_fields`` leaves it: 0..360 for a global target, the box's frame for a box). Each target cell
    is the mean of the source cells it overlaps, weighted by overlap area on the sphere, so area means are
    preserved. Longitudes wrap only when the source goes round the globe; a target cell reaching beyond
    the source (a global grid from a regional source, a box larger than the source) is refused. A target
    cell that overlaps a NaN is NaN. ``da`` is returned as is when already on the target grid.
    """
    try:
        lat_t, lon_t = target_coords(grid, box)
    except ValueError as err:
        raise DataError(str(err)) from None
    lat_s, lon_s = da["lat"].values.astype(np.float64), da["lon"].values.astype(np.float64)
    same_shape = lat_s.shape == lat_t.shape and lon_s.shape == lon_t.shape
    if same_shape and np.allclose(lat_s, lat_t, atol=1e-3) and np.allclose(lon_s, lon_t, atol=1e-3):
        return da
    # The area of a lat-lon cell is proportional to its extent in sin(latitude) times its extent in longitude.
    sin_s, sin_t = (np.sin(np.deg2rad(_edges(lat, "latitude", grid))) for lat in (lat_s, lat_t))
    w_lat = _overlap(sin_s, sin_t)
    _check_covered(w_lat.sum(axis=1), np.diff(sin_t), "latitude", sin_s, sin_t, grid, box,
                   deg=lambda e: float(np.rad2deg(np.arcsin(np.clip(e, -1, 1)))))
    edges_s, edges_t = _edges(lon_s, "longitude", grid), _edges(lon_t, "longitude", grid)
    w_lon = _overlap(edges_s, edges_t, period=360.0 if is_global_lon(lon_s) else None)
    _check_covered(w_lon.sum(axis=1), np.diff(edges_t), "longitude", edges_s, edges_t, grid, box)
    w_lat = (w_lat / w_lat.sum(axis=1, keepdims=True)).astype(da.dtype)
    w_lon_t = (w_lon / w_lon.sum(axis=1, keepdims=True)).T.astype(da.dtype)

    def apply(x: np.ndarray) -> np.ndarray:
        bad = np.isnan(x)
        out = w_lat @ np.where(bad, 0, x) @ w_lon_t  # NaN * 0 weight would spread NaN to every cell
        if bad.any():
            out[(w_lat @ bad @ w_lon_t) > 0] = np.nan
        return out

    if da.chunks is not None:
        da = da.chunk(lat=-1, lon=-1)
    out = xr.apply_ufunc(apply, da, input_core_dims=[["lat", "lon"]], output_core_dims=[["lat", "lon"]],
                         exclude_dims={"lat", "lon"}, dask="parallelized", output_dtypes=[da.dtype],
                         dask_gufunc_kwargs={"output_sizes": {"lat": len(lat_t), "lon": len(lon_t)}})
    return out.assign_coords(lat=lat_t, lon=lon_t)
