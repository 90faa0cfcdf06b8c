"""Quasi-isothermal disc DFs with Staeckel (or epicyclic) actions, sampled exactly.

The quasi-isothermal DF (Binney 2010, MNRAS 401, 2318; Binney & McMillan 2011,
MNRAS 413, 1889) is ``f = f_R(J_R, L_z) f_z(J_z, L_z)`` with

    f_R = Omega Sigma(R_g) / (pi sigma_R^2 kappa) [1 + tanh(L_z / L_0)] exp(-kappa J_R / sigma_R^2),
    f_z = nu / (2 pi sigma_z^2) exp(-nu J_z / sigma_z^2),

evaluated at the guiding radius ``R_g(L_z)``, with ``Sigma ∝ exp(-R/h_R)``
and ``sigma_{R,z}(R) = sigma_{R,z}(R0) exp(-(R - R0)/h_sigma)``.

Actions. Naik et al. (2021, arXiv:2112.07657, Sect. 3.1) used galpy's qDF
with Staeckel-fudge actions (delta = 0.45 in galpy units, i.e. 0.45 R0);
that is the default here (:mod:`popstore.galaxy.dynamics.staeckel`). Being
functions of (nearly exact) integrals of motion of the potential the orbits
and truth accelerations use, these DFs are in equilibrium: the CBE
acceleration of the exact DF matches the force at the Sun to ~0.2% (tested;
``benchmarks/bench_flows_solar_neighbourhood.py`` prints it). The
alternative ``actions="epicyclic"`` (Binney & Tremaine 2008, Sect. 3.2.3),
``J_R = [v_R^2 + kappa^2 (R - R_g)^2] / (2 kappa)``,
``J_z = [v_z^2 + nu^2 z^2] / (2 nu)``, makes the DF Gaussian in
``(R - R_g, v_R, z, v_z)``, so it is sampled directly and fast, but it is an
equilibrium only of the harmonic expansion of the potential: its CBE
accelerations at the Sun are 7% (z = 0) to 24% (|z| = 0.5 kpc) off.

Sampling. ``L_z`` from its marginal ``∝ Omega Sigma / kappa^2 [1 + tanh(L_z/L_0)]``
(the same for both actions; inverse CDF on a fine grid in ``R_g``), then
``R - R_g``, ``v_R``, ``z``, ``v_z`` independent, ``phi`` uniform
(:meth:`QuasiIsothermalMixture.sample_population`): exactly the epicyclic
qDF with Gaussian offsets, and a proposal for von Neumann rejection towards
the Staeckel qDF (:meth:`QuasiIsothermalMixture.sample`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from popstore.galaxy.dynamics.potentials import MilkyWayPotential
from popstore.galaxy.dynamics.staeckel import StaeckelActions

#: Proposal of the Staeckel-action sampler: (offsets, weight, radial factor, vertical factor) components,
#: see :meth:`QuasiIsothermalMixture.sample_population`.
PROPOSAL: tuple[tuple[str, float, float, float], ...] = (("gaussian", 0.5, 1.1, 1.3), ("laplace", 0.5, 2.0, 2.0))
#: Bounds M_k on f_k / q_k of the rejection sampler for the populations of ``DEFAULT_POPULATIONS`` (see
#: :meth:`QuasiIsothermalMixture.sample`): about twice the largest ratio found in ~250,000 proposals per
#: population inside 1 < R < 16 kpc, |z| < 2.5 kpc (11.5, 25.3, 43.4). The hot inner orbits of the thick
#: population are far from epicyclic (J_R, J_z up to 5x below their epicyclic values), hence its larger bound.
REJECTION_BOUNDS: tuple[float, ...] = (20.0, 50.0, 100.0)


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
    """A weighted sum of :class:`QuasiIsothermal` populations in a :class:`MilkyWayPotential`.

    ``actions="staeckel"`` (default): the qDFs of Naik et al. (2021) with
    Staeckel-fudge actions (:class:`~popstore.galaxy.dynamics.staeckel.StaeckelActions`,
    focal distance ``delta`` [kpc], default 0.45 R0), sampled exactly by
    rejection from a separable ``proposal`` (see :meth:`sample`); ``"epicyclic"``: the
    epicyclic-action qDFs, sampled directly. ``rejection_bounds``: one bound
    per population (default :data:`REJECTION_BOUNDS` for ``DEFAULT_POPULATIONS``,
    their maximum for other population sets; too small a bound raises, never biases).
    """

    def __init__(self, populations: Sequence[QuasiIsothermal] = DEFAULT_POPULATIONS,
                 potential: MilkyWayPotential | None = None, rg_grid: tuple[float, float, int] = (0.05, 40.0, 8192),
                 actions: Literal["staeckel", "epicyclic"] = "staeckel", delta: float | None = None,
                 proposal: Sequence[tuple[str, float, float, float]] = PROPOSAL,
                 rejection_bounds: Sequence[float] | None = None) -> None:
        if not populations:
            raise ValueError("need at least one population")
        if actions not in ("staeckel", "epicyclic"):
            raise ValueError(f"actions must be 'staeckel' or 'epicyclic', got {actions!r}")
        if not proposal or any(c[0] not in ("gaussian", "laplace") or min(c[1:]) <= 0 for c in proposal):
            raise ValueError(f"need proposal components (gaussian|laplace, weight > 0, factors > 0), got {proposal}")
        if rejection_bounds is None:
            rejection_bounds = REJECTION_BOUNDS if tuple(populations) == DEFAULT_POPULATIONS else [max(REJECTION_BOUNDS)] * len(populations)
        if len(rejection_bounds) != len(populations) or min(rejection_bounds) <= 0:
            raise ValueError(f"need one positive rejection bound per population, got {rejection_bounds}")
        self.populations = tuple(populations)
        self.potential = potential or MilkyWayPotential()
        self.actions = actions
        self.staeckel = StaeckelActions(self.potential, delta) if actions == "staeckel" else None
        total = sum(c[1] for c in proposal)
        self.proposal = tuple((str(c[0]), float(c[1]) / total, float(c[2]), float(c[3])) for c in proposal)
        self.rejection_bounds = np.asarray(rejection_bounds, dtype=float)
        self.rg = np.linspace(*rg_grid[:2], int(rg_grid[2]))
        fr = self.potential.frequencies(self.rg)
        self.freq = fr
        self.lz = self.rg * fr["v_c"]
        w = np.array([p.weight for p in self.populations])
        self.weights = w / w.sum()
        raw = [self._rg_cdf(p) for p in self.populations]
        # int f_k d^3x d^3v = (2 pi)^3 int dL_z Omega Sigma (1 + tanh) / (2 pi^2 kappa^2) = 4 pi * raw[-1]
        # (epicyclic actions; independent of the dispersions, so it also normalises the inflated proposal)
        self.log_norms = np.log([4 * np.pi * c[-1] for c in raw])
        self.cdfs = [c / c[-1] for c in raw]
        self.log_lz_density = [np.log(np.gradient(c / c[-1], self.lz)) for c in raw]  # marginal p(L_z) [1/(kpc km/s)]

    def _rg_cdf(self, pop: QuasiIsothermal) -> np.ndarray:
        """CDF of R_g: marginal of L_z ∝ Omega Sigma / kappa^2 (1 + tanh(L_z/L0)), times dL_z/dR_g."""
        fr = self.freq
        dens = fr["omega"] * np.exp(-self.rg / pop.scale_length) / fr["kappa"] ** 2 * (1 + np.tanh(self.lz / pop.l0)) * np.gradient(self.lz, self.rg)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(self.rg))])
        return cdf

    def _log_populations(self, x: torch.Tensor, v: torch.Tensor, actions: Literal["staeckel", "epicyclic"]) -> torch.Tensor:
        """(K, n) ``log w_k - log N_k + log f_k(x, v)`` with the given actions.

        ``R_g(L_z)``, ``kappa``, ``nu``, ``Omega`` are interpolated linearly on
        the ``R_g`` grid (the gradients of the interpolants are finite
        differences on that grid). Epicyclic actions as in the module docstring.
        """
        big_r = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
        l_z = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
        grid = torch.as_tensor(self.lz)
        rg = _interp_torch(l_z, grid, torch.as_tensor(self.rg))
        kappa, nu, omega = (_interp_torch(l_z, grid, torch.as_tensor(self.freq[k])) for k in ("kappa", "nu", "omega"))
        if actions == "staeckel":
            j = self.staeckel(x, v)
            j_r, j_z = j[:, 0], j[:, 1]
        else:
            v_r = (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r
            j_r = 0.5 * (v_r**2 + kappa**2 * (big_r - rg) ** 2) / kappa
            j_z = 0.5 * (v[:, 2] ** 2 + nu**2 * x[:, 2] ** 2) / nu
        r0 = self.potential.r0
        terms = []
        for pop, w, lognorm in zip(self.populations, self.weights, self.log_norms):
            damp = torch.exp(-(rg - r0) / pop.sigma_scale_length)
            s_r2, s_z2 = (pop.sigma_r * damp) ** 2, (pop.sigma_z * damp) ** 2
            log_fr = torch.log(omega / (np.pi * s_r2 * kappa)) - rg / pop.scale_length + torch.log1p(torch.tanh(l_z / pop.l0)) - kappa * j_r / s_r2
            log_fz = torch.log(nu / (2 * np.pi * s_z2)) - nu * j_z / s_z2
            terms.append(np.log(w) - lognorm + log_fr + log_fz)
        return torch.stack(terms)

    def log_df(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log f(x, v) of the mixture, differentiable, for (n, 3) float64 tensors.

        Unit total before the spatial cut for epicyclic actions; with Staeckel
        actions each population keeps the epicyclic normalisation constant
        (total ``sum_k w_k Z_k`` with ``Z_k`` = 1 to a few per cent; the
        sampler draws exactly this function, and the CBE method ignores the
        normalisation).
        """
        return torch.logsumexp(self._log_populations(x, v, self.actions), dim=0)

    def _interp(self, key: str, rg: np.ndarray) -> np.ndarray:
        """Frequency ``key`` of :attr:`freq` at guiding radii ``rg`` (linear interpolation)."""
        return np.interp(rg, self.rg, self.freq[key])

    def _offset_scales(self, k: int, rg: np.ndarray, factors: tuple[float, float]) -> tuple[np.ndarray, ...]:
        """Proposal scales at guiding radii ``rg``: sigma_R, sigma_z [km/s], sigma_R/kappa, sigma_z/nu [kpc], all times ``factors``."""
        pop = self.populations[k]
        damp = np.exp(-(rg - self.potential.r0) / pop.sigma_scale_length)
        s_r, s_z = factors[0] * pop.sigma_r * damp, factors[1] * pop.sigma_z * damp
        return s_r, s_z, s_r / self._interp("kappa", rg), s_z / self._interp("nu", rg)

    def sample_population(self, k: int, n: int, rng: np.random.Generator, phi_max: float = np.pi,
                          component: tuple[str, float, float, float] = ("gaussian", 1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws of a separable approximation of population ``k``, ``|phi| < phi_max``: positions (n, 3) [kpc], velocities (n, 3) [km/s].

        ``L_z`` from the qDF's marginal; ``v_R``, ``v_z`` Gaussian with
        ``sigma_{R,z}(R_g)`` times the factors of ``component = (offsets,
        weight, radial factor, vertical factor)``; ``R - R_g`` and ``z``
        Gaussian (``offsets="gaussian"``, width ``sigma/kappa``, ``sigma_z/nu``
        times the factors) or Laplace (``"laplace"``, same scales: exponential
        tails, which dominate those of every qDF with actions that grow faster
        than linearly with the excursion); ``R < 0`` is mirrored. With
        ``("gaussian", w, 1, 1)`` this is the epicyclic qDF (up to the mirror term).
        """
        rg = np.interp(rng.random(n), self.cdfs[k], self.rg)
        s_r, s_z, w_r, w_z = self._offset_scales(k, rg, component[2:])
        draw = rng.standard_normal if component[0] == "gaussian" else rng.laplace
        big_r = np.abs(rg + w_r * draw(size=n))
        v_r = s_r * rng.standard_normal(n)
        z = w_z * draw(size=n)
        v_z = s_z * rng.standard_normal(n)
        phi = phi_max * (2 * rng.random(n) - 1)
        v_phi = rg * self._interp("v_c", rg) / big_r
        c, s = np.cos(phi), np.sin(phi)
        x = np.stack([big_r * c, big_r * s, z], axis=1)
        v = np.stack([v_r * c - v_phi * s, v_r * s + v_phi * c, v_z], axis=1)
        return x, v

    def log_proposal(self, x: np.ndarray, v: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Log density in (x, v) of the mixture of :attr:`proposal` components for population ``k`` (n,), azimuths uniform over 2 pi.

        ``d^3x d^3v = dR dphi dz dv_R dL_z dv_z``, so the density is
        ``p(L_z) p(R | L_z) p(v_R) p(z) p(v_z) / (2 pi)``, with
        ``p(R | L_z) = p_off(R - R_g) + p_off(-R - R_g)`` (mirror).
        """
        big_r = np.hypot(x[:, 0], x[:, 1])
        v_r = (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r
        l_z = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
        rg = np.interp(l_z, self.lz, self.rg)
        log_lz = np.choose(k, [np.interp(l_z, self.lz, d) for d in self.log_lz_density])
        gauss = lambda d, w: -0.5 * (d / w) ** 2 - np.log(np.sqrt(2 * np.pi) * w)
        laplace = lambda d, w: -np.abs(d) / w - np.log(2 * w)
        terms = []
        for kind, weight, f_r, f_z in self.proposal:
            scales = [np.choose(k, arrs) for arrs in zip(*(self._offset_scales(j, rg, (f_r, f_z)) for j in range(len(self.populations))))]
            s_r, s_z, w_r, w_z = scales
            off = gauss if kind == "gaussian" else laplace
            log_r = np.logaddexp(off(big_r - rg, w_r), off(-big_r - rg, w_r))
            terms.append(np.log(weight) + log_lz + log_r + gauss(v_r, s_r) + off(x[:, 2], w_z) + gauss(v[:, 2], s_z) - np.log(2 * np.pi))
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def log_acceptance_ratio(self, x: np.ndarray, v: np.ndarray, k: np.ndarray) -> np.ndarray:
        """``log [f_k(x, v) / q_k(x, v)]``: Staeckel-action population ``k`` (normalised as in :meth:`log_df`) over its proposal."""
        with torch.no_grad():
            target = self._log_populations(torch.from_numpy(x), torch.from_numpy(v), "staeckel")
        target = target.gather(0, torch.from_numpy(k)[None])[0].numpy() - np.log(self.weights[k])
        return target - self.log_proposal(x, v, k)

    def sample(self, n: int, rng: np.random.Generator, selection: Selection = Selection()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` stars of the mixture inside ``selection``: positions, velocities, population index.

        Epicyclic actions: direct draws of the qDFs (:meth:`sample_population`).
        Staeckel actions: von Neumann (1951) rejection. A population ``k`` is
        picked with probability ``∝ w_k M_k``, a star drawn from the proposal ``q_k``
        (the :attr:`proposal` mixture of Gaussian and Laplace-tailed separable
        components, :meth:`log_proposal`), the spatial cut applied, and the
        star kept with probability ``f_k / (M_k q_k)``, ``M_k = rejection_bounds[k]``.
        The kept (star, k) pairs have density ``∝ w_k M_k q_k f_k / (M_k q_k)
        = w_k f_k``: exact draws from ``sum_k w_k f_k`` whenever
        ``f_k <= M_k q_k``; this is checked on every proposal, and a
        larger ratio raises ``RuntimeError`` instead of biasing the sample.
        """
        if n < 1:
            raise ValueError(f"need n >= 1, got {n}")
        staeckel = self.actions == "staeckel"
        comps = self.proposal if staeckel else (("gaussian", 1.0, 1.0, 1.0),)
        pick = self.weights * self.rejection_bounds if staeckel else self.weights
        xs, vs, ks, have, accept_rate = [], [], [], 0, 0.5
        while have < n:
            m = int(np.ceil((n - have) / accept_rate * 1.1)) + 16
            counts = rng.multinomial(m, np.outer(pick / pick.sum(), [c[1] for c in comps]).ravel()).reshape(len(self.weights), len(comps))
            parts = [self.sample_population(k, counts[k, c], rng, selection.phi_max, comps[c])
                     for k in range(len(self.weights)) for c in range(len(comps)) if counts[k, c]]
            x = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            k = np.repeat(np.arange(len(self.weights)), counts.sum(axis=1))
            order = rng.permutation(m)  # interleave populations before truncating to n
            x, v, k = x[order], v[order], k[order]
            big_r = np.hypot(x[:, 0], x[:, 1])
            ok = (big_r > selection.r_min) & (big_r < selection.r_max) & (np.abs(x[:, 2]) < selection.z_max)
            if staeckel:
                log_ratio = self.log_acceptance_ratio(x[ok], v[ok], k[ok]) - np.log(self.rejection_bounds[k[ok]])
                if log_ratio.max(initial=-np.inf) > 0:
                    j = int(np.argmax(log_ratio))
                    raise RuntimeError(f"f/q = {self.rejection_bounds[k[ok][j]] * np.exp(log_ratio[j]):.3f} exceeds the rejection "
                                       f"bound of population {k[ok][j]}: raise rejection_bounds")
                ok[ok] = np.log(rng.random(int(ok.sum()))) < log_ratio
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
