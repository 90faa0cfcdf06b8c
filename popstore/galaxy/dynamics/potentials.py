"""Axisymmetric Milky Way potential in torch (differentiable, float64).

The potential of Naik et al. (2021, arXiv:2112.07657, Sect. 3.1), which is
galpy's ``MWPotential2014`` (Bovy 2015, ApJS 216, 29):

- bulge: power-law sphere with exponential cut-off, ``rho ∝ r^-alpha exp(-(r/r_c)^2)``,
  alpha = 1.8, r_c = 1.9 kpc, 5% of the radial force at R0;
- disc: Miyamoto & Nagai (1975) with a = 3 kpc, b = 0.28 kpc, 60% of it;
- halo: NFW (Navarro, Frenk & White 1996) with r_s = 16 kpc, 35% of it;

normalised, as galpy's ``normalize`` does, so that the circular speed at
R0 = 8 kpc is v0 = 220 km/s. Units: kpc, km/s, (km/s)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from popstore.physics.profiles import (
    miyamoto_nagai_force,
    miyamoto_nagai_potential,
    nfw_force,
    nfw_potential,
)


@dataclass(frozen=True)
class MilkyWayPotential:
    """MWPotential2014-like three-component potential (see module docstring)."""

    r0: float = 8.0
    v0: float = 220.0
    bulge_fraction: float = 0.05
    disc_fraction: float = 0.60
    halo_fraction: float = 0.35
    bulge_alpha: float = 1.8
    bulge_rc: float = 1.9
    disc_a: float = 3.0
    disc_b: float = 0.28
    halo_rs: float = 16.0

    def __post_init__(self) -> None:
        if abs(self.bulge_fraction + self.disc_fraction + self.halo_fraction - 1) > 1e-9:
            raise ValueError("component force fractions must add up to 1")
        if not 0 < self.bulge_alpha < 2:
            raise ValueError("bulge_alpha must be in (0, 2)")

    # unit-amplitude component potentials of (R, z) tensors
    def _bulge(self, r: torch.Tensor) -> torch.Tensor:
        a, rc = self.bulge_alpha, self.bulge_rc
        s = (r / rc) ** 2
        inner = rc ** (3 - a) * math.gamma(1.5 - a / 2) * torch.special.gammainc(torch.full_like(s, 1.5 - a / 2), s) / r
        outer = rc ** (2 - a) * math.gamma(1 - a / 2) * torch.special.gammaincc(torch.full_like(s, 1 - a / 2), s)
        return -2 * math.pi * (inner + outer)  # -4 pi [M(<r)/(4 pi r) + int_r^inf rho r dr] with rho = r^-a exp(-(r/rc)^2)

    def _components(self, big_r: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = torch.sqrt(big_r**2 + z**2)
        return (self._bulge(r), miyamoto_nagai_potential(big_r**2, z, self.disc_a, self.disc_b),
                nfw_potential(r, self.halo_rs))

    @cached_property
    def amplitudes(self) -> tuple[float, float, float]:
        """(GM-like) amplitudes giving each component its share of v0^2 / R0 at (R0, 0)."""
        big_r = torch.tensor(self.r0, dtype=torch.float64, requires_grad=True)
        comps = self._components(big_r, torch.zeros((), dtype=torch.float64))
        fracs = (self.bulge_fraction, self.disc_fraction, self.halo_fraction)
        unit = [float(torch.autograd.grad(c, big_r, retain_graph=True)[0]) for c in comps]
        return tuple(f * self.v0**2 / self.r0 / u for f, u in zip(fracs, unit))

    def potential_rz(self, big_r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Phi(R, z) [(km/s)^2]."""
        return sum(a * c for a, c in zip(self.amplitudes, self._components(big_r, z)))

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """Phi at Cartesian positions (n, 3) [(km/s)^2]."""
        return self.potential_rz(torch.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2), x[..., 2])

    def acceleration(self, x: torch.Tensor) -> torch.Tensor:
        """-grad Phi at Cartesian positions (n, 3) [(km/s)^2/kpc], from the closed-form forces.

        Bulge: ``-M(<r)/r^2`` with ``M(<r) = 2 pi r_c^(3-alpha) gamma(3/2 - alpha/2, r^2/r_c^2)``;
        Miyamoto-Nagai and NFW: :mod:`popstore.physics.profiles` (each times its amplitude).
        Agrees with ``-grad`` of :meth:`potential` (tested).
        """
        a_b, a_d, a_h = self.amplitudes
        al, rc = self.bulge_alpha, self.bulge_rc
        r = torch.linalg.norm(x, dim=-1)
        m_b = 2 * math.pi * rc ** (3 - al) * math.gamma(1.5 - al / 2) * torch.special.gammainc(torch.full_like(r, 1.5 - al / 2), (r / rc) ** 2)
        f_sph = a_b * m_b / r**3 + a_h * nfw_force(r, self.halo_rs)  # (dPhi/dr) / r
        f_big_r, f_z = miyamoto_nagai_force(x[..., 0] ** 2 + x[..., 1] ** 2, x[..., 2], self.disc_a, self.disc_b)
        f_xy = f_sph + a_d * f_big_r
        return -torch.stack([f_xy * x[..., 0], f_xy * x[..., 1], (f_sph + a_d * f_z) * x[..., 2]], dim=-1)

    def frequencies(self, big_r: np.ndarray) -> dict[str, np.ndarray]:
        """Circular speed and epicyclic frequencies in the plane at radii ``big_r`` [kpc].

        Returns ``v_c`` [km/s] and ``omega``, ``kappa``, ``nu`` [km/s/kpc], with
        ``Omega^2 = Phi_R / R``, ``kappa^2 = Phi_RR + 3 Phi_R / R``,
        ``nu^2 = Phi_zz`` at z = 0 (Binney & Tremaine 2008, eqs 3.79-3.80).
        """
        rr = torch.as_tensor(np.asarray(big_r, dtype=np.float64)).requires_grad_(True)
        zz = torch.zeros_like(rr).requires_grad_(True)
        phi = self.potential_rz(rr, zz).sum()
        d_r, d_z = torch.autograd.grad(phi, (rr, zz), create_graph=True)
        d_rr = torch.autograd.grad(d_r.sum(), rr, retain_graph=True)[0]
        d_zz = torch.autograd.grad(d_z.sum(), zz)[0]
        d_r, d_rr, d_zz, rn = d_r.detach().numpy(), d_rr.numpy(), d_zz.numpy(), rr.detach().numpy()
        return {
            "v_c": np.sqrt(rn * d_r),
            "omega": np.sqrt(d_r / rn),
            "kappa": np.sqrt(d_rr + 3 * d_r / rn),
            "nu": np.sqrt(d_zz),
        }
