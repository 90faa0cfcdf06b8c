"""Quasi-isothermal disc DFs in the epicyclic approximation, sampled exactly.

The quasi-isothermal DF (Binney 2010, MNRAS 401, 2318; Binney & McMillan 2011,
MNRAS 413, 1889) is ``f = f_R(J_R, L_z) f_z(J_z, L_z)`` with

    f_R = Omega Sigma(R_g) / (pi sigma_R^2 kappa) [1 + tanh(L_z / L_0)] exp(-kappa J_R / sigma_R^2),
    f_z = nu / (2 pi sigma_z^2) exp(-nu J_z / sigma_z^2),

evaluated at the guiding radius ``R_g(L_z)``, with ``Sigma ∝ exp(-R/h_R)``
and ``sigma_{R,z}(R) = sigma_{R,z}(R0) exp(-(R - R0)/h_sigma)``.
Naik et al. (2021, arXiv:2112.07657, Sect. 3.1) used galpy's version with
Staeckel actions (delta = 0.45) and MCMC sampling. Here the actions are the
epicyclic ones (Binney & Tremaine 2008, Sect. 3.2.3):
``J_R = [v_R^2 + kappa^2 (R - R_g)^2] / (2 kappa)``,
``J_z = [v_z^2 + nu^2 z^2] / (2 nu)``, ``v_phi = L_z / R``. In these
variables the DF factorises into Gaussians, so it is sampled exactly and
fast: ``L_z`` from its marginal ``∝ Omega Sigma / kappa^2 [1 + tanh(L_z/L_0)]``
(inverse CDF on a fine grid in ``R_g``, linear interpolation), then
``R - R_g ~ N(0, sigma_R / kappa)``, ``v_R ~ N(0, sigma_R)``,
``z ~ N(0, sigma_z / nu)``, ``v_z ~ N(0, sigma_z)``, ``phi`` uniform.

Caveat (honest): epicyclic actions are exact integrals only of the harmonic
expansion of the potential about ``R_g``; in the full potential the sample
is in equilibrium to first order in the epicycle amplitude, so the true
accelerations are recovered by the CBE method only to that order
(percent level for the hot, thick populations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from popstore.dynamics.potentials import MilkyWayPotential


@dataclass(frozen=True)
class QuasiIsothermal:
    """One disc population: its weight in the mixture and qDF parameters.

    ``scale_length`` h_R [kpc], ``sigma_r``/``sigma_z`` [km/s] at ``r0``,
    ``sigma_scale_length`` h_sigma [kpc], ``l0`` [kpc km/s].
    """

    weight: float = 1.0
    scale_length: float = 2.5
    sigma_r: float = 35.0
    sigma_z: float = 25.0
    sigma_scale_length: float = 8.0
    l0: float = 10.0

    def __post_init__(self) -> None:
        if min(self.weight, self.scale_length, self.sigma_r, self.sigma_z, self.sigma_scale_length, self.l0) <= 0:
            raise ValueError(f"all qDF parameters must be positive: {self}")


#: An illustrative three-population disc (thin young, thin old, thick), in the
#: spirit of the mono-abundance populations of Bovy & Rix (2013, ApJ 779, 115);
#: Naik et al. (2021) also used a superposition of quasi-isothermal DFs.
DEFAULT_POPULATIONS: tuple[QuasiIsothermal, ...] = (
    QuasiIsothermal(weight=0.45, scale_length=3.0, sigma_r=30.0, sigma_z=15.0),
    QuasiIsothermal(weight=0.40, scale_length=2.5, sigma_r=40.0, sigma_z=25.0),
    QuasiIsothermal(weight=0.15, scale_length=2.0, sigma_r=55.0, sigma_z=45.0),
)


@dataclass(frozen=True)
class Selection:
    """Spatial cut of the catalogue: ``r_min < R < r_max`` and ``|z| < z_max`` [kpc]."""

    r_min: float = 1.0
    r_max: float = 16.0
    z_max: float = 2.5


class QuasiIsothermalMixture:
    """A weighted sum of :class:`QuasiIsothermal` populations in a :class:`MilkyWayPotential`."""

    def __init__(self, populations: Sequence[QuasiIsothermal] = DEFAULT_POPULATIONS,
                 potential: MilkyWayPotential | None = None, rg_grid: tuple[float, float, int] = (0.05, 40.0, 8192)) -> None:
        if not populations:
            raise ValueError("need at least one population")
        self.populations = tuple(populations)
        self.potential = potential or MilkyWayPotential()
        self.rg = np.linspace(*rg_grid[:2], int(rg_grid[2]))
        fr = self.potential.frequencies(self.rg)
        self.freq = fr
        self.lz = self.rg * fr["v_c"]
        w = np.array([p.weight for p in self.populations])
        self.weights = w / w.sum()
        self.cdfs = [self._rg_cdf(p) for p in self.populations]

    def _rg_cdf(self, pop: QuasiIsothermal) -> np.ndarray:
        """CDF of R_g: marginal of L_z ∝ Omega Sigma / kappa^2 (1 + tanh(L_z/L0)), times dL_z/dR_g."""
        fr = self.freq
        dens = fr["omega"] * np.exp(-self.rg / pop.scale_length) / fr["kappa"] ** 2 * (1 + np.tanh(self.lz / pop.l0)) * np.gradient(self.lz, self.rg)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(self.rg))])
        return cdf / cdf[-1]

    def _interp(self, key: str, rg: np.ndarray) -> np.ndarray:
        return np.interp(rg, self.rg, self.freq[key])

    def sample_population(self, k: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` untruncated stars of population ``k``: positions (n, 3) [kpc], velocities (n, 3) [km/s]."""
        pop = self.populations[k]
        rg = np.interp(rng.random(n), self.cdfs[k], self.rg)
        r0 = self.potential.r0
        s_r = pop.sigma_r * np.exp(-(rg - r0) / pop.sigma_scale_length)
        s_z = pop.sigma_z * np.exp(-(rg - r0) / pop.sigma_scale_length)
        kappa, nu, vc = self._interp("kappa", rg), self._interp("nu", rg), self._interp("v_c", rg)
        big_r = rg + s_r / kappa * rng.standard_normal(n)
        v_r = s_r * rng.standard_normal(n)
        z = s_z / nu * rng.standard_normal(n)
        v_z = s_z * rng.standard_normal(n)
        phi = 2 * np.pi * rng.random(n)
        big_r = np.abs(big_r)  # R - R_g < -R_g has Gaussian weight ~exp(-(kappa R_g / sigma_R)^2 / 2): negligible; mirror it
        v_phi = rg * vc / big_r
        c, s = np.cos(phi), np.sin(phi)
        x = np.stack([big_r * c, big_r * s, z], axis=1)
        v = np.stack([v_r * c - v_phi * s, v_r * s + v_phi * c, v_z], axis=1)
        return x, v

    def sample(self, n: int, rng: np.random.Generator, selection: Selection = Selection()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` stars of the mixture inside ``selection``: positions, velocities, population index."""
        if n < 1:
            raise ValueError(f"need n >= 1, got {n}")
        xs, vs, ks, have, accept_rate = [], [], [], 0, 0.5
        while have < n:
            m = int(np.ceil((n - have) / accept_rate * 1.1)) + 16
            counts = rng.multinomial(m, self.weights)
            parts = [self.sample_population(k, c, rng) for k, c in enumerate(counts) if c]
            x = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            k = np.repeat(np.arange(len(counts)), counts)
            order = rng.permutation(m)  # interleave populations before truncating to n
            x, v, k = x[order], v[order], k[order]
            big_r = np.hypot(x[:, 0], x[:, 1])
            ok = (big_r > selection.r_min) & (big_r < selection.r_max) & (np.abs(x[:, 2]) < selection.z_max)
            accept_rate = max(ok.mean(), 1e-3)
            xs.append(x[ok]), vs.append(v[ok]), ks.append(k[ok])
            have += int(ok.sum())
        return np.concatenate(xs)[:n], np.concatenate(vs)[:n], np.concatenate(ks)[:n]
