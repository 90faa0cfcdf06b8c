"""Potentials and forces of the standard galaxy components, per unit G M.

Each function takes numpy arrays or torch tensors (differentiable) and returns
the same kind. Lengths are in kpc, so the potentials are in 1/kpc and the
forces in 1/kpc^3 per unit G M; multiplied by G M [kpc (km/s)^2] they give
(km/s)^2 and, times a position, (km/s)^2/kpc. The forces are returned divided
by the radius they act along, so that the acceleration is ``-force * x``.

- Hernquist (1990, ApJ 356, 359): ``Phi = -1 / (r + a)``;
- Miyamoto & Nagai (1975, PASJ 27, 533):
  ``Phi = -1 / sqrt(R^2 + (a + sqrt(z^2 + b^2))^2)``;
- NFW (Navarro, Frenk & White 1996, ApJ 462, 563): ``Phi = -ln(1 + r/r_s) / r``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _sqrt(x: Array) -> Array:
    return torch.sqrt(x) if isinstance(x, torch.Tensor) else np.sqrt(x)


def _log1p(x: Array) -> Array:
    return torch.log1p(x) if isinstance(x, torch.Tensor) else np.log1p(x)


def hernquist_potential(r: Array, a: float) -> Array:
    """Hernquist potential at radius ``r`` for scale radius ``a``."""
    return -1.0 / (r + a)


def hernquist_force(r: Array, a: float) -> Array:
    """Hernquist ``(dPhi/dr) / r = 1 / (r (r + a)^2)``."""
    return 1.0 / (r * (r + a) ** 2)


def nfw_potential(r: Array, r_s: float) -> Array:
    """NFW potential at radius ``r`` for scale radius ``r_s``."""
    return -_log1p(r / r_s) / r


def nfw_force(r: Array, r_s: float) -> Array:
    """NFW ``(dPhi/dr) / r = [ln(1 + r/r_s) / r - 1 / (r + r_s)] / r^2``."""
    return (_log1p(r / r_s) / r - 1.0 / (r + r_s)) / r**2


def miyamoto_nagai_potential(big_r2: Array, z: Array, a: float, b: float) -> Array:
    """Miyamoto-Nagai potential at squared cylindrical radius ``big_r2`` and height ``z``."""
    return -1.0 / _sqrt(big_r2 + (a + _sqrt(z * z + b * b)) ** 2)


def miyamoto_nagai_force(big_r2: Array, z: Array, a: float, b: float) -> tuple[Array, Array]:
    """Miyamoto-Nagai ``((dPhi/dR) / R, (dPhi/dz) / z) = (1, (a + zeta) / zeta) / D^3`` with
    ``zeta = sqrt(z^2 + b^2)`` and ``D^2 = R^2 + (a + zeta)^2``."""
    zeta = _sqrt(z * z + b * b)
    d2 = big_r2 + (a + zeta) ** 2
    f = 1.0 / (d2 * _sqrt(d2))
    return f, f * (a + zeta) / zeta
