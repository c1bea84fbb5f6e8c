"""A generated data source is one module and one register() call: this file adds a toy one, and config, data
preparation and the store's provenance check take it up without any other change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sparta.config import load_config
from sparta.data import open_or_prepare
from sparta.data.store import DataError
from sparta.grids import parse_grid
from sparta.sources import SOURCES, Source, register


def toy_record(data, variables: list[str], grid: str, progress: bool = True) -> xr.Dataset:
    """2 m temperature that warms by 1 K a day from 280 K, the same at every point."""
    n_lon, n_lat = parse_grid(grid)
    days = np.arange(data.days, dtype=np.float32)
    values = np.broadcast_to((280.0 + days)[:, None, None], (data.days, n_lon, n_lat))
    return xr.Dataset(
        {"2m_temperature": (("time", "longitude", "latitude"), values.copy(), {"units": "K"})},
        coords={"time": pd.date_range(data.start, periods=data.days, freq="D"),
                "longitude": np.arange(n_lon) * 360.0 / n_lon,
                "latitude": -90 + (np.arange(n_lat) + 0.5) * 180.0 / n_lat},
        attrs={"source": toy_label(data)})


def toy_label(data) -> str:
    return f"toy(start={data.start}, days={data.days})"


@pytest.fixture
def toy_source():
    source = register(Source("toy", "a warming ramp, for this test", f"{__name__}:toy_record", f"{__name__}:toy_label"))
    yield source
    del SOURCES["toy"]


def test_a_registered_source_is_prepared_and_checked_like_the_built_in_ones(tmp_path, toy_source):
    cfg = load_config("micro", ["data.source=toy", f"data.store={tmp_path / 'store'}", "data.years=0.1",
                                "data.variables=[2m_temperature]"])
    assert cfg.data.generated
    store = open_or_prepare(cfg.data, progress=False)
    assert store.source == "toy(start=1980-01-01, days=37)" and len(store.times) == 37
    np.testing.assert_allclose(np.asarray(store.read(slice(0, 3)))[:, 0, 0, 0], [280.0, 281.0, 282.0])
    longer = load_config("micro", ["data.source=toy", f"data.store={tmp_path / 'store'}", "data.years=0.2",
                                   "data.variables=[2m_temperature]"])
    with pytest.raises(DataError, match="holds toy\\(start=1980-01-01, days=37\\), the config asks for .*days=73"):
        open_or_prepare(longer.data, progress=False)


def test_a_source_name_is_registered_once(toy_source):
    with pytest.raises(ValueError, match="'toy' is registered already"):
        register(toy_source)
