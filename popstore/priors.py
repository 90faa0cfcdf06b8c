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
        params = [
            Parameter(p.name, *map(float, ranges[p.name]), log=p.log, units=p.units, long_name=p.long_name)
            if p.name in ranges
            else p
            for p in params
        ]
    table = scale(unit_cube(n, len(params), seed, design), params)
    table.attrs["ranges"] = {p.name: (p.low, p.high) for p in params}
    return table
