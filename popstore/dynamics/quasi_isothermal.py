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
import torch

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
    """Spatial cut of the catalogue: ``r_min < R < r_max``, ``|z| < z_max`` [kpc], ``|phi| < phi_max`` [rad].

    The DF is axisymmetric, so drawing azimuths in a wedge ``|phi| < phi_max``
    (instead of the full ``pi``) samples the same DF inside the wedge exactly
    and puts ``pi / phi_max`` times more stars near the Sun (at ``phi = 0``).
    """

    r_min: float = 1.0
    r_max: float = 16.0
    z_max: float = 2.5
    phi_max: float = np.pi

    def __post_init__(self) -> None:
        if not (0 <= self.r_min < self.r_max and self.z_max > 0 and 0 < self.phi_max <= np.pi):
            raise ValueError(f"need 0 <= r_min < r_max, z_max > 0, 0 < phi_max <= pi: {self}")


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
        raw = [self._rg_cdf(p) for p in self.populations]
        # int f_k d^3x d^3v = (2 pi)^3 int dL_z Omega Sigma (1 + tanh) / (2 pi^2 kappa^2) = 4 pi * raw[-1]
        self.log_norms = np.log([4 * np.pi * c[-1] for c in raw])
        self.cdfs = [c / c[-1] for c in raw]

    def _rg_cdf(self, pop: QuasiIsothermal) -> np.ndarray:
        """CDF of R_g: marginal of L_z ∝ Omega Sigma / kappa^2 (1 + tanh(L_z/L0)), times dL_z/dR_g."""
        fr = self.freq
        dens = fr["omega"] * np.exp(-self.rg / pop.scale_length) / fr["kappa"] ** 2 * (1 + np.tanh(self.lz / pop.l0)) * np.gradient(self.lz, self.rg)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(self.rg))])
        return cdf

    def log_df(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log f(x, v) of the mixture (unit total before the spatial cut), differentiable, for (n, 3) float64 tensors.

        Epicyclic actions as in the module docstring; ``R_g(L_z)``, ``kappa``,
        ``nu``, ``Omega`` are interpolated linearly on the ``R_g`` grid (the
        gradients of the interpolants are finite differences on that grid).
        """
        big_r = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
        v_r = (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r
        l_z = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
        grid = torch.as_tensor(self.lz)
        rg = _interp_torch(l_z, grid, torch.as_tensor(self.rg))
        kappa, nu, omega = (_interp_torch(l_z, grid, torch.as_tensor(self.freq[k])) for k in ("kappa", "nu", "omega"))
        e_r = 0.5 * (v_r**2 + kappa**2 * (big_r - rg) ** 2)  # kappa J_R
        e_z = 0.5 * (v[:, 2] ** 2 + nu**2 * x[:, 2] ** 2)  # nu J_z
        r0 = self.potential.r0
        terms = []
        for pop, w, lognorm in zip(self.populations, self.weights, self.log_norms):
            damp = torch.exp(-(rg - r0) / pop.sigma_scale_length)
            s_r2, s_z2 = (pop.sigma_r * damp) ** 2, (pop.sigma_z * damp) ** 2
            log_fr = torch.log(omega / (np.pi * s_r2 * kappa)) - rg / pop.scale_length + torch.log1p(torch.tanh(l_z / pop.l0)) - e_r / s_r2
            log_fz = torch.log(nu / (2 * np.pi * s_z2)) - e_z / s_z2
            terms.append(np.log(w) - lognorm + log_fr + log_fz)
        return torch.logsumexp(torch.stack(terms), dim=0)

    def _interp(self, key: str, rg: np.ndarray) -> np.ndarray:
        return np.interp(rg, self.rg, self.freq[key])

    def sample_population(self, k: int, n: int, rng: np.random.Generator, phi_max: float = np.pi) -> tuple[np.ndarray, np.ndarray]:
        """``n`` stars of population ``k`` with azimuths in ``|phi| < phi_max``: positions (n, 3) [kpc], velocities (n, 3) [km/s]."""
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
        phi = phi_max * (2 * rng.random(n) - 1)
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
            parts = [self.sample_population(k, c, rng, selection.phi_max) for k, c in enumerate(counts) if c]
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


def randomise_azimuth(x: np.ndarray, v: np.ndarray, phi_max: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotate every star about the z axis to a new azimuth uniform in ``|phi| < phi_max``.

    For an axisymmetric system (axisymmetric DF, potential and perturbation)
    every star's azimuth is uniform and independent of its other coordinates,
    so this maps a sample of the full disc onto an exact sample of the wedge;
    used after orbit integration, which smears an initial wedge around the disc.
    """
    rot = phi_max * (2 * rng.random(len(x)) - 1) - np.arctan2(x[:, 1], x[:, 0])
    c, s = np.cos(rot), np.sin(rot)

    def turn(a: np.ndarray) -> np.ndarray:
        return np.stack([c * a[:, 0] - s * a[:, 1], s * a[:, 0] + c * a[:, 1], a[:, 2]], axis=1)

    return turn(x), turn(v)


def _interp_torch(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Differentiable linear interpolation of (xp, fp) at x (xp increasing; clamped at the ends)."""
    i = torch.clamp(torch.searchsorted(xp, x.detach()), 1, len(xp) - 1)
    t = (x - xp[i - 1]) / (xp[i] - xp[i - 1])
    return fp[i - 1] + t * (fp[i] - fp[i - 1])
