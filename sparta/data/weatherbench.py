"""Real data: read a WeatherBench2-schema store and write a prepared store from it.

The path is ``open_source`` -> ``select_fields`` -> ``to_daily`` -> ``prepare``. ERA5 as the
Copernicus CDS delivers it (netCDF or GRIB) is mapped to the same schema by ``sparta.data.cds``
and regridded conservatively when asked (``regrid=True``). Everything stays lazy (dask) until
``prepare`` computes one chunk of days at a time, so a 65-year record never sits in memory at once.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from sparta.data import cds
from sparta.domain import TOL, Box, contiguous_start, describe, is_global, is_global_lon, to_frame
from sparta.data.store import DataError, PreparedStore, write_store
from sparta.grids import grid_coords, rename_lat_lon
from sparta.data.units import conversion, level_scale
from sparta.data.variables import Variable, parse_variables

log = logging.getLogger(__name__)

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
            if len(files) > 1:
                reason = _misalignment(files, engine)
                if reason:
                    raise DataError(f"the files of '{label}' do not line up: {reason}") from None
    raise DataError(f"cannot read '{label}' as netCDF (tried {'; '.join(tried)}); "
                    "check that it is a netCDF file, or pass a zarr directory")


def _dates(times: np.ndarray) -> str:
    if times.size == 0:
        return "no dates"
    unit = "D" if np.all(times.astype("datetime64[D]") == times) else "h"
    first, last = (str(np.datetime64(t, unit)) for t in (times[0], times[-1]))
    return first if times.size == 1 else f"{first}..{last}"


def _misalignment(files: list[str], engine: str) -> str | None:
    """Why files that each open on their own do not combine: other grids, dates or variables. None if they
    do not all open (then they are not readable as netCDF with ``engine``) or nothing is found."""
    infos = []
    for path in files:
        try:
            with xr.open_dataset(path, engine=engine, chunks={}) as ds:
                ds = cds.normalise(ds) if cds.is_cds(ds) else ds
                times = np.sort(ds["time"].values) if "time" in ds.variables else np.array([], "datetime64[ns]")
                lat = next((ds.sizes[d] for d in ("lat", "latitude") if d in ds.dims), 0)
                lon = next((ds.sizes[d] for d in ("lon", "longitude") if d in ds.dims), 0)
                infos.append((Path(path).name, tuple(sorted(map(str, ds.data_vars))), times, f"{lon}x{lat}"))
        except Exception:  # noqa: BLE001 - this file is not readable with this engine: no diagnosis here
            return None
    grids = {info[3] for info in infos}
    if len(grids) > 1:
        return ("they are on different grids (" + ", ".join(f"{n}: {g}" for n, _, _, g in infos) + "); "
                "regrid them to one grid first")
    groups: dict[tuple[str, ...], list] = {}
    for info in infos:
        groups.setdefault(info[1], []).append(info)
    if len(groups) > 1:  # files split by variable: every variable must cover the same dates
        spans = {names: np.unique(np.concatenate([i[2] for i in members])) for names, members in groups.items()}
        reference = next(iter(spans.values()))
        if any(not np.array_equal(times, reference) for times in spans.values()):
            parts = [f"{', '.join(names)} ({', '.join(i[0] for i in groups[names])}) covers {_dates(times)}"
                     for names, times in spans.items()]
            return "; ".join(parts) + "; every variable must cover the same dates"
    for names, members in groups.items():  # files split by time: their dates must not overlap
        members = sorted(members, key=lambda i: i[2][0] if i[2].size else np.datetime64("NaT"))
        for a, b in zip(members, members[1:]):
            shared = np.intersect1d(a[2], b[2])
            if shared.size:
                return (f"{a[0]} ({_dates(a[2])}) and {b[0]} ({_dates(b[2])}) both hold {shared.size} date(s) "
                        f"from {_dates(shared[:1])} of {', '.join(names)}; each date must come from one file")
    return None


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


def _check_box_grid(lat: np.ndarray, lon: np.ndarray, grid: str, box: Box) -> None:
    """The source's points inside ``box`` must be the ``grid`` points over it; otherwise one line with both fixes."""
    exp_lat, exp_lon = box.coords(grid)
    if lat.size and lon.size and lat.shape == exp_lat.shape and lon.shape == exp_lon.shape \
            and np.allclose(lat, exp_lat, atol=TOL) and np.allclose(lon, exp_lon, atol=TOL):
        return
    asked = (f"data.grid={grid} over data.box ({box.label()}) asks for {exp_lon.size}x{exp_lat.size} points at "
             f"{_step(exp_lon):g}x{_step(exp_lat):g} degrees")
    if lat.size < 2 or lon.size < 2:
        raise DataError(f"{asked}, but the source has {lon.size}x{lat.size} points inside the box; choose a box "
                        "inside the source, or pass data.regrid=true to regrid it conservatively")
    keep = f"[{lat[0]:g},{lat[-1]:g},{lon[0]:g},{lon[-1]:g}]"
    raise DataError(f"{asked}, but the source's points inside the box are {lon.size}x{lat.size} at {_step(lon):g}x"
                    f"{_step(lat):g} degrees ({lat[0]:g}..{lat[-1]:g}, {lon[0]:g}..{lon[-1]:g}); pass data.regrid=true "
                    f"to regrid them conservatively, or keep them as they are with data.grid={lon.size}x{lat.size} "
                    f"'data.box={keep}'")


def _step(values: np.ndarray) -> float:
    return float((values[-1] - values[0]) / (len(values) - 1)) if len(values) > 1 else 0.0


def _select_one(ds: xr.Dataset, var: Variable, assume_units: bool = False) -> tuple[xr.DataArray, str]:
    """``(time, lat, lon)`` field of one variable spec in SPARTA's units, and those units; a fix-it message
    for each misuse."""
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
    units, conv = conversion(var.name, var.spec, field.attrs.get("units"), assume_units)
    field = field.transpose("time", "lat", "lon").reset_coords(drop=True)
    if (conv.scale != 1.0 or conv.offset != 0.0) and not np.issubdtype(field.dtype, np.floating):
        field = field.astype(np.float32)
    if conv.scale != 1.0:
        field = field * field.dtype.type(conv.scale)
    if conv.offset != 0.0:
        field = field + field.dtype.type(conv.offset)
    return field, units


def _select_member(ds: xr.Dataset, member: int | str | None) -> xr.Dataset:
    """One member (``data.member=N``) or the mean (``mean``) of an ensemble source (dimension ``number``)."""
    if "number" not in ds.dims:
        if member is not None:
            raise DataError(f"data.member={member} is set, but the source has no ensemble dimension 'number'; "
                            "drop data.member")
        return ds
    numbers = [int(n) for n in ds["number"].values]
    if member is None:
        raise DataError(f"the source holds {len(numbers)} ensemble members (dimension 'number': "
                        f"{', '.join(map(str, numbers[:10]))}{' ...' if len(numbers) > 10 else ''}); choose one with "
                        "data.member=N or average them with data.member=mean")
    if member == "mean":
        log.info("averaging the %d ensemble members (data.member=mean)", len(numbers))
        return ds.mean("number", keep_attrs=True)
    if member not in numbers:
        raise DataError(f"data.member={member} is not in the source; its members are "
                        f"{', '.join(map(str, numbers))} (or data.member=mean)")
    return ds.sel(number=member, drop=True)


def _check_domain(lat: np.ndarray, lon: np.ndarray, grid: str, box: Box | None) -> None:
    """A regional source needs a regional target: one line with the settings that prepare the box as it is."""
    if lat.size < 2 or lon.size < 2:
        raise DataError(f"the source has {lat.size} latitude(s) and {lon.size} longitude(s); a grid needs at "
                        "least 2 of each")
    if box is not None or is_global(lat, lon):
        return
    lat_s = np.sort(lat)
    lon_s = np.sort(to_frame(lon, contiguous_start(lon)))
    own = f"[{lat_s[0]:g},{lat_s[-1]:g},{lon_s[0]:g},{lon_s[-1]:g}]"
    raise DataError(f"the source covers a regional box ({describe(lat, lon)}), and data.grid={grid} without "
                    f"data.box is a global grid; prepare the box as it is with data.grid={lon.size}x{lat.size} "
                    f"'data.box={own}' (or another data.grid and data.box inside it, with data.regrid=true)")


def _box_frame(lon: np.ndarray, box: Box) -> float:
    """Where to cut the longitude circle so that the source reads monotonic around ``box``, in its notation.

    A global source is cut opposite the box (its points wrap into the box's frame: 350 -> -10 for a box
    from -10); a regional one at its own gap, moved by whole turns to the box's side of the circle.
    """
    if is_global_lon(lon):
        return box.lon_first - (360.0 - (box.lon_last - box.lon_first)) / 2
    start = contiguous_start(lon)
    span = float(np.ptp(to_frame(lon, start)))
    turns = round(((box.lon_first + box.lon_last) / 2 - (start + span / 2)) / 360.0)
    return start + 360.0 * turns


def _to_box(da: xr.DataArray, box: Box, regrid: bool) -> xr.DataArray:
    """The source in the box's longitude frame (monotonic, Greenwich crossed without a jump), latitude ascending;
    without ``regrid`` only its points inside the box (to within ``TOL``)."""
    da = da.assign_coords(lon=to_frame(da["lon"].values, _box_frame(da["lon"].values, box))).sortby("lon").sortby("lat")
    if regrid:
        return da
    lat, lon = da["lat"].values, da["lon"].values
    inside_lat = (lat >= box.lat_first - TOL) & (lat <= box.lat_last + TOL)
    inside_lon = (lon >= box.lon_first - TOL) & (lon <= box.lon_last + TOL)
    return da.isel(lat=np.flatnonzero(inside_lat), lon=np.flatnonzero(inside_lon))


def select_fields(ds: xr.Dataset, variables: list[str], grid: str, regrid: bool = False, *,
                  box: Sequence[float] | Box | None = None, assume_units: bool = False,
                  member: int | str | None = None) -> xr.DataArray:
    """Lazy ``(time, channel, lat, lon)`` array of ``variables`` (``name`` or ``name@level``).

    Dims are matched by name (stores differ in order), CDS conventions are mapped, latitude
    is made ascending and longitude 0..360, and the grid is checked against the equiangular
    ``grid``. With a regional ``box`` (``[lat_first, lat_last, lon_first, lon_last]``, see
    ``sparta.domain``) the target is ``grid`` points spread over the box instead: longitudes are
    read in the box's frame (monotonic across Greenwich) and the source's points inside the box are
    taken. A regional source without ``box`` is refused, naming the box that prepares it as it is.
    With ``regrid``, the record is averaged to daily means (``to_daily``) and, when on another
    regular grid, conservatively regridded onto the target (both steps are linear, so their order
    does not matter, and regridding days is up to 24x cheaper than hours).

    Values come out in SPARTA's units (``sparta.data.units``; ``assume_units`` accepts missing or
    unknown ones), pressure levels in hPa, and one ensemble ``member`` (or the mean) of an ensemble.
    The result's attrs hold ``units`` (one per channel) and, after averaging, ``time_aggregation``.
    """
    try:
        specs = parse_variables(variables)
    except ValueError as err:
        raise DataError(str(err)) from None
    if cds.is_cds(ds):
        ds = cds.normalise(ds)
    ds = rename_lat_lon(ds)
    if "time" not in ds.dims:
        raise DataError(f"the store has no 'time' dimension (dims: {', '.join(map(str, ds.dims))}); "
                        "it must be a time series of fields")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise DataError(f"the store's time coordinate has dtype {ds['time'].dtype}, not datetime64; "
                        "use a standard (Gregorian) calendar")
    if "lat" not in ds.dims or "lon" not in ds.dims:
        raise DataError(f"the store needs latitude and longitude dimensions, it has {', '.join(map(str, ds.dims))}")
    try:
        region = box if box is None or isinstance(box, Box) else Box.parse(box)
    except ValueError as err:
        raise DataError(str(err)) from None
    _check_domain(ds["lat"].values, ds["lon"].values, grid, region)
    ds = _select_member(ds, member)
    if "level" in ds.variables:
        scale = level_scale(ds["level"].attrs.get("units"))
        if scale != 1.0:
            log.info("pressure levels are in %s: converting them to hPa", ds["level"].attrs.get("units"))
            ds = ds.assign_coords(level=ds["level"] * scale)

    selected = [_select_one(ds, var, assume_units) for var in specs]
    da = xr.concat([f for f, _ in selected], dim=pd.Index([v.short for v in specs], name="channel"), join="exact")
    da = da.transpose("time", "channel", "lat", "lon").rename("fields")
    if region is None:
        # Some sources use -180..180; the convention (and the grid check) is 0..360, latitude ascending.
        da = da.assign_coords(lon=da["lon"] % 360).sortby("lon").sortby("lat")
    else:
        da = _to_box(da, region, regrid)
    attrs = {}
    if regrid:
        daily = to_daily(da)
        attrs = dict(daily.attrs)
        da = cds.regrid_conservative(daily, grid, region)
    if region is None:
        _check_grid(da["lat"].values, da["lon"].values, grid)
    else:
        _check_box_grid(da["lat"].values, da["lon"].values, grid, region)
    da.attrs.update(attrs, units=[u for _, u in selected])
    return da


def to_daily(da: xr.DataArray) -> xr.DataArray:
    """Daily means of a sub-daily record; daily (or coarser) input is returned unchanged.

    Incomplete days at either end (a record starting at 12 UTC, say) are dropped, since
    their mean would be biased by the diurnal cycle. The sub-daily step must be regular
    and divide a day, so only the end days can be incomplete. NaNs propagate (no skipna)
    so that ``write_store`` reports them instead of averaging them away.
    """
    times = da["time"].values
    if times.size < 2 or "time_aggregation" in da.attrs:  # one day, or already daily
        return da
    steps = np.diff(times)
    if np.any(steps <= np.timedelta64(0)):
        i = int(np.argmax(steps <= np.timedelta64(0)))
        raise DataError(f"time axis is not strictly increasing at {times[i]} -> {times[i + 1]}; "
                        "sort the data by time and drop duplicates")
    step, day = steps[0], np.timedelta64(1, "D")
    if step >= day:
        return da.assign_attrs(time_aggregation=_daily_label(times))
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
    hours = step / np.timedelta64(1, "h")
    return daily.assign_coords(time=days[lo:hi + 1].astype(times.dtype)).assign_attrs(
        da.attrs, time_aggregation=f"daily mean of {per_day} samples per day (every {hours:g} h)")


def _daily_label(times: np.ndarray) -> str:
    """How daily (or coarser) input was aggregated in time, as far as its time stamps tell; warns when the
    values are single instantaneous samples of the day rather than daily means."""
    of_day = (times - times.astype("datetime64[D]")).astype("timedelta64[m]").astype(np.int64)
    if not np.any(of_day):
        return "daily values as given (time stamps at 00 UTC, taken as daily means)"
    clock = sorted({f"{m // 60:02d}:{m % 60:02d}" for m in np.unique(of_day)})
    label = f"instantaneous: one sample per day at {', '.join(clock)} UTC, not a daily mean"
    log.warning("the source has one time per day at %s UTC: these are instantaneous samples, not daily means; "
                "the store records them as such (time_aggregation). For daily means give sub-daily data (e.g. "
                "6-hourly), which SPARTA averages", ", ".join(clock))
    return label


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
    *,
    assume_units: bool = False,
    member: int | str | None = None,
    overwrite: bool = False,
    box: Sequence[float] | None = None,
) -> PreparedStore:
    """Write the prepared store ``out`` from a WeatherBench2-schema or CDS source, ``chunk_days`` at a time.

    ``regrid`` conservatively regrids a source on another regular grid onto ``grid`` (over the
    regional ``box`` when given; see ``select_fields``); without it such a source is refused. Non-finite values make
    ``write_store`` raise a ``DataError`` naming the channel, count and first date; it is
    passed on unchanged. ``assume_units`` and ``member`` are passed to ``select_fields``; the store
    records the units, the time aggregation and the member. An existing store at ``out`` is replaced
    only with ``overwrite``, and a directory that is not a SPARTA store never.
    """
    if chunk_days < 1:
        raise DataError(f"chunk_days must be at least 1, got {chunk_days}")
    if isinstance(source, xr.Dataset):
        ds, label = source, str(source.attrs.get("source", "in-memory dataset"))
    else:
        ds, label = open_source(source), _label(source)
    try:
        daily = to_daily(select_fields(ds, variables, grid, regrid=regrid, box=box, assume_units=assume_units,
                                       member=member))
        extra = {} if member is None else {"member": member}
        if "provenance" in ds.attrs:  # a generated source's model, version and settings
            extra["provenance"] = json.loads(ds.attrs["provenance"])
        if box is not None:
            extra["box"] = Box.parse(box).as_list()
        with tqdm(total=daily.sizes["time"], unit="day", desc="preparing", disable=not progress) as bar:
            return write_store(out, _chunks(daily, chunk_days), daily["time"].values, variables,
                               daily["lat"].values, daily["lon"].values, label, split, progress=bar.update,
                               units=list(daily.attrs["units"]), time_aggregation=daily.attrs.get("time_aggregation", "daily values as given"),
                               extra=extra, overwrite=overwrite)
    finally:
        if ds is not source:
            ds.close()
