"""WeatherBench2-schema stores -> prepared store: layout, daily means, statistics, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sparta.data.store import DataError, PreparedStore
from sparta.data.units import UNITS
from sparta.data.weatherbench import open_source, prepare, select_fields, to_daily

VARIABLES = ["2m_temperature", "geopotential@850", "u_component_of_wind@850",
             "v_component_of_wind@850", "specific_humidity@850"]
WB2_NAMES = ["2m_temperature", "geopotential", "u_component_of_wind", "v_component_of_wind", "specific_humidity"]
CHANNELS = ["t2m", "z850", "u850", "v850", "q850"]
LAT_64x32 = -87.1875 + 5.625 * np.arange(32)
LON_64x32 = 5.625 * np.arange(64)


def _grid(n_lon: int, n_lat: int) -> tuple[np.ndarray, np.ndarray]:
    step = 180.0 / n_lat
    return -90.0 + step / 2 + step * np.arange(n_lat), np.arange(n_lon) * 360.0 / n_lon


def _value(k: int, level: float, hours: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Known field (time, lon, lat): a trend in time plus a pattern that differs along lat and lon."""
    return (10.0 * k + level / 100 + (k + 1) * hours[:, None, None] / 24
            + (k + 2) * np.sin(np.deg2rad(lat))[None, None, :] + lon[None, :, None] / 360)


def wb2_dataset(days: int = 40, start: str = "2000-01-01T00", n_lon: int = 64, n_lat: int = 32,
                levels: tuple[int, ...] = (500, 850), step_hours: int = 6) -> xr.Dataset:
    """A store with WeatherBench2's names and dims: (time, [level,] longitude, latitude), latitude ascending."""
    times = np.datetime64(start, "ns") + np.arange(days * 24 // step_hours) * np.timedelta64(step_hours, "h")
    hours = (times - np.datetime64("2000-01-01", "ns")) / np.timedelta64(1, "h")
    lat, lon = _grid(n_lon, n_lat)
    data = {"2m_temperature": (("time", "longitude", "latitude"), _value(0, 0, hours, lon, lat))}
    for k, name in enumerate(WB2_NAMES[1:], start=1):
        stacked = np.stack([_value(k, lev, hours, lon, lat) for lev in levels], axis=1)
        data[name] = (("time", "level", "longitude", "latitude"), stacked)
    coords = {"time": times, "level": np.array(levels, dtype=np.int64), "longitude": lon, "latitude": lat}
    ds = xr.Dataset(data, coords=coords)
    for name in WB2_NAMES:  # WeatherBench2 stores carry CF units
        ds[name].attrs["units"] = UNITS[name][0]
    return ds


def expected_daily(ds: xr.DataArray | xr.Dataset, per_day: int = 4) -> np.ndarray:
    """Hand-computed daily means (day, channel, lat, lon) of the 850 hPa / surface fields of ``ds``."""
    out = []
    for name in WB2_NAMES:
        field = ds[name] if name == "2m_temperature" else ds[name].sel(level=850)
        raw = field.transpose("time", "latitude", "longitude").values
        out.append(raw.reshape(-1, per_day, *raw.shape[1:]).mean(axis=1))
    return np.stack(out, axis=1)


def write_zarr(ds: xr.Dataset, path: Path) -> str:
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w")  # WB2 stores are zarr v2
    return str(path)


@pytest.fixture(scope="module")
def base() -> xr.Dataset:
    return wb2_dataset()


@pytest.fixture(scope="module")
def zarr_store(base: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> PreparedStore:
    root = tmp_path_factory.mktemp("wb2")
    source = write_zarr(base, root / "era5.zarr")
    return prepare(source, root / "prepared", VARIABLES, "64x32", progress=False)


# --- round trips ---------------------------------------------------------------------------------

def test_zarr_round_trip(zarr_store: PreparedStore, base: xr.Dataset) -> None:
    s = zarr_store
    assert s.fields.shape == (40, 5, 32, 64)
    assert s.channels == CHANNELS and s.variables == VARIABLES
    np.testing.assert_allclose(s.fields, expected_daily(base), rtol=1e-6)
    np.testing.assert_allclose(s.lat, LAT_64x32)
    np.testing.assert_allclose(s.lon, LON_64x32)
    assert s.times[0] == np.datetime64("2000-01-01") and s.times[-1] == np.datetime64("2000-02-09")
    assert s.source.endswith("era5.zarr")


def test_netcdf_file_glob_and_list_match_zarr(zarr_store: PreparedStore, base: xr.Dataset, tmp_path: Path) -> None:
    single = tmp_path / "era5.nc"
    base.to_netcdf(single, engine="netcdf4")
    parts = [tmp_path / "part_a.nc", tmp_path / "part_b.nc"]
    base.isel(time=slice(0, 80)).to_netcdf(parts[0], engine="netcdf4")
    base.isel(time=slice(80, None)).to_netcdf(parts[1], engine="netcdf4")
    for i, source in enumerate([str(single), str(tmp_path / "part_*.nc"), [str(p) for p in parts]]):
        store = prepare(source, tmp_path / f"out{i}", VARIABLES, "64x32", progress=False)
        np.testing.assert_array_equal(store.fields, zarr_store.fields)
        np.testing.assert_array_equal(store.times, zarr_store.times)
    assert store.source == f"{parts[0]}, {parts[1]}"


def test_in_memory_source_label(base: xr.Dataset, tmp_path: Path) -> None:
    small = base.isel(time=slice(0, 40))
    assert prepare(small, tmp_path / "a", VARIABLES, "64x32", progress=False).source == "in-memory dataset"
    labelled = small.assign_attrs(source="ERA5 snippet")
    assert prepare(labelled, tmp_path / "b", VARIABLES, "64x32", progress=False).source == "ERA5 snippet"


def test_chunked_writing_matches_one_chunk(zarr_store: PreparedStore, base: xr.Dataset, tmp_path: Path) -> None:
    store = prepare(base, tmp_path / "chunked", VARIABLES, "64x32", progress=True, chunk_days=7)
    np.testing.assert_array_equal(store.fields, zarr_store.fields)
    np.testing.assert_array_equal(store.mean, zarr_store.mean)


# --- layout ----------------------------------------------------------------------------------------

def test_select_fields_layout_is_lazy(base: xr.Dataset, tmp_path: Path) -> None:
    da = select_fields(open_source(write_zarr(base, tmp_path / "s.zarr")), VARIABLES, "64x32")
    assert da.dims == ("time", "channel", "lat", "lon")
    assert list(da["channel"].values) == CHANNELS
    assert da.chunks is not None  # dask-backed: nothing read yet


def test_dim_order_and_latitude_direction_do_not_matter(base: xr.Dataset) -> None:
    reference = select_fields(base, VARIABLES, "64x32").compute()
    shuffled = base.transpose("latitude", "level", "time", "longitude").isel(latitude=slice(None, None, -1))
    assert shuffled["latitude"].values[0] > 0 and shuffled["2m_temperature"].dims[0] == "latitude"
    xr.testing.assert_identical(select_fields(shuffled, VARIABLES, "64x32").compute(), reference)


def test_longitudes_from_minus_180_are_wrapped(base: xr.Dataset) -> None:
    reference = select_fields(base, VARIABLES, "64x32").compute()
    shifted = base.roll(longitude=32, roll_coords=True)
    shifted = shifted.assign_coords(longitude=(shifted["longitude"] + 180) % 360 - 180)
    assert shifted["longitude"].values[0] == -180
    xr.testing.assert_identical(select_fields(shifted, VARIABLES, "64x32").compute(), reference)


# --- daily means -----------------------------------------------------------------------------------

def test_daily_means_equal_hand_computed(base: xr.Dataset) -> None:
    daily = to_daily(select_fields(base, VARIABLES, "64x32"))
    np.testing.assert_allclose(daily.values, expected_daily(base), rtol=1e-12)
    # t2m at one point: the mean of hours 24d + {0, 6, 12, 18} is 24d + 9, i.e. day d + 0.375.
    lat, lon = LAT_64x32[3], LON_64x32[5]
    want = np.arange(40) + 0.375 + 2 * np.sin(np.deg2rad(lat)) + lon / 360
    np.testing.assert_allclose(daily.sel(channel="t2m").isel(lat=3, lon=5).values, want, rtol=1e-12)
    np.testing.assert_array_equal(daily["time"].values, np.arange("2000-01-01", "2000-02-10", dtype="datetime64[D]"))


def test_daily_input_is_unchanged() -> None:
    ds = wb2_dataset(days=10, n_lon=8, n_lat=4, step_hours=24)
    da = select_fields(ds, VARIABLES, "8x4")
    daily = to_daily(da)
    xr.testing.assert_equal(daily, da)  # the same values and coordinates, only labelled
    assert daily.attrs["time_aggregation"].startswith("daily values as given")


def test_incomplete_days_at_the_ends_are_dropped() -> None:
    # 12 UTC on Jan 1 to 06 UTC on Jan 11: Jan 1 and Jan 11 have 2 of 4 samples each.
    ds = wb2_dataset(days=10, start="2000-01-01T12", n_lon=8, n_lat=4)
    daily = to_daily(select_fields(ds, VARIABLES, "8x4"))
    np.testing.assert_array_equal(daily["time"].values, np.arange("2000-01-02", "2000-01-11", dtype="datetime64[D]"))
    np.testing.assert_allclose(daily.values, expected_daily(ds.isel(time=slice(2, -2))), rtol=1e-12)


def test_irregular_sub_daily_step_is_refused() -> None:
    ds = wb2_dataset(days=5, n_lon=8, n_lat=4)
    gappy = ds.isel(time=[i for i in range(ds.sizes["time"]) if i != 9])
    with pytest.raises(DataError, match=r"irregular time step: 2000-01-03T0?0?.*2000-01-03T12"):
        to_daily(select_fields(gappy, VARIABLES, "8x4"))


# --- statistics, split, seasons ----------------------------------------------------------------------

def test_mean_std_from_train_split_only(zarr_store: PreparedStore) -> None:
    train = np.asarray(zarr_store.fields[:24], dtype=np.float64)
    np.testing.assert_allclose(zarr_store.mean, train.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(zarr_store.std, train.std(axis=(0, 2, 3)), rtol=1e-5)
    whole = np.asarray(zarr_store.fields, dtype=np.float64).mean(axis=(0, 2, 3))
    assert np.all(np.abs(whole - zarr_store.mean) > 1)  # every channel trends, so the splits differ


def test_split_is_chronological_60_20_20(zarr_store: PreparedStore) -> None:
    assert zarr_store.splits == {"train": (0, 24), "val": (24, 32), "test": (32, 40)}
    assert np.all(np.diff(zarr_store.times.astype(np.int64)) == 1)


def test_season_labels(tmp_path: Path) -> None:
    ds = wb2_dataset(days=366, n_lon=8, n_lat=4, step_hours=24)
    store = prepare(ds, tmp_path / "year", VARIABLES, "8x4", progress=False)
    season_of_month = {12: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 11: 3}
    months = [int(str(t)[5:7]) for t in store.times]
    np.testing.assert_array_equal(store.seasons, [season_of_month[m] for m in months])
    by_date = dict(zip(store.times.astype(str), store.seasons))
    assert [by_date[d] for d in ("2000-02-29", "2000-03-01", "2000-05-31", "2000-06-01",
                                 "2000-09-01", "2000-11-30", "2000-12-01")] == [0, 1, 1, 2, 3, 3, 0]


# --- errors ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small() -> xr.Dataset:
    return wb2_dataset(days=10, n_lon=8, n_lat=4, levels=(500, 700))


def test_missing_variable_lists_what_the_store_has(small: xr.Dataset) -> None:
    with pytest.raises(DataError, match="'temperature' is not in the store; it has: 2m_temperature, geopotential, "
                                        "specific_humidity, u_component_of_wind, v_component_of_wind"):
        select_fields(small, ["2m_temperature", "temperature@700"], "8x4")


def test_missing_level_lists_the_levels(small: xr.Dataset) -> None:
    with pytest.raises(DataError, match="level 850 hPa of 'geopotential' is not in the store; it has levels 500, 700"):
        select_fields(small, VARIABLES, "8x4")


def test_level_given_to_surface_variable_and_missing_on_level_variable(small: xr.Dataset) -> None:
    with pytest.raises(DataError, match="'2m_temperature' is a surface variable.*use '2m_temperature'"):
        select_fields(small, ["2m_temperature@850"], "8x4")
    with pytest.raises(DataError, match=r"'geopotential' is on pressure levels \[500, 700\].*'geopotential@500'"):
        select_fields(small, ["geopotential"], "8x4")


def test_wrong_grid_size_mentions_regridding(small: xr.Dataset) -> None:
    with pytest.raises(DataError, match="store is on a 8x4 grid .*expected 64x32; regrid"):
        select_fields(small, ["2m_temperature"], "64x32")


def test_wrong_grid_coordinates_are_refused(small: xr.Dataset) -> None:
    with_poles = small.assign_coords(latitude=np.linspace(-90, 90, 4))
    with pytest.raises(DataError, match=r"latitudes do not match the 8x4 equiangular grid.*-90\.0+, expected -67\.50+"):
        select_fields(with_poles, ["2m_temperature"], "8x4")
    with pytest.raises(DataError, match="not of the form LONxLAT"):
        select_fields(small, ["2m_temperature"], "8by4")


def test_no_time_dimension(small: xr.Dataset) -> None:
    with pytest.raises(DataError, match="no 'time' dimension"):
        select_fields(small.isel(time=0), ["2m_temperature"], "8x4")


def test_nans_are_reported_with_count_channel_and_date(tmp_path: Path) -> None:
    ds = wb2_dataset(days=10, n_lon=8, n_lat=4)
    q = ds["specific_humidity"].values.copy()
    q[4 * 5 + 1, 1, :3, 0] = np.nan  # one 6-hourly sample on 2000-01-06 at 850 hPa, 3 grid points
    q[4 * 5 + 1, 0, :, :] = np.nan  # 500 hPa is not selected: ignored
    ds["specific_humidity"] = ds["specific_humidity"].copy(data=q)
    source = write_zarr(ds, tmp_path / "nan.zarr")
    with pytest.raises(DataError, match=r"non-finite values .*q850: 3 values on 1 day\(s\) from 2000-01-06"):
        prepare(source, tmp_path / "out", VARIABLES, "8x4", progress=False)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_unreadable_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot open '.*nothere\.zarr' as a zarr store \(tried xarray.open_zarr\)"):
        open_source(str(tmp_path / "nothere.zarr"))
    with pytest.raises(DataError, match=r"no such file: '.*nothere\.nc'"):
        open_source(str(tmp_path / "nothere.nc"))
    with pytest.raises(DataError, match="no such file"):
        open_source(str(tmp_path / "none_*.nc"))
    junk = tmp_path / "junk.nc"
    junk.write_text("not a netCDF file")
    with pytest.raises(DataError, match=r"cannot read '.*junk\.nc' as netCDF \(tried netcdf4: .*; h5netcdf: "):
        prepare(str(junk), tmp_path / "out", VARIABLES, "8x4", progress=False)
