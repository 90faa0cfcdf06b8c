"""Dynamical ejecta of a binary neutron-star merger (Dietrich & Ujevic 2017).

Fits of Dietrich & Ujevic 2017, CQG 34, 105014 (arXiv:1612.03665, "DU17"),
calibrated on numerical-relativity simulations, give the mass, velocity and
geometry of the dynamical ejecta from the two stars' gravitational masses
``m1 >= m2`` [Msun], their compactnesses ``C = G m / (R c^2)`` and their
baryonic masses. Compactness and baryonic mass come from the dimensionless tidal
deformabilities through quasi-universal relations:

- C(Lambda): Yagi & Yunes 2017, Phys. Rep. 681, 1, eq. (78),
  ``C = 0.360 - 0.0355 ln L + 0.000705 (ln L)^2`` (clipped to [0, 4/9], the
  Buchdahl limit; inside 0.1 < Lambda < 1.3e6 the clip never acts);
- m_b(m, C): Coughlin et al. 2017 (arXiv:1708.07714) fit
  ``m_b = m (1 + 0.8857853174243745 C^1.2082383572002926)``,

as in the gwemlightcurves implementation (``EjectaFits.DiUj2017``,
``KNModels.table.CLove`` / ``EOSfit``).

Every function is vectorised: arguments broadcast against each other.
Velocities are in units of the speed of light, angles in radians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Yagi & Yunes 2017 eq. (78) coefficients of C(ln Lambda).
YY_COEFFS = (0.360, -0.0355, 0.000705)
#: Buchdahl limit on the compactness.
C_MAX = 4.0 / 9.0
#: Baryonic-mass fit m_b = m (1 + A C^B).
MB_A, MB_B = 0.8857853174243745, 1.2082383572002926
#: DU17 eq. (3.2): ejecta-mass fit coefficients a, b, c, d, n (Mej in 1e-3 Msun).
MEJ_COEFFS = dict(a=-1.35695, b=6.11252, c=-49.43355, d=16.1144, n=-2.5484)
#: DU17 eq. (3.6): v_rho fit a, b, c.
VRHO_COEFFS = dict(a=-0.219479, b=0.444836, c=-2.67385)
#: DU17 eq. (3.8): v_z fit a, b, c.
VZ_COEFFS = dict(a=-0.315585, b=0.63808, c=-1.00757)


def compactness_from_lambda(lam: ArrayLike) -> np.ndarray:
    """Compactness ``C`` of a neutron star from its tidal deformability ``Lambda``.

    Yagi & Yunes 2017 (Phys. Rep. 681, 1) eq. (78), clipped to ``[0, 4/9]``.
    """
    lam = np.asarray(lam, dtype=float)
    if np.any(~(lam > 0)):
        raise ValueError("tidal deformability Lambda must be > 0 (and not NaN)")
    x = np.log(lam)
    c0, c1, c2 = YY_COEFFS
    return np.clip(c0 + c1 * x + c2 * x * x, 0.0, C_MAX)


def baryonic_mass(m: ArrayLike, c: ArrayLike) -> np.ndarray:
    """Baryonic mass [Msun] of a star of gravitational mass ``m`` [Msun] and compactness ``c``."""
    m = np.asarray(m, dtype=float)
    return m * (1.0 + MB_A * np.asarray(c, dtype=float) ** MB_B)


def ejecta_mass(m1: ArrayLike, c1: ArrayLike, m2: ArrayLike, c2: ArrayLike) -> np.ndarray:
    """Dynamical ejecta mass [Msun], DU17 eqs. (3.1)-(3.2), floored at 0."""
    m1, c1, m2, c2 = (np.asarray(a, dtype=float) for a in (m1, c1, m2, c2))
    mb1, mb2 = baryonic_mass(m1, c1), baryonic_mass(m2, c2)
    k = MEJ_COEFFS
    q12, q21 = m2 / m1, m1 / m2
    term_a = mb1 * q12 ** (1 / 3) * (1 - 2 * c1) / c1 + mb2 * q21 ** (1 / 3) * (1 - 2 * c2) / c2
    term_b = mb1 * q12 ** k["n"] + mb2 * q21 ** k["n"]
    term_c = mb1 * (1 - m1 / mb1) + mb2 * (1 - m2 / mb2)
    return np.maximum(k["a"] * term_a + k["b"] * term_b + k["c"] * term_c + k["d"], 0.0) / 1000.0


def _velocity_fit(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * ((m1 / m2) * (1 + c * c1) + (m2 / m1) * (1 + c * c2)) + b


def velocity_rho(m1: ArrayLike, c1: ArrayLike, m2: ArrayLike, c2: ArrayLike) -> np.ndarray:
    """Ejecta velocity in the orbital plane [c], DU17 eqs. (3.5)-(3.6)."""
    return _velocity_fit(*(np.asarray(a, dtype=float) for a in (m1, c1, m2, c2)), **VRHO_COEFFS)


def velocity_z(m1: ArrayLike, c1: ArrayLike, m2: ArrayLike, c2: ArrayLike) -> np.ndarray:
    """Ejecta velocity orthogonal to the orbital plane [c], DU17 eqs. (3.7)-(3.8)."""
    return _velocity_fit(*(np.asarray(a, dtype=float) for a in (m1, c1, m2, c2)), **VZ_COEFFS)


def opening_angle_theta(v_rho: ArrayLike, v_z: ArrayLike) -> np.ndarray:
    """Polar opening angle theta_ej [rad] of the ejecta, DU17 eq. (3.12)."""
    vr = np.asarray(v_rho, dtype=float)
    vz = np.asarray(v_z, dtype=float)
    t = 3 * vz + np.sqrt(9 * vz**2 + 4 * vr**2)
    return (2 ** (4 / 3) * vr**2 + (2 * vr**2 * t) ** (2 / 3)) / (vr**5 * t) ** (1 / 3)


def opening_angle_phi(theta: ArrayLike) -> np.ndarray:
    """Azimuthal opening angle phi_ej [rad], DU17 eq. (3.13): ``phi = 4 theta + pi / 2``.

    This maps theta in [pi/8, 3pi/8] onto phi in [pi, 2pi], the ranges DU17 state.
    (gwemlightcurves' ``calc_phej`` returns ``4 theta pi / 2``, which does not.)
    """
    return 4.0 * np.asarray(theta, dtype=float) + np.pi / 2


@dataclass(frozen=True)
class Ejecta:
    """Dynamical-ejecta properties of a set of binaries (arrays of equal shape)."""

    mass: np.ndarray  #: ejecta mass [Msun]
    velocity: np.ndarray  #: v_ej = sqrt(v_rho^2 + v_z^2) [c]
    v_rho: np.ndarray  #: in-plane velocity [c]
    v_z: np.ndarray  #: vertical velocity [c]
    theta: np.ndarray  #: polar opening angle [rad]
    phi: np.ndarray  #: azimuthal opening angle [rad]


def check_binary(m1: np.ndarray, m2: np.ndarray, lambda1: np.ndarray, lambda2: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``m1 >= m2 > 0`` and ``lambda1, lambda2 > 0`` everywhere."""
    if np.any(~(m2 > 0)):
        raise ValueError("masses must be > 0 Msun")
    if np.any(m1 < m2):
        raise ValueError("DU17 fits need the primary first: m1 >= m2 (swap (m1, lambda1) with (m2, lambda2))")
    if np.any(~(lambda1 > 0)) or np.any(~(lambda2 > 0)):
        raise ValueError("tidal deformabilities must be > 0")


def ejecta_from_binary(m1: ArrayLike, m2: ArrayLike, lambda1: ArrayLike, lambda2: ArrayLike) -> Ejecta:
    """Ejecta of binaries with masses ``m1 >= m2`` [Msun] and tidal deformabilities ``lambda1, lambda2``.

    Each star keeps its own deformability: star 1 uses ``lambda1`` and star 2
    ``lambda2`` (the KilonovaML tables had ``lambda2 = lambda1`` by a typo), and
    phi_ej is computed from the theta_ej of both stars' compactnesses (KilonovaML
    passed C2 in place of C1).
    """
    m1, m2, lambda1, lambda2 = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (m1, m2, lambda1, lambda2)))
    check_binary(m1, m2, lambda1, lambda2)
    c1, c2 = compactness_from_lambda(lambda1), compactness_from_lambda(lambda2)
    vr = velocity_rho(m1, c1, m2, c2)
    vz = velocity_z(m1, c1, m2, c2)
    theta = opening_angle_theta(vr, vz)
    return Ejecta(
        mass=ejecta_mass(m1, c1, m2, c2),
        velocity=np.sqrt(vr**2 + vz**2),
        v_rho=vr,
        v_z=vz,
        theta=theta,
        phi=opening_angle_phi(theta),
    )
