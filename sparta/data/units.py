"""Physical units of the source variables: read from CF ``units``, converted to SPARTA's units.

A prepared store holds every variable in one unit (ERA5's, as WeatherBench2 spells it in CF
style: ``K``, ``m**2 s**-2``, ``kg kg**-1``, ...). Sources that use a common alternative are
converted while they are read (the conversion is logged): specific humidity in g/kg,
geopotential given as geopotential height (m or gpm, times g = 9.80665 m s-2), temperatures in
degC, pressures in hPa, precipitation in mm, and pressure levels in Pa. Missing or unknown units
are refused, unless ``assume_units`` says the values are already in SPARTA's unit.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sparta.data.store import DataError

log = logging.getLogger(__name__)

GRAVITY = 9.80665  # m s-2, WMO standard gravity: geopotential = g x geopotential height


@dataclass(frozen=True)
class Conversion:
    """``value_in_target = value * scale + offset`` for source units spelled as in ``spellings``."""

    spellings: tuple[str, ...]
    scale: float = 1.0
    offset: float = 0.0
    label: str = ""


_KELVIN = (Conversion(("k", "kelvin", "kelvins", "degk", "deg_k", "degreek", "degrees_k")),
           Conversion(("degc", "°c", "c", "celsius", "deg_c", "degreec", "degreesc", "degree_c", "degrees_c",
                       "degreecelsius", "degreescelsius", "degree_celsius", "degrees_celsius"), 1.0, 273.15, "degC"))
_PASCAL = (Conversion(("pa", "pascal", "pascals")),
           Conversion(("hpa", "mbar", "millibar", "millibars", "mb"), 100.0, 0.0, "hPa"))
_WIND = (Conversion(("ms-1", "m/s", "ms^-1", "meterspersecond", "metrespersecond")),)
#: SPARTA's unit of each known variable, and how other spellings convert to it.
UNITS: dict[str, tuple[str, tuple[Conversion, ...]]] = {
    "2m_temperature": ("K", _KELVIN),
    "temperature": ("K", _KELVIN),
    "2m_dewpoint_temperature": ("K", _KELVIN),
    "sea_surface_temperature": ("K", _KELVIN),
    "geopotential": ("m**2 s**-2", (
        Conversion(("m2s-2", "m2/s2", "m2s^-2", "jkg-1", "j/kg")),
        Conversion(("m", "gpm", "metre", "metres", "meter", "meters", "geopotentialmeter", "geopotentialmeters",
                    "geopotentialmetre", "geopotentialmetres"), GRAVITY, 0.0, "m (geopotential height)"))),
    "u_component_of_wind": ("m s**-1", _WIND),
    "v_component_of_wind": ("m s**-1", _WIND),
    "10m_u_component_of_wind": ("m s**-1", _WIND),
    "10m_v_component_of_wind": ("m s**-1", _WIND),
    "specific_humidity": ("kg kg**-1", (
        Conversion(("kgkg-1", "kg/kg", "1", "kgkg", "dimensionless")),
        Conversion(("gkg-1", "g/kg", "gkg^-1"), 1e-3, 0.0, "g kg**-1"))),
    "mean_sea_level_pressure": ("Pa", _PASCAL),
    "surface_pressure": ("Pa", _PASCAL),
    "total_precipitation": ("m", (Conversion(("m", "metre", "metres", "meter", "meters")),
                                  Conversion(("mm", "kgm-2"), 1e-3, 0.0, "mm"))),
    "vertical_velocity": ("Pa s**-1", (Conversion(("pas-1", "pa/s")),)),
    "relative_humidity": ("%", (Conversion(("%", "percent")),)),
}


def _spelling(units: str) -> str:
    """A comparable spelling: lower case, no blanks, no ``**``/``^``/``.`` between factors."""
    text = units.strip().lower().replace("**", "").replace("^", "").replace("·", "")
    text = re.sub(r"(?<=[a-z])\.(?=[a-z])", "", text)
    return re.sub(r"\s+", "", text)


class UnitsError(DataError):
    """A variable's units are missing or not understood."""


def conversion(name: str, spec: str, units: str | None, assume: bool = False) -> tuple[str, Conversion]:
    """SPARTA's unit of variable ``name`` and the conversion from the source's ``units`` to it.

    Variables SPARTA does not know keep the source's units (they must be given). ``assume`` takes
    missing or unknown units as SPARTA's own.
    """
    target, conversions = UNITS.get(name, (None, ()))
    if target is None:
        if units and units.strip():
            return units.strip(), Conversion((), label=units.strip())
        if assume:
            return "unknown", Conversion(())
        raise UnitsError(f"'{spec}' has no units attribute and SPARTA does not know the variable; set its CF "
                         "'units' attribute, or pass data.assume_units=true to keep its values as they are")
    if units is not None and units.strip():
        spelled = _spelling(units)
        for conv in conversions:
            if spelled in conv.spellings:
                if conv.scale != 1.0 or conv.offset != 0.0:
                    log.info("%s: converting %s to %s (x %g %+g)", spec, units.strip(), target, conv.scale,
                             conv.offset)
                return target, conv
    others = [c.label for c in conversions if c.label]
    known = f"{target} (and converts {', '.join(others)})" if others else target
    if assume:
        log.warning("%s: units %s taken as %s (data.assume_units=true)", spec,
                    f"'{units.strip()}'" if units and units.strip() else "missing", target)
        return target, Conversion(())
    what = f"has units '{units.strip()}', which SPARTA does not understand" if units and units.strip() \
        else "has no units attribute"
    raise UnitsError(f"'{spec}' {what}; SPARTA reads it in {known}: fix the variable's "
                     f"CF 'units' attribute, or pass data.assume_units=true if the values are in {target}")


def level_scale(units: str | None) -> float:
    """Factor from a pressure-level coordinate's units to hPa (1 for hPa, mbar or no units; 0.01 for Pa)."""
    if units is None or not units.strip():
        return 1.0
    spelled = _spelling(units)
    if spelled in ("pa", "pascal", "pascals"):
        return 0.01
    if spelled in ("hpa", "mbar", "millibar", "millibars", "mb"):
        return 1.0
    raise UnitsError(f"the pressure levels have units '{units.strip()}'; SPARTA reads levels in hPa (or converts "
                     "from Pa): fix the level coordinate's units attribute")
