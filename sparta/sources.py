"""Generated data sources (``data.source``): the records SPARTA makes itself, readable without xarray.

Config validation, run directories (a generated source is not a path) and the data layer read :data:`SOURCES`;
a source's record and label are named as ``"module:function"`` and imported only when used. A new source is
one module with those two functions and one :func:`register` call (or an entry here); any other
``data.source`` value is a WeatherBench2-schema path or URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparta.families import resolve

if TYPE_CHECKING:  # the config imports this module
    from sparta.config import DataConfig


@dataclass(frozen=True)
class Source:
    """``record(data, variables, grid, progress)``: the lazy WeatherBench2-schema record of ``data.days`` days
    from ``data.start`` (simulated or drawn first if need be) for ``variables`` on ``grid``; ``label(data)``: what
    a store prepared from it records as its source, checked when the store is reopened. ``regrid``: its fields
    come on a grid of their own and are regridded conservatively to ``data.grid``."""

    name: str
    description: str
    record: str
    label: str
    regrid: bool = False

    def open(self, data: DataConfig, variables: list[str], grid: str, progress: bool = True) -> Any:
        return resolve(self.record)(data, variables, grid, progress)

    def label_of(self, data: DataConfig) -> str:
        return resolve(self.label)(data)


SOURCES: dict[str, Source] = {}
"""The generated sources, by ``data.source`` name."""


def register(source: Source) -> Source:
    """Add ``source`` to :data:`SOURCES`; a name is registered once."""
    if source.name in SOURCES:
        raise ValueError(f"data source '{source.name}' is registered already")
    SOURCES[source.name] = source
    return source


register(Source("speedy", "weather simulated by the SPEEDY atmosphere model (settings: data.gcm_truncation, data.spinup_days)",
                "sparta.data.speedy:record", "sparta.data.speedy:label", regrid=True))
register(Source("synthetic", "a fast linear-Gaussian generator, for tests",
                "sparta.data.synthetic:record", "sparta.data.synthetic:label"))
