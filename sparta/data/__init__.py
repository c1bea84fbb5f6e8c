"""Data layer: synthetic and WeatherBench2 sources, all written to one prepared-store format."""

from __future__ import annotations

import logging
from pathlib import Path

from sparta.config import DataConfig
from sparta.data.store import DataError, PreparedStore
from sparta.data.variables import parse_variables

log = logging.getLogger(__name__)


def prepare_from_config(data: DataConfig, out: str | Path, progress: bool = True,
                        overwrite: bool = False) -> PreparedStore:
    """Prepare ``data.source`` ('synthetic' or a WeatherBench2-schema path/URL) into a store at ``out``.

    An existing store is never replaced silently: runs may have been trained on it.
    """
    from sparta.data.weatherbench import prepare

    if (Path(out) / "meta.json").exists() and not overwrite:
        raise DataError(f"'{out}' already holds a prepared store; pass --overwrite to replace it, "
                        "or choose another --out")

    if data.source == "synthetic":
        from sparta.data.synthetic import synthetic_era5

        n_days = round(data.synthetic_years * 365.25)
        source = synthetic_era5(data.variables, data.grid, data.synthetic_start, n_days, data.seed)
        source.attrs["source"] = synthetic_label(data)
    else:
        source = data.source
    return prepare(source, out, data.variables, data.grid, data.split, progress=progress, regrid=data.regrid)


def synthetic_label(data: DataConfig) -> str:
    return f"synthetic(start={data.synthetic_start}, years={data.synthetic_years}, seed={data.seed})"


def open_or_prepare(data: DataConfig, progress: bool = True) -> PreparedStore:
    """Open the configured store, preparing it from ``data.source`` first if it does not exist yet."""
    path = Path(data.store)
    if not (path / "meta.json").exists():
        log.info("prepared store %s not found: preparing it from %s", path, data.source)
        store = prepare_from_config(data, path, progress)
    else:
        store = PreparedStore.open(path)
    wanted = [v.spec for v in parse_variables(data.variables)]
    if store.variables != wanted or store.grid != data.grid:
        raise DataError(f"store '{path}' holds {store.variables} on {store.grid}, the config asks for {wanted} on "
                        f"{data.grid}; point data.store at another directory or prepare it again")
    if data.source == "synthetic" and store.source != synthetic_label(data):
        raise DataError(f"store '{path}' holds {store.source}, the config asks for {synthetic_label(data)}; "
                        "point data.store at another directory")
    return store
