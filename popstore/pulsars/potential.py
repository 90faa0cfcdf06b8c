"""Galactic potential of Marchetti, Rossi & Brown 2019 (MNRAS 490, 157), vectorised.

Miyamoto & Nagai (1975) disc + Hernquist (1990) bulge and nucleus + NFW
(Navarro, Frenk & White 1996) halo. Positions in kpc, velocities in km/s,
potentials in (km/s)^2; the natural time unit is kpc / (km/s) (about 977.8 Myr).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popstore.physics.profiles import (
    hernquist_force,
    hernquist_potential,
    miyamoto_nagai_force,
    miyamoto_nagai_potential,
    nfw_force,
    nfw_potential,
)
from popstore.pulsars.config import PulsarConfig


@dataclass(frozen=True)
class MarchettiPotential:
    """G M products (kpc (km/s)^2) and scale lengths (kpc) of the four components."""

    gm_disc: float
    disc_a: float
    disc_b: float
    gm_bulge: float
    bulge_r: float
    gm_nucleus: float
    nucleus_r: float
    gm_halo: float
    halo_r: float

    @classmethod
    def from_config(cls, cfg: PulsarConfig) -> "MarchettiPotential":
        """Build from the cgs constants of the config (G = 6.67e-8, M_sun = 2e33 g)."""
        gm_unit = cfg.G_cgs * cfg.M_sun_g / (cfg.kpc_cm * 1.0e10)  # kpc (km/s)^2 per M_sun
        return cls(
            gm_disc=cfg.disc_mass_msun * gm_unit, disc_a=cfg.disc_a_kpc, disc_b=cfg.disc_b_kpc,
            gm_bulge=cfg.bulge_mass_msun * gm_unit, bulge_r=cfg.bulge_r_kpc,
            gm_nucleus=cfg.nucleus_mass_msun * gm_unit, nucleus_r=cfg.nucleus_r_kpc,
            gm_halo=cfg.halo_mass_msun * gm_unit, halo_r=cfg.halo_r_kpc,
        )

    def phi(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Potential Phi(x, y, z) in (km/s)^2."""
        big_r2 = x * x + y * y
        r = np.sqrt(big_r2 + z * z)
        return (
            self.gm_disc * miyamoto_nagai_potential(big_r2, z, self.disc_a, self.disc_b)
            + self.gm_bulge * hernquist_potential(r, self.bulge_r)
            + self.gm_nucleus * hernquist_potential(r, self.nucleus_r)
            + self.gm_halo * nfw_potential(r, self.halo_r)
        )

    def acceleration(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-grad Phi in (km/s)^2 / kpc, for arrays of any (equal) shape."""
        big_r2 = x * x + y * y
        r = np.sqrt(big_r2 + z * z)
        f_big_r, f_z = miyamoto_nagai_force(big_r2, z, self.disc_a, self.disc_b)
        f_sph = (self.gm_bulge * hernquist_force(r, self.bulge_r) + self.gm_nucleus * hernquist_force(r, self.nucleus_r)
                 + self.gm_halo * nfw_force(r, self.halo_r))
        f_xy = self.gm_disc * f_big_r + f_sph
        return -f_xy * x, -f_xy * y, -(self.gm_disc * f_z + f_sph) * z

    def circular_velocity(self, R: np.ndarray, z: np.ndarray | float = 0.0) -> np.ndarray:
        """v_c = sqrt(R dPhi/dR) (km/s) at cylindrical radius R and height z."""
        R = np.asarray(R, dtype=float)
        ax, _, _ = self.acceleration(R, np.zeros_like(R), np.broadcast_to(np.asarray(z, dtype=float), R.shape))
        return np.sqrt(np.maximum(-ax * R, 0.0))
