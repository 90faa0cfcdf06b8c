"""The Hernquist (1990, ApJ 356, 359) sphere: potential, distribution functions, exact samplers.

Potential ``Phi(r) = -G M / (r + a)``, density ``rho = M a / (2 pi r (r + a)^3)``,
enclosed mass ``M(<r) = M r^2 / (r + a)^2``, radial acceleration
``a(r) = -G M / (r + a)^2``.

Two distribution functions of the same density, both normalised to unit total
(so they are probability densities in phase space; the papers' convention,
An et al. 2021, arXiv:2106.05981, Sect. 3):

- isotropic, Hernquist (1990) eq. 17, with ``B = -E a / (G M)``::

    f(E) = sqrt(B) / (sqrt(2) (2 pi)^3 (G M a)^{3/2} (1 - B)^2)
           [(1 - 2B)(8B^2 - 8B - 3) + 3 arcsin(sqrt B) / sqrt(B (1 - B))];

- constant anisotropy beta = 1/2 (Baes & Dejonghe 2002, A&A 393, 485)::

    f(E, L) = 3 a E^2 / (4 pi^3 (G M)^3 L).

Samplers are exact (no MCMC, no grid approximation in the accepted draws):
radii by inverting ``M(<r)``; for the isotropic DF, ``q = v / v_esc`` by
rejection under a step envelope (:mod:`popstore.galaxy.dynamics.rejection`); for the
beta = 1/2 DF, ``p(v_r, v_t) v_t`` is ``∝ (Psi - v^2/2)^2`` on the half disc
``v_t > 0``, so ``s = v^2 / (2 Psi)`` has CDF ``1 - (1 - s)^3`` and the
polar angle in the ``(v_r, v_t)`` plane is uniform on ``(0, pi)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from popstore.galaxy.dynamics.constants import G
from popstore.physics.profiles import hernquist_potential
from popstore.galaxy.dynamics.rejection import sample_q2_decreasing


@dataclass(frozen=True)
class Hernquist:
    """A Hernquist sphere of total ``mass`` [Msun] and ``scale_radius`` a [kpc]."""

    mass: float = 1e10
    scale_radius: float = 5.0

    def __post_init__(self) -> None:
        if not (self.mass > 0 and self.scale_radius > 0):
            raise ValueError(f"need mass > 0 and scale_radius > 0, got {self.mass}, {self.scale_radius}")

    # -- structure -----------------------------------------------------------
    @property
    def gm(self) -> float:
        """G M in kpc (km/s)^2."""
        return G * self.mass

    def potential(self, r: np.ndarray) -> np.ndarray:
        """Phi(r) [(km/s)^2]."""
        return self.gm * hernquist_potential(np.asarray(r), self.scale_radius)

    def escape_speed(self, r: np.ndarray) -> np.ndarray:
        """sqrt(-2 Phi(r)) [km/s]."""
        return np.sqrt(-2.0 * self.potential(r))

    def density(self, r: np.ndarray) -> np.ndarray:
        """Mass density [Msun / kpc^3]."""
        r = np.asarray(r, dtype=float)
        return self.mass * self.scale_radius / (2 * np.pi * r * (r + self.scale_radius) ** 3)

    def mass_fraction(self, r: np.ndarray) -> np.ndarray:
        """M(<r) / M = r^2 / (r + a)^2."""
        r = np.asarray(r, dtype=float)
        return r**2 / (r + self.scale_radius) ** 2

    def radial_acceleration(self, r: np.ndarray) -> np.ndarray:
        """a_r(r) = -G M / (r + a)^2 [(km/s)^2 / kpc]."""
        return -self.gm / (np.asarray(r, dtype=float) + self.scale_radius) ** 2

    def acceleration(self, x: np.ndarray) -> np.ndarray:
        """Cartesian acceleration vectors at positions ``x`` (..., 3) [(km/s)^2/kpc]."""
        x = np.asarray(x, dtype=float)
        r = np.linalg.norm(x, axis=-1, keepdims=True)
        return self.radial_acceleration(r) * x / r

    # -- distribution functions ----------------------------------------------
    def _binding(self, energy):
        """B = -E a / (G M) for numpy arrays or torch tensors."""
        return -energy * self.scale_radius / self.gm

    def isotropic_df(self, energy: np.ndarray) -> np.ndarray:
        """Isotropic f(E) [(kpc km/s)^-3], unit total; zero outside -GM/a < E < 0."""
        b = np.asarray(self._binding(np.asarray(energy, dtype=float)))
        inside = (b > 0) & (b < 1)
        bb = np.where(inside, b, 0.5)
        bracket = (1 - 2 * bb) * (8 * bb**2 - 8 * bb - 3) + 3 * np.arcsin(np.sqrt(bb)) / np.sqrt(bb * (1 - bb))
        norm = 1.0 / (np.sqrt(2.0) * (2 * np.pi) ** 3 * (self.gm * self.scale_radius) ** 1.5)
        # the bracket cancels to O(B^3) as B -> 0; clip round-off below zero
        return np.where(inside, norm * np.sqrt(bb) / (1 - bb) ** 2 * np.maximum(bracket, 0.0), 0.0)

    def anisotropic_df(self, energy: np.ndarray, ang_mom: np.ndarray) -> np.ndarray:
        """beta = 1/2 f(E, L) [(kpc km/s)^-3], unit total; zero for E >= 0."""
        e = np.asarray(energy, dtype=float)
        return np.where(e < 0, 3 * self.scale_radius * e**2 / (4 * np.pi**3 * self.gm**3 * np.asarray(ang_mom)), 0.0)

    def log_df(self, x: torch.Tensor, v: torch.Tensor, kind: str = "isotropic") -> torch.Tensor:
        """log f(x, v) for (n, 3) tensors, differentiable (use float64); ``kind``: isotropic|anisotropic.

        Points outside the DF's support give ``-inf``.
        """
        r = torch.linalg.norm(x, dim=-1)
        energy = 0.5 * (v * v).sum(-1) + self.gm * hernquist_potential(r, self.scale_radius)
        if kind == "isotropic":
            b = self._binding(energy)
            inside = (b > 0) & (b < 1)
            bb = torch.where(inside, b, torch.full_like(b, 0.5))
            bracket = (1 - 2 * bb) * (8 * bb**2 - 8 * bb - 3) + 3 * torch.asin(torch.sqrt(bb)) / torch.sqrt(bb * (1 - bb))
            lognorm = -np.log(np.sqrt(2.0) * (2 * np.pi) ** 3 * (self.gm * self.scale_radius) ** 1.5)
            logf = lognorm + 0.5 * torch.log(bb) - 2 * torch.log1p(-bb) + torch.log(bracket)
        elif kind == "anisotropic":
            inside = energy < 0
            ang = torch.linalg.norm(torch.linalg.cross(x, v, dim=-1), dim=-1)
            lognorm = np.log(3 * self.scale_radius / (4 * np.pi**3 * self.gm**3))
            logf = lognorm + 2 * torch.log(torch.where(inside, -energy, torch.ones_like(energy))) - torch.log(ang)
        else:
            raise ValueError(f"unknown DF kind {kind!r}; use 'isotropic' or 'anisotropic'")
        return torch.where(inside, logf, torch.full_like(logf, -torch.inf))

    # -- exact samplers -------------------------------------------------------
    def sample_radii(self, n: int, rng: np.random.Generator, r_max: float = np.inf) -> np.ndarray:
        """Radii from M(<r) by inversion, truncated at ``r_max`` [kpc]."""
        u = rng.random(n) * (self.mass_fraction(r_max) if np.isfinite(r_max) else 1.0)
        su = np.sqrt(u)
        return self.scale_radius * su / (1 - su)

    def sample(self, n: int, rng: np.random.Generator, kind: str = "isotropic", r_max: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """``n`` stars (positions [kpc], velocities [km/s], each (n, 3)) drawn exactly from the DF ``kind``."""
        if n < 1:
            raise ValueError(f"need n >= 1, got {n}")
        r = self.sample_radii(n, rng, r_max)
        x = r[:, None] * _unit_vectors(n, rng)
        psi = -self.potential(r)
        if kind == "isotropic":
            q = sample_q2_decreasing(lambda i, q: self.isotropic_df(-psi[i] * (1 - q**2)), n, rng)
            v = (q * np.sqrt(2 * psi))[:, None] * _unit_vectors(n, rng)
        elif kind == "anisotropic":
            speed = np.sqrt(2 * psi * (1 - (1 - rng.random(n)) ** (1 / 3)))
            theta = np.pi * rng.random(n)
            alpha = 2 * np.pi * rng.random(n)
            e_r, e_th, e_ph = _spherical_basis(x)
            vt = speed * np.sin(theta)
            v = (speed * np.cos(theta))[:, None] * e_r + (vt * np.cos(alpha))[:, None] * e_th + (vt * np.sin(alpha))[:, None] * e_ph
        else:
            raise ValueError(f"unknown DF kind {kind!r}; use 'isotropic' or 'anisotropic'")
        return x, v


def multiplicative_noise(a: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply every component by N(1, sigma), the papers' noise model (An et al. 2021, Sect. 3.2)."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    return a * rng.normal(1.0, sigma, size=a.shape) if sigma > 0 else a.copy()


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _spherical_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (e_r, e_theta, e_phi) at Cartesian positions (n, 3)."""
    r = np.linalg.norm(x, axis=1)
    theta = np.arccos(np.clip(x[:, 2] / r, -1, 1))
    phi = np.arctan2(x[:, 1], x[:, 0])
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    e_r = np.stack([st * cp, st * sp, ct], axis=1)
    e_th = np.stack([ct * cp, ct * sp, -st], axis=1)
    e_ph = np.stack([-sp, cp, np.zeros_like(sp)], axis=1)
    return e_r, e_th, e_ph
