"""Variable specifications: ``"geopotential@850"`` <-> WeatherBench2 name, level and short name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# WeatherBench2 long name -> ECMWF/CDS short name.
SHORT_NAMES = {
    "2m_temperature": "t2m",
    "10m_u_component_of_wind": "u10",
    "10m_v_component_of_wind": "v10",
    "mean_sea_level_pressure": "msl",
    "total_precipitation": "tp",
    "geopotential": "z",
    "temperature": "t",
    "u_component_of_wind": "u",
    "v_component_of_wind": "v",
    "specific_humidity": "q",
    "vertical_velocity": "w",
    "relative_humidity": "r",
}


@dataclass(frozen=True)
class Variable:
    """One channel: a WeatherBench2 variable, optionally at a pressure level (hPa)."""

    name: str
    level: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Variable:
        name, sep, level = spec.partition("@")
        if not name:
            raise ValueError(f"variable spec '{spec}' has no name")
        if sep and not level.isdigit():
            raise ValueError(f"variable spec '{spec}': the level after '@' must be an integer in hPa")
        return cls(name, int(level) if sep else None)

    @property
    def spec(self) -> str:
        return self.name if self.level is None else f"{self.name}@{self.level}"

    @property
    def short(self) -> str:
        base = SHORT_NAMES.get(self.name, self.name)
        return base if self.level is None else f"{base}{self.level}"


def parse_variables(specs: list[str]) -> list[Variable]:
    variables = [Variable.parse(s) for s in specs]
    shorts = [v.short for v in variables]
    duplicates = sorted({s for s in shorts if shorts.count(s) > 1})
    if duplicates:
        raise ValueError(f"data.variables lists the same channel twice: {', '.join(duplicates)}")
    return variables


def parse_generated(specs: list[str], surface: Iterable[str], levels: Iterable[str], source: str) -> list[Variable]:
    """``specs`` parsed for a source SPARTA generates (synthetic, SPEEDY), which makes the ``surface`` variables
    and the ``levels`` variables at any pressure level; a ValueError names the first spec it cannot make."""
    variables, surface, levels = parse_variables(specs), tuple(surface), tuple(levels)
    for v in variables:
        if v.name not in surface + levels:
            raise ValueError(f"{source} has no variable '{v.name}'; supported: {', '.join(surface + levels)}")
        if v.name in surface and v.level is not None:
            raise ValueError(f"'{v.name}' is a surface variable; use '{v.name}' without '@{v.level}'")
        if v.name in levels and not (v.level and 1 <= v.level <= 1100):
            raise ValueError(f"'{v.name}' needs a pressure level in 1..1100 hPa, e.g. '{v.name}@850'")
    return variables
