"""Binary-neutron-star parameter tables that respect the physical ordering.

A binary is labelled ``(m1, m2, lambda1, lambda2)`` with the primary first:
``m1 >= m2`` [Msun]. For any realistic equation of state the tidal
deformability falls steeply with mass (Lambda ~ C^-6, Yagi & Yunes 2017), so
the heavier star is the less deformable one: ``lambda1 <= lambda2``. A box
prior on the four labels violates both; :func:`binary_table` draws two stars
and orders each pair instead.

:func:`perturb_labels` adds measurement-like noise to such a table (Gaussian in
mass, log-normal in Lambda) and restores the ordering, for emulators trained on
noisy labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from popstore.priors import Design, scale, unit_cube
from popstore.cf import SOLAR_MASS
from popstore.simulator import Parameter

LABELS = ("m1", "m2", "lambda1", "lambda2")


def binary_parameters(
    m_range: tuple[float, float] = (1.0, 2.0),
    lambda_range: tuple[float, float] = (50.0, 5000.0),
) -> tuple[Parameter, ...]:
    """The four labels with the per-star ranges (masses uniform, Lambdas log-uniform)."""
    return (
        Parameter("m1", *m_range, units=SOLAR_MASS, long_name="gravitational mass of the primary in solar masses (m1 >= m2)"),
        Parameter("m2", *m_range, units=SOLAR_MASS, long_name="gravitational mass of the secondary in solar masses"),
        Parameter("lambda1", *lambda_range, log=True, long_name="tidal deformability of the primary (lambda1 <= lambda2)"),
        Parameter("lambda2", *lambda_range, log=True, long_name="tidal deformability of the secondary"),
    )


def order_binaries(table: pd.DataFrame) -> pd.DataFrame:
    """Sort each row so that ``m1 >= m2`` and ``lambda1 <= lambda2`` (a new table)."""
    missing = [c for c in LABELS if c not in table.columns]
    if missing:
        raise KeyError(f"binary table lacks columns {missing}")
    m = table[["m1", "m2"]].to_numpy(dtype=float)
    lam = table[["lambda1", "lambda2"]].to_numpy(dtype=float)
    out = table.copy()
    out["m1"], out["m2"] = m.max(axis=1), m.min(axis=1)
    out["lambda1"], out["lambda2"] = lam.min(axis=1), lam.max(axis=1)
    return out


def binary_table(
    n: int,
    seed: int,
    m_range: tuple[float, float] = (1.0, 2.0),
    lambda_range: tuple[float, float] = (50.0, 5000.0),
    design: Design = "uniform",
) -> pd.DataFrame:
    """``n`` binaries: two stars drawn from the ranges (:func:`binary_parameters`), then ordered.

    Columns ``m1, m2, lambda1, lambda2`` with ``m1 >= m2`` and ``lambda1 <= lambda2``
    in every row. ``design`` is a :mod:`popstore.priors` design of the unit cube.
    """
    params = binary_parameters(m_range, lambda_range)
    return order_binaries(scale(unit_cube(n, len(params), seed, design), params))


def noise_draws(seeds: Sequence[int]) -> np.ndarray:
    """Standard-normal draws (n, 4) for :func:`perturb_labels`: row ``i`` from ``default_rng(seeds[i])``.

    One generator per sample keeps a sample's noise independent of which other
    samples share its batch or worker.
    """
    return np.stack([np.random.default_rng(int(s)).standard_normal(4) for s in seeds]) if len(seeds) else np.zeros((0, 4))


def perturb_labels(
    table: pd.DataFrame,
    z: np.ndarray,
    mass_sigma: float = 0.0,
    lambda_sigma: float = 0.0,
) -> pd.DataFrame:
    """Noisy copy of a binary table, re-ordered (:func:`order_binaries`).

    ``z`` (n, 4) are standard-normal draws for m1, m2, lambda1, lambda2
    (:func:`noise_draws`). Masses get Gaussian noise of ``mass_sigma`` [Msun];
    Lambdas are multiplied by ``exp(lambda_sigma * z)`` (fractional error
    ``lambda_sigma``, never negative).
    """
    if mass_sigma < 0 or lambda_sigma < 0:
        raise ValueError("noise levels must be >= 0")
    z = np.asarray(z, dtype=float)
    if z.shape != (len(table), 4):
        raise ValueError(f"need z of shape ({len(table)}, 4), got {z.shape}")
    out = table.copy()
    out["m1"] = table["m1"].to_numpy(float) + mass_sigma * z[:, 0]
    out["m2"] = table["m2"].to_numpy(float) + mass_sigma * z[:, 1]
    out["lambda1"] = table["lambda1"].to_numpy(float) * np.exp(lambda_sigma * z[:, 2])
    out["lambda2"] = table["lambda2"].to_numpy(float) * np.exp(lambda_sigma * z[:, 3])
    return order_binaries(out)


def check_ordering(table: pd.DataFrame | Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless every row has ``m1 >= m2`` and ``lambda1 <= lambda2``."""
    m1, m2, l1, l2 = (np.asarray(table[c], dtype=float) for c in LABELS)
    if np.any(m1 < m2):
        raise ValueError(f"{int(np.sum(m1 < m2))} binaries have m1 < m2 (use order_binaries)")
    if np.any(l1 > l2):
        raise ValueError(f"{int(np.sum(l1 > l2))} binaries have lambda1 > lambda2 (the heavier star must be less deformable)")
