"""Known-value tests of the day-of-year climatology (sparta.climatology)."""

from __future__ import annotations

import numpy as np
import pytest

from sparta.climatology import DAYS_OF_YEAR, day_of_year, day_of_year_climatology, smooth_day_of_year
from sparta.data.store import DataError, write_store


def test_day_of_year_counts_leap_days() -> None:
    times = np.array(["2000-01-01", "2000-02-29", "2000-03-01", "2000-12-31", "2001-03-01", "2001-12-31"],
                     dtype="datetime64[D]")
    assert day_of_year(times).tolist() == [1, 60, 61, 366, 60, 365]


def test_smoothing_is_a_pooled_circular_window() -> None:
    counts = np.full(DAYS_OF_YEAR, 2.0)
    sums = np.zeros((DAYS_OF_YEAR, 1))
    sums[0] = 6.0  # day 1: mean 3, every other day 0
    assert smooth_day_of_year(sums, counts, 1)[:2, 0].tolist() == [3.0, 0.0]  # no smoothing
    out = smooth_day_of_year(sums, counts, 3)[:, 0]  # days 366, 1 and 2 see day 1 in their window
    assert out[[365, 0, 1]].tolist() == pytest.approx([1.0, 1.0, 1.0]) and out[2:365].max() == 0.0
    counts[59] = 1.0  # a day seen half as often weighs half: pooled sums, not a mean of the days' means
    sums[59], sums[58], sums[60] = 9.0, 0.0, 0.0
    assert smooth_day_of_year(sums, counts, 3)[59, 0] == pytest.approx(9.0 / 5.0)
    assert np.allclose(smooth_day_of_year(np.full((DAYS_OF_YEAR, 2), 7.0) * counts[:, None], counts, 31), 7.0)
    with pytest.raises(ValueError, match="odd"):
        smooth_day_of_year(sums, counts, 4)


def _store(path, days: int, value):
    times = np.arange(np.datetime64("2000-01-01"), np.datetime64("2000-01-01") + days)
    doy = day_of_year(times).astype(np.float32)
    year = times.astype("datetime64[Y]").astype(np.float32) + 1970
    wave = np.sin(np.arange(8) * np.pi / 4).astype(np.float32)  # 0 at the first longitude, where tests read
    fields = np.stack([value(doy), year], axis=1)[:, :, None, None] + np.broadcast_to(wave, (4, 8))
    return write_store(path, [fields], times, ["2m_temperature", "geopotential@850"],
                       np.linspace(-67.5, 67.5, 4), np.arange(8) * 45.0, source="test", split=(0.75, 0.125, 0.125))


def test_climatology_of_the_train_split_in_physical_units(tmp_path) -> None:
    store = _store(tmp_path / "s", 4 * 365 + 1, lambda doy: 250.0 + 0.1 * doy)  # 2000 (a leap year) .. 2003
    a, b = store.split_range("train")  # 1095 days: 2000-01-01 .. 2002-12-30
    assert (a, b) == (0, 1095)
    clim = day_of_year_climatology(store, window=1)
    assert clim.shape == (DAYS_OF_YEAR, 2, 4, 8) and clim.dtype == np.float32
    assert clim[9, 0, 0, 0] == pytest.approx(251.0) and clim[9, 1, 0, 0] == pytest.approx(2001.0)
    assert clim[365, 1, 0, 0] == 2000.0 and clim[364, 1, 0, 0] == pytest.approx(2000.5)  # 2002-12-31 is not train
    # day 366 (2000 only) pooled with days 365 (2000, 2001) and 1 (2000-2002): each day of the record counts once
    smoothed = day_of_year_climatology(store, window=3)
    assert smoothed[365, 0, 0, 0] == pytest.approx((2 * 286.5 + 286.6 + 3 * 250.1) / 6)
    assert smoothed[100, 0, 0, 0] == pytest.approx(250.0 + 10.1)  # a linear cycle is kept by a centred window


def test_climatology_needs_a_train_split_spanning_a_year(tmp_path) -> None:
    store = _store(tmp_path / "s", 400, lambda doy: doy)  # train: 300 days
    with pytest.raises(DataError, match="spans a year"):
        day_of_year_climatology(store, window=31)
