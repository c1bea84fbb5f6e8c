import numpy as np
import pytest

from sparta.data.store import (DataError, PreparedStore, check_time_axis, same_box, season_labels, split_bounds,
                               write_store)

VARS = ["2m_temperature", "geopotential@850"]


def _days(n, start="2000-01-01"):
    return np.datetime64(start, "D") + np.arange(n)


def test_write_store_statistics_splits_and_seasons(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(100, 2, 4, 8)) * [[[[2.0]], [[5.0]]]] + [[[[280.0]], [[1e4]]]]).astype(np.float32)
    store = write_store(tmp_path / "s", [data[:37], data[37:]], _days(100), VARS, np.arange(4.0), np.arange(8.0),
                        source="test")
    assert store.channels == ["t2m", "z850"] and store.variables == VARS and store.grid == "8x4"
    assert store.splits == {"train": (0, 60), "val": (60, 80), "test": (80, 100)}
    np.testing.assert_allclose(store.mean, data[:60].mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(store.std, data[:60].std(axis=(0, 2, 3)), rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(store.fields), data)
    assert isinstance(store.fields, np.memmap)
    z = store.normalise(np.asarray(store.fields[:60]))
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(store.denormalise(z), data[:60], rtol=1e-5)
    assert store.seasons[0] == 0 and store.seasons[31 + 29 + 5] == 1  # 1 Jan -> DJF, 6 Mar 2000 -> MAM


def test_season_labels_by_month():
    months = np.array([f"2001-{m:02d}-15" for m in range(1, 13)], dtype="datetime64[D]")
    assert season_labels(months).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0]


def test_split_bounds_are_chronological():
    assert split_bounds(23386, (0.6, 0.2, 0.2)) == {"train": (0, 14031), "val": (14031, 18708),
                                                    "test": (18708, 23386)}


def test_nan_values_are_refused_with_counts(tmp_path):
    data = np.ones((10, 2, 2, 2), np.float32)
    data[:, 1] = np.arange(10)[:, None, None]
    data[3, 1, 0, 0] = np.nan
    data[7, 1, 1, :] = np.inf
    with pytest.raises(DataError, match=r"z850: 3 values on 2 day\(s\) from 2000-01-04"):
        write_store(tmp_path / "s", [data], _days(10), VARS, np.arange(2.0), np.arange(2.0), "t")
    assert not (tmp_path / "s" / "meta.json").exists()


def test_time_axis_gaps_and_order():
    days = _days(10)
    with pytest.raises(DataError, match="1 gap"):
        check_time_axis(np.delete(days, 4))
    with pytest.raises(DataError, match="not strictly increasing"):
        check_time_axis(days[::-1])


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PreparedStore.open(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="not a complete prepared store"):
        PreparedStore.open(tmp_path / "half")


def test_a_regional_store_records_its_box_and_does_not_wrap(tmp_path, tiny_store):
    fields = np.random.default_rng(0).standard_normal((20, 1, 5, 7)).astype(np.float32)
    times = np.arange(np.datetime64("2000-01-01"), np.datetime64("2000-01-21"))
    lon = np.linspace(-1.5, 1.5, 7)  # across Greenwich, monotonic
    store = write_store(tmp_path / "box", [fields], times, ["2m_temperature"], np.linspace(50, 51, 5), lon, "test",
                        extra={"box": [50.0, 51.0, -1.5, 1.5]})
    reopened = PreparedStore.open(store.path)
    assert reopened.box == [50.0, 51.0, -1.5, 1.5] and reopened.layout[0].periodic is False
    np.testing.assert_allclose(reopened.lon, lon)
    assert tiny_store.box is None and tiny_store.layout[0].periodic is True  # global: wraps
    assert same_box([50, 51, 358.5, 1.5], reopened.box) and not same_box(None, reopened.box)
