"""The day-of-year climatology that WeatherBench-style scores take anomalies from.

The mean field of each day of the year over the store's *train* split, in physical units, smoothed
by a circular window of days centred on each day of the year (31 by default), as WeatherBench2's
climatology is smoothed: a raw daily mean over a few years is mostly that year's weather, not the
climate. Forecast and truth of a valid day take their anomalies from that day's climatology.
"""

from __future__ import annotations

import numpy as np

from sparta import grids
from sparta.data.store import DataError

DAYS_OF_YEAR = 366
WINDOW_DAYS = 31


def day_of_year(times: np.ndarray) -> np.ndarray:
    """Day of the year of each datetime64 time, 1 (1 January) .. 366 (31 December of a leap year), as
    pandas' and xarray's ``dayofyear`` (which WeatherBench2's climatology is indexed by)."""
    days = times.astype("datetime64[D]")
    return (days - days.astype("datetime64[Y]")).astype(np.int64) + 1


def smooth_day_of_year(sums: np.ndarray, counts: np.ndarray, window: int = WINDOW_DAYS) -> np.ndarray:
    """Mean over a circular window of days of the year, pooled from per-day sums.

    ``out[d] = sum_{|k| <= window // 2} sums[d + k] / sum_{|k| <= window // 2} counts[d + k]`` with ``d + k``
    taken modulo 366: every day of the record weighs the same, so 29 February (one year in four) counts as one
    day, not as a whole day of the year's mean.

    Args:
        sums: ``(366, ...)`` sum of the fields of each day of the year (float64).
        counts: ``(366,)`` number of days summed into each.
        window: odd width of the window in days.

    Returns:
        ``(366, ...)`` float64; NaN where the window holds no day.
    """
    if sums.shape[0] != DAYS_OF_YEAR or counts.shape != (DAYS_OF_YEAR,):
        raise ValueError(f"expected ({DAYS_OF_YEAR}, ...) sums and ({DAYS_OF_YEAR},) counts, "
                         f"got {sums.shape} and {counts.shape}")
    n = _window_sum(counts.astype(np.float64), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _window_sum(sums.astype(np.float64), window) / n.reshape(-1, *([1] * (sums.ndim - 1)))


def _window_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum over the circular window of ``window`` days centred on each day of the year (axis 0)."""
    if window < 1 or window % 2 == 0 or window > DAYS_OF_YEAR:
        raise ValueError(f"the climatology window must be an odd number of days in 1..{DAYS_OF_YEAR}, got {window}")
    return sum(np.roll(x, -k, axis=0) for k in range(-(window // 2), window // 2 + 1))


def day_of_year_climatology(store, window: int = WINDOW_DAYS):
    """``(366, C, H, W)`` float32 day-of-year climatology of the store's train split in physical units (one
    array per grid for variables on several); row ``d - 1`` is day of the year ``d`` (:func:`day_of_year`).

    The train split is read a year (365 days) at a time, sums in float64, so memory stays that of a year of fields.
    Raises :class:`DataError` when some day of the year has no train day within the window (a train split
    shorter than about a year less the window).
    """
    a, b = store.split_range("train")
    doy = day_of_year(store.times[a:b]) - 1
    counts = np.bincount(doy, minlength=DAYS_OF_YEAR).astype(np.float64)
    uncovered = np.flatnonzero(_window_sum(counts, window) == 0) + 1
    if uncovered.size:
        raise DataError(f"the train split ({b - a} days) leaves {uncovered.size} days of the year (from day "
                        f"{uncovered[0]}) without a train day within the {window}-day climatology window; the "
                        "anomaly scores need a train split that spans a year: use a longer record")
    several, sums = isinstance(store.read(slice(a, a + 1)), list), None
    for start in range(a, b, 365):  # 365 consecutive days never share a day of the year: one indexed add
        parts = grids.as_list(store.read(slice(start, min(start + 365, b))))
        if sums is None:
            sums = [np.zeros((DAYS_OF_YEAR, *p.shape[1:]), dtype=np.float64) for p in parts]
        for total, part in zip(sums, parts):
            total[doy[start - a:start - a + len(part)]] += part
    clim = [smooth_day_of_year(total, counts, window).astype(np.float32) for total in sums]
    return clim if several else clim[0]
