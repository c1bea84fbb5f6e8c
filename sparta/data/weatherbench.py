"""Real data: read a WeatherBench2-schema store and write a prepared store from it.

The path is ``open_source`` -> ``select_fields`` -> ``to_daily`` -> ``prepare``. ERA5 as the
Copernicus CDS delivers it (netCDF or GRIB) is mapped to the same schema by ``sparta.data.cds``
and regridded conservatively when asked (``regrid=True``). Everything stays lazy (dask) until
``prepare`` computes one chunk of days at a time, so a 65-year record never sits in memory at once.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from sparta.data import cds
from sparta.data.store import DataError, PreparedStore, write_store
from sparta.data.synthetic import grid_coords
from sparta.data.variables import Variable, parse_variables

#: WeatherBench2 ERA5, 6-hourly, 1959-2023, conservatively regridded to 64 lon x 32 lat (the paper's data).
#: Public bucket; reading it needs ``gcsfs`` and network access.
WB2_64x32 = "gs://weatherbench2/datasets/era5/1959-2023_01_10-6h-64x32_equiangular_conservative.zarr"

_REMOTE = ("gs://", "gcs://", "s3://", "http://", "https://")
_NETCDF_ENGINES = ("netcdf4", "h5netcdf")  # netcdf4 (a dependency) reads netCDF3 and 4; h5netcdf if installed


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _open_zarr(source: str) -> xr.Dataset:
    # The WB2 bucket is public; without token="anon" gcsfs looks for Google credentials first.
    options = {"token": "anon"} if source.startswith(("gs://", "gcs://")) else None
    try:
        return xr.open_zarr(source, storage_options=options)
    except ImportError as err:
        raise DataError(f"cannot open '{source}': {_first_line(err)}; install the filesystem package "
                        "(gcsfs for gs:// URLs) or download the store and pass a local path") from None
    except Exception as err:  # noqa: BLE001 - zarr/fsspec raise many types; all mean "unreadable"
        raise DataError(f"cannot open '{source}' as a zarr store (tried xarray.open_zarr): {_first_line(err)}; "
                        "check the path or URL") from None


def _netcdf_files(source: str | Path | Sequence[str | Path]) -> list[str]:
    if isinstance(source, (str, Path)):
        text = str(source)
        files = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
    else:
        files = [str(f) for f in source]
    missing = [f for f in files if not Path(f).is_file()]
    if not files or missing:
        raise DataError(f"no such file: '{missing[0] if missing else source}'; pass a zarr directory or URL, "
                        "a netCDF or GRIB file, a glob of them or a list of them")
    return files


def _open_netcdf(files: list[str], label: str) -> xr.Dataset:
    tried = []
    for engine in _NETCDF_ENGINES:
        try:
            # Files split by time (one per year, say) are joined along time; grids must agree exactly.
            return xr.open_mfdataset(files, engine=engine, combine="by_coords", chunks={},
                                     data_vars="minimal", coords="minimal", compat="override", join="exact")
        except Exception as err:  # noqa: BLE001 - each engine fails in its own way; report them all
            tried.append(f"{engine}: {_first_line(err)}")
    raise DataError(f"cannot read '{label}' as netCDF (tried {'; '.join(tried)}); "
                    "check that it is a netCDF file, or pass a zarr directory")


def open_source(source: str | Path | Sequence[str | Path]) -> xr.Dataset:
    """Open a WeatherBench2-schema dataset lazily.

    ``source`` is a zarr directory or URL (``gs://`` is read anonymously), a netCDF or GRIB
    file, a glob of them, or a list of them (combined along their coordinates: files split by
    time, by variable, or both). CDS conventions are mapped by ``cds.normalise``.
    """
    if isinstance(source, (str, Path)):
        text = str(source)
        if text.startswith(_REMOTE) or text.rstrip("/").endswith(".zarr") or Path(text).is_dir():
            return _open_zarr(text)
    files = _netcdf_files(source)
    grib = [f for f in files if f.lower().endswith(cds.GRIB_SUFFIXES)]
    if grib and len(grib) != len(files):
        raise DataError(f"'{_label(source)}' mixes GRIB and other files; pass one format at a time")
    if grib:
        return cds.open_grib(files)
    ds = _open_netcdf(files, _label(source))
    return cds.normalise(ds) if cds.is_cds(ds) else ds


def _label(source: str | Path | Sequence[str | Path]) -> str:
    return str(source) if isinstance(source, (str, Path)) else ", ".join(str(s) for s in source)


def _check_grid(lat: np.ndarray, lon: np.ndarray, grid: str) -> None:
    try:
        exp_lat, exp_lon = grid_coords(grid)
    except ValueError as err:
        raise DataError(str(err)) from None
    n_lon, n_lat = len(exp_lon), len(exp_lat)
    if (len(lon), len(lat)) != (n_lon, n_lat):
        raise DataError(f"the store is on a {len(lon)}x{len(lat)} grid (lon x lat), expected {grid}; "
                        f"regrid it to the {grid} equiangular grid by passing data.regrid=true (conservative, "
                        f"as WeatherBench2 does) or set data.grid={len(lon)}x{len(lat)}")
    for name, have, want in (("latitudes", lat, exp_lat), ("longitudes", lon, exp_lon)):
        if not np.allclose(have, want, atol=1e-3):
            i = int(np.argmax(~np.isclose(have, want, atol=1e-3)))
            poles = "with poles" if n_lat % 2 else "cell centres without poles"
            raise DataError(f"the store's {name} do not match the {grid} equiangular grid ({poles}): "
                            f"value {i} is {have[i]:.4f}, expected {want[i]:.4f}; regrid the data onto that grid "
                            "by passing data.regrid=true")


def _select_one(ds: xr.Dataset, var: Variable) -> xr.DataArray:
    """``(time, lat, lon)`` field of one variable spec, with a fix-it message for each misuse."""
    if var.name not in ds.data_vars:
        have = ", ".join(sorted(map(str, ds.data_vars)))
        raise DataError(f"variable '{var.name}' is not in the store; it has: {have}; fix data.variables")
    field = ds[var.name]
    raw_levels = field["level"].values if "level" in field.dims else []
    levels = [int(x) if float(x).is_integer() else float(x) for x in raw_levels]
    if var.level is None and levels:
        example = 850 if 850 in levels else levels[0]
        raise DataError(f"'{var.name}' is on pressure levels {levels} hPa; name one, e.g. '{var.name}@{example}'")
    if var.level is not None and not levels:
        raise DataError(f"'{var.name}' is a surface variable without levels; use '{var.name}' instead of '{var.spec}'")
    if levels:
        if var.level not in levels:
            raise DataError(f"level {var.level} hPa of '{var.name}' is not in the store; it has levels "
                            f"{', '.join(map(str, levels))} hPa; pick one of those in data.variables")
        field = field.sel(level=var.level, drop=True)
    if set(field.dims) != {"time", "lat", "lon"}:
        raise DataError(f"'{var.spec}' has dims {field.dims}, expected time, lat, lon (and level); "
                        "select or average the extra dimensions first")
    return field.transpose("time", "lat", "lon").reset_coords(drop=True)


def select_fields(ds: xr.Dataset, variables: list[str], grid: str, regrid: bool = False) -> xr.DataArray:
    """Lazy ``(time, channel, lat, lon)`` array of ``variables`` (``name`` or ``name@level``).

    Dims are matched by name (stores differ in order), CDS conventions are mapped, latitude
    is made ascending and longitude 0..360, and the grid is checked against the equiangular
    ``grid``. With ``regrid``, the record is averaged to daily means (``to_daily``) and, when
    on another global regular grid, conservatively regridded onto ``grid`` (both steps are
    linear, so their order does not matter, and regridding days is up to 24x cheaper than hours).
    """
    try:
        specs = parse_variables(variables)
    except ValueError as err:
        raise DataError(str(err)) from None
    if cds.is_cds(ds):
        ds = cds.normalise(ds)
    ds = ds.rename({k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in ds.variables or k in ds.dims})
    if "time" not in ds.dims:
        raise DataError(f"the store has no 'time' dimension (dims: {', '.join(map(str, ds.dims))}); "
                        "it must be a time series of fields")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise DataError(f"the store's time coordinate has dtype {ds['time'].dtype}, not datetime64; "
                        "use a standard (Gregorian) calendar")
    if "lat" not in ds.dims or "lon" not in ds.dims:
        raise DataError(f"the store needs latitude and longitude dimensions, it has {', '.join(map(str, ds.dims))}")

    fields = [_select_one(ds, var) for var in specs]
    da = xr.concat(fields, dim=pd.Index([v.short for v in specs], name="channel"), join="exact")
    da = da.transpose("time", "channel", "lat", "lon").rename("fields")
    # Some sources use -180..180; the convention (and the grid check) is 0..360, latitude ascending.
    da = da.assign_coords(lon=da["lon"] % 360).sortby("lon").sortby("lat")
    if regrid:
        da = cds.regrid_conservative(to_daily(da), grid)
    _check_grid(da["lat"].values, da["lon"].values, grid)
    return da


def to_daily(da: xr.DataArray) -> xr.DataArray:
    """Daily means of a sub-daily record; daily (or coarser) input is returned unchanged.

    Incomplete days at either end (a record starting at 12 UTC, say) are dropped, since
    their mean would be biased by the diurnal cycle. The sub-daily step must be regular
    and divide a day, so only the end days can be incomplete. NaNs propagate (no skipna)
    so that ``write_store`` reports them instead of averaging them away.
    """
    times = da["time"].values
    if times.size < 2:
        return da
    steps = np.diff(times)
    if np.any(steps <= np.timedelta64(0)):
        i = int(np.argmax(steps <= np.timedelta64(0)))
        raise DataError(f"time axis is not strictly increasing at {times[i]} -> {times[i + 1]}; "
                        "sort the data by time and drop duplicates")
    step, day = steps[0], np.timedelta64(1, "D")
    if step >= day:
        return da
    if np.any(steps != step):
        i = int(np.argmax(steps != step))
        raise DataError(f"irregular time step: {times[i]} -> {times[i + 1]} after a step of {step}; "
                        "provide a regular sub-daily record without gaps")
    if day % step:
        raise DataError(f"time step {step} does not divide a day; resample to e.g. 6-hourly or daily first")
    per_day = int(day // step)
    days, first, counts = np.unique(times.astype("datetime64[D]"), return_index=True, return_counts=True)
    complete = np.flatnonzero(counts == per_day)
    if complete.size == 0:
        raise DataError(f"the record ({times[0]} .. {times[-1]}) holds no complete day of {per_day} samples")
    lo, hi = complete[0], complete[-1]
    da = da.isel(time=slice(first[lo], first[hi] + per_day))
    if da.chunks is not None:
        # dask's coarsen rechunks to tiny pieces unless time chunks hold whole days.
        size = max(da.chunksizes["time"])
        da = da.chunk(time=per_day * max(1, round(size / per_day)))
    # coarsen over whole days is blockwise (resample would make one task per day); np.mean,
    # unlike .mean(), keeps NaNs.
    daily = da.coarsen(time=per_day).reduce(np.mean)
    return daily.assign_coords(time=days[lo:hi + 1].astype(times.dtype))


def _chunks(da: xr.DataArray, chunk_days: int) -> Iterator[np.ndarray]:
    for start in range(0, da.sizes["time"], chunk_days):
        yield da.isel(time=slice(start, start + chunk_days)).values


def prepare(
    source: str | Path | Sequence[str | Path] | xr.Dataset,
    out: str | Path,
    variables: list[str],
    grid: str,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    progress: bool = True,
    chunk_days: int = 365,
    regrid: bool = False,
) -> PreparedStore:
    """Write the prepared store ``out`` from a WeatherBench2-schema or CDS source, ``chunk_days`` at a time.

    ``regrid`` conservatively regrids a source on another global regular grid onto ``grid``
    (see ``select_fields``); without it such a source is refused. Non-finite values make
    ``write_store`` raise a ``DataError`` naming the channel, count and first date; it is
    passed on unchanged.
    """
    if chunk_days < 1:
        raise DataError(f"chunk_days must be at least 1, got {chunk_days}")
    if isinstance(source, xr.Dataset):
        ds, label = source, str(source.attrs.get("source", "in-memory dataset"))
    else:
        ds, label = open_source(source), _label(source)
    try:
        daily = to_daily(select_fields(ds, variables, grid, regrid=regrid))
        with tqdm(total=daily.sizes["time"], unit="day", desc="preparing", disable=not progress) as bar:
            return write_store(out, _chunks(daily, chunk_days), daily["time"].values, variables,
                               daily["lat"].values, daily["lon"].values, label, split, progress=bar.update)
    finally:
        if ds is not source:
            ds.close()
