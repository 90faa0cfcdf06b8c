"""CF-convention units: strings both UDUNITS and astropy read as the same quantity, and a checker.

CF (Eaton et al., NetCDF Climate and Forecast Metadata Conventions 1.10, sect. 3.1)
requires ``units`` strings that UDUNITS-2 parses; astropy is how astronomers read them
back. The two libraries share fewer symbols than one would guess: UDUNITS knows no
``pc``, ``Mpc``, ``Msun``, ``Jy``, ``mag`` or ``deg`` (it has ``parsec``, ``degree``...),
and astropy reads ``Mpc/h`` as megaparsec per *hour*. The constants below are the
spellings popstore uses for quantities without a common symbol; logarithmic
quantities (``log10(B / G)``, magnitudes) have ``units = "1"`` and name their
reference unit in ``long_name``.

:func:`unit_problems` checks every ``units`` attribute of a dataset: astropy must
parse it, UDUNITS (through ``cfunits``, when ``libudunits2`` is installed) must parse
it to the same SI scale and dimension. Without UDUNITS only the astropy half runs
(``Mpc/h`` then passes as megaparsec per hour; UDUNITS rejects it).
"""

from __future__ import annotations

from collections.abc import Hashable

import astropy.units as u
import xarray as xr

KILOPARSEC = "kiloparsec"
SOLAR_MASS = "1.98840987e30 kg"  # astropy's M_sun (IAU 2015 nominal GM_sun / G), within 1e-9
SPEED_OF_LIGHT = "299792458 m s-1"
MILLIARCSEC_PER_YEAR = "milliarcsecond yr-1"
JANSKY = "1e-26 W m-2 Hz-1"
PER_CENTURY = "0.01 yr-1"

RTOL = 1e-4
"""Agreement asked of the two parsers' SI scales (UDUNITS' year is the tropical year, astropy's the Julian)."""


def megaparsec_over_h(h: float) -> str:
    """``Mpc/h`` (comoving lengths in units of h^-1 Mpc) for a given h, as a scaled unit: ``"1.490091 megaparsec"``."""
    return f"{1.0 / h:.7g} megaparsec"


def _udunits():
    """cfunits' ``Units`` class, or None when it or libudunits2 is missing."""
    try:
        from cfunits import Units
    except (ImportError, OSError):
        return None
    return Units


def udunits_available() -> bool:
    """Whether UDUNITS-2 can be called (``pip install cfunits`` and the ``libudunits2`` system library)."""
    return _udunits() is not None


def _si(unit: u.UnitBase) -> tuple[float, str]:
    """astropy unit -> (scale, UDUNITS spelling of its SI base units)."""
    d = unit.decompose()
    return float(d.scale), " ".join(f"{b.to_string()}{p:g}" if p != 1 else b.to_string()
                                    for b, p in zip(d.bases, d.powers)) or "1"


def unit_problem(units: str) -> str | None:
    """Why ``units`` is not a CF unit that astropy reads as the same quantity, or None when it is."""
    try:
        a = u.Unit(units, parse_strict="raise")
    except ValueError as exc:
        return f"astropy cannot parse {units!r} ({exc})"
    if isinstance(a, u.UnrecognizedUnit):
        return f"astropy cannot parse {units!r}"
    try:
        scale, base = _si(a)
    except u.UnitsError:
        return f"astropy reads {units!r} as {a}, which has no SI equivalent"
    Units = _udunits()
    if Units is None:
        return None
    ud = Units(units)
    if not ud.isvalid:
        return f"UDUNITS cannot parse {units!r}"
    si = Units(base)
    if not ud.equivalent(si):
        return f"UDUNITS and astropy read {units!r} as different dimensions (astropy: {scale:g} {base})"
    factor = float(Units.conform(1.0, ud, si))
    if abs(factor / scale - 1) > RTOL:
        return f"UDUNITS reads {units!r} as {factor:g} {base}, astropy as {scale:g} {base}"
    return None


def unit_problems(ds: xr.Dataset) -> dict[Hashable, str]:
    """``{variable: problem}`` for every variable (coordinates included) whose ``units`` fail :func:`unit_problem`."""
    out = {}
    for name, var in ds.variables.items():
        units = var.attrs.get("units")
        if units is None:
            continue
        problem = unit_problem(str(units))
        if problem:
            out[name] = problem
    return out
