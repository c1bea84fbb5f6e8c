"""Data layer: generated sources (:data:`sparta.sources.SOURCES`) and WeatherBench2-schema files, all written to
one prepared-store format."""

from __future__ import annotations

import logging
from pathlib import Path

from sparta.config import DataConfig
from sparta.data.store import (DataError, PreparedStore, Store, claim_store_directory, domain_label, open_store,
                               same_box, write_mixed_meta)
from sparta.data.variables import parse_variables
from sparta.grids import Grid, layout_label
from sparta.sources import SOURCES

log = logging.getLogger(__name__)


def prepare_from_config(data: DataConfig, out: str | Path, progress: bool = True,
                        overwrite: bool = False) -> Store:
    """Prepare ``data.source`` (a generated source or a WeatherBench2-schema path/URL) into a store at ``out``.

    Variables on several grids (``data.variable_grids``) make a mixed store: the source is read
    once per grid, each time for that grid's variables. An existing store is never replaced
    silently: runs may have been trained on it.
    """
    # Refuses a directory that is not a SPARTA store, even with overwrite; written to only once the source reads.
    out = claim_store_directory(out, overwrite, create=False)
    groups = data.grouped_variables()
    if len(groups) == 1:
        return _prepare_grid(data, out, data.variables, data.grid, progress, overwrite=True)
    claim_store_directory(out, overwrite)
    (out / "meta.json").unlink(missing_ok=True)  # the store is complete again only once every grid is written
    parts = [_prepare_grid(data, out / f"grid-{grid}", variables, grid, progress, overwrite=True)
             for grid, variables in groups.items()]
    return write_mixed_meta(out, parts, parts[0].source)


def _prepare_grid(data: DataConfig, out: Path, variables: list[str], grid: str, progress: bool,
                  overwrite: bool = False) -> PreparedStore:
    from sparta.data.weatherbench import prepare

    generated = SOURCES.get(data.source)
    regrid = data.regrid or (generated is not None and generated.regrid)
    if generated is not None:
        if data.box is not None:
            raise DataError(f"the {data.source} source makes global grids only, and data.box asks for a regional one; "
                            "drop data.box, or pass a regional source file with --source")
        source = generated.open(data, variables, grid, progress)
    else:
        source = data.source
    return prepare(source, out, variables, grid, data.split, progress=progress, regrid=regrid,
                   assume_units=data.assume_units, member=data.member, overwrite=overwrite, box=data.box)


def expected_layout(data: DataConfig) -> tuple[list[str], str]:
    """The variable specs and grid label (see ``layout_label``) a store prepared from ``data`` has."""
    groups = data.grouped_variables()
    layout = [Grid.named(grid, [v.short for v in parse_variables(variables)]) for grid, variables in groups.items()]
    specs = [v.spec for variables in groups.values() for v in parse_variables(variables)]
    return specs, layout_label(layout)


def open_or_prepare(data: DataConfig, progress: bool = True, prepare: bool = True) -> Store:
    """Open the configured store, preparing it from ``data.source`` first if it does not exist yet.

    With ``prepare=False`` (a trained run's store: evaluating must not quietly rebuild a record
    elsewhere) a missing store is refused, naming it.
    """
    path = Path(data.store)
    if not (path / "meta.json").exists() and not prepare:
        raise DataError(f"the run's prepared store '{path}' does not exist (data.store in the run's config.yaml, "
                        "relative paths are taken from the run directory); prepare it again with the run's data "
                        f"settings (`sparta data prepare --source {data.source} --out {path}` and the run's data.* "
                        "values), or set data.store in config.yaml to where the store is")
    if not (path / "meta.json").exists():
        log.info("prepared store %s not found: preparing it from %s", path, data.source)
        store = prepare_from_config(data, path, progress)
    else:
        store = open_store(path)
    wanted, grid = expected_layout(data)
    if store.variables != wanted or store.grid != grid:
        raise DataError(f"store '{path}' holds {store.variables} on {store.grid}, the config asks for {wanted} on "
                        f"{grid}; point data.store at another directory or prepare it again")
    if not same_box(store.box, data.box):
        raise DataError(f"store '{path}' holds {domain_label(store.box)}, the config asks for {domain_label(data.box)} "
                        "(data.box); point data.store at another directory or prepare it again")
    if data.generated and store.source != (label := SOURCES[data.source].label_of(data)):
        raise DataError(f"store '{path}' holds {store.source}, the config asks for {label}; "
                        "point data.store at another directory")
    return store
