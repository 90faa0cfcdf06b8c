"""Parameter tables: the labels a set of simulations is run at.

A table is a :class:`pandas.DataFrame` with one column per
:class:`~popstore.Parameter` and one row per sample. Designs:

- ``"uniform"``: independent draws, uniform (or log-uniform for ``log=True``
  parameters) on each range;
- ``"latin_hypercube"``: a Latin-hypercube design (McKay, Beckman & Conover
  1979, Technometrics 21, 239), as used for the CAMELS suites: each parameter's
  range is cut into ``n`` equal-probability strata and every stratum holds
  exactly one sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from popstore.errors import UserError
from popstore.simulator import Parameter

Design = Literal["uniform", "latin_hypercube"]


def unit_cube(n: int, dim: int, seed: int, design: Design = "uniform") -> np.ndarray:
    """``n`` points in ``[0, 1)^dim`` following ``design``."""
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    if design == "uniform":
        return rng.random((n, dim))
    if design == "latin_hypercube":
        strata = np.argsort(rng.random((n, dim)), axis=0)  # an independent permutation per column
        return (strata + rng.random((n, dim))) / n
    raise ValueError(f"unknown design {design!r}; use 'uniform' or 'latin_hypercube'")


def scale(u: np.ndarray, parameters: Sequence[Parameter]) -> pd.DataFrame:
    """Map unit-cube points ``u`` (n, len(parameters)) onto the parameter ranges."""
    lo = np.array([p.low for p in parameters], dtype=float)
    hi = np.array([p.high for p in parameters], dtype=float)
    log = np.array([p.log for p in parameters])
    values = lo + u * (hi - lo)
    values[:, log] = lo[log] * np.exp(u[:, log] * np.log(hi[log] / lo[log]))
    return pd.DataFrame(values, columns=[p.name for p in parameters])


def sample_table(
    parameters: Sequence[Parameter],
    n: int,
    seed: int,
    design: Design = "uniform",
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """A table of ``n`` parameter vectors over the priors of ``parameters``.

    ``ranges`` overrides the ``(low, high)`` of named parameters (e.g. a
    narrower prior in a pipeline file). The ranges drawn from are kept in the
    table's ``attrs["ranges"]``, so that the store records the prior actually used.
    """
    params = list(parameters)
    if ranges:
        unknown = set(ranges) - {p.name for p in params}
        if unknown:
            raise KeyError(f"ranges given for unknown parameters {sorted(unknown)}")
        for p in params:
            if p.name in ranges:
                check_range(p, ranges[p.name])
        params = [
            Parameter(p.name, *map(float, ranges[p.name]), log=p.log, units=p.units, long_name=p.long_name)
            if p.name in ranges
            else p
            for p in params
        ]
    table = scale(unit_cube(n, len(params), seed, design), params)
    table.attrs["ranges"] = {p.name: (p.low, p.high) for p in params}
    return table


def check_range(parameter: Parameter, bounds: Sequence[float]) -> None:
    """Raise :class:`UserError` unless ``bounds`` is a finite ``(low, high)`` with low < high inside the prior."""
    try:
        low, high = map(float, bounds)
    except (TypeError, ValueError):
        raise UserError(f"range of {parameter.name!r} must be two numbers [low, high], got {bounds!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise UserError(f"range of {parameter.name!r} must be finite with low < high, got [{low}, {high}]")
    if low < parameter.low or high > parameter.high:
        raise UserError(f"range [{low}, {high}] of {parameter.name!r} is wider than its prior "
                        f"[{parameter.low}, {parameter.high}]")


def check_table(parameters: Sequence[Parameter], table: pd.DataFrame) -> None:
    """Raise :class:`UserError` unless every value of ``table`` is finite and inside its parameter's prior.

    Names the parameter, the first offending row and its value, so a typo in
    a fixed value or a custom table is caught before any simulation runs.
    """
    for p in parameters:
        values = pd.to_numeric(table[p.name], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < p.low) | (values > p.high)
        if bad.any():
            i = int(np.argmax(bad))
            what = "is not a finite number" if not np.isfinite(values[i]) else \
                f"lies outside the prior [{p.low}, {p.high}]"
            raise UserError(f"parameter {p.name!r}: {int(bad.sum())} values, first row {i} = {float(values[i])}, "
                            f"{what}")
