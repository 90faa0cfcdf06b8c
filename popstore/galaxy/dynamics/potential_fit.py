"""Accelerations from one smooth potential fitted to the collisionless Boltzmann equation everywhere at once.

The pointwise estimator (:func:`~popstore.galaxy.dynamics.acceleration.solve_cbe`) solves the steady-state CBE
``v . grad_x log f + a . grad_v log f = 0`` for a separate acceleration at every position, so the errors of a
learned ``log f`` (mostly transverse, random from member to member and from place to place) pass straight into
``a``. Here instead ``a = -grad Phi`` with one potential ``Phi(x) = sum_k c_k b_k(x)`` for all positions, and the
coefficients minimise the CBE residual summed over every position and velocity,

    L(c) = sum_p w_p sum_i (S_pi + a(x_p) . g_pi)^2,   S = v . grad_x log f,  g = grad_v log f,

the "Deep Potential" estimator (Green & Ting 2020, arXiv:2011.04673; Green et al. 2023) with a
linear basis instead of a neural network, so the minimum is one linear solve. A curl-free field that is smooth
on the scale of the basis averages the flow's errors over many positions; nothing assumes spherical symmetry.

Basis (:class:`PotentialBasis`): cubic B-splines in ``ln r`` (``n_radial`` of them between ``r_min`` and
``r_max``) times every real spherical harmonic up to degree ``l_max`` (spanned by the monomials of the unit
vector of degrees ``l_max`` and ``l_max - 1``), around a chosen centre (the origin of the coordinates). A
second-difference penalty on the radial coefficients (P-splines; Eilers & Marx 1996) of strength
``smoothing`` (relative to the data term) keeps the fit smooth where positions are sparse.

Angular freedom from the data: :func:`cross_validated_l_max` picks ``l_max`` by the CBE residual at held-out
positions (:func:`held_out_residual`); :func:`fit_design` draws the positions and velocities from a catalogue.

Weights: ``w_p = 1 / (sum_i |g_pi|^2 |a_p|^2)`` makes every position count by its *relative* error, with
``|a_p|`` from the pointwise least squares on the first pass and from the fit itself afterwards (``iterations``).

Units: positions in the units of ``x`` (kpc), accelerations in those of ``v^2 / x`` ((km/s)^2 / kpc), ``Phi``
in those of ``v^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Literal

import numpy as np
import torch
from scipy.interpolate import BSpline
from scipy.spatial import cKDTree

from popstore.galaxy.dynamics.acceleration import CBETerms, evaluation_velocities, solve_cbe

CHUNK = 4096  # positions per block of the normal equations
VelocityDesign = Literal["uniform_speed", "neighbours"]
WIDEN = 1.6  # fitted radii extend this factor beyond the reported ones each way (the fit is poorest at its edges)


@dataclass(frozen=True)
class PotentialBasis:
    """``Phi(x) = sum_{k, j} c_kj B_k(ln r) M_j(x / r)``: radial B-splines times angular monomials.

    ``r_min``, ``r_max``: radial range [units of x] (positions outside it are refused); ``n_radial``: number of
    cubic B-splines in ``ln r``; ``l_max``: highest spherical-harmonic degree (0: a spherical potential).
    """

    r_min: float
    r_max: float
    n_radial: int = 16
    l_max: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.r_min < self.r_max:
            raise ValueError(f"need 0 < r_min < r_max, got {self.r_min}, {self.r_max}")
        if self.n_radial < 4 or self.l_max < 0:
            raise ValueError(f"need n_radial >= 4 and l_max >= 0, got {self.n_radial}, {self.l_max}")

    @property
    def exponents(self) -> np.ndarray:
        """(n_angular, 3) powers of (n_x, n_y, n_z): all monomials of degree ``l_max`` and ``l_max - 1``."""
        lm = self.l_max
        return np.array([e for e in product(range(lm + 1), repeat=3) if sum(e) in ({lm, lm - 1} if lm else {0})])

    @property
    def size(self) -> int:
        return self.n_radial * len(self.exponents)

    def _splines(self) -> BSpline:
        inner = np.linspace(np.log(self.r_min), np.log(self.r_max), self.n_radial - 2)
        h = inner[1] - inner[0]
        knots = np.r_[inner[0] - 3 * h, inner[0] - 2 * h, inner[0] - h, inner, inner[-1] + h, inner[-1] + 2 * h, inner[-1] + 3 * h]
        return BSpline(knots, np.eye(self.n_radial), 3, extrapolate=False)

    def gradients(self, x: np.ndarray) -> np.ndarray:
        """Gradients of every basis function at positions ``x`` (P, 3): (P, size, 3) [1 / units of x]."""
        x = np.asarray(x, dtype=float)
        r = np.linalg.norm(x, axis=1)
        if np.any(r < self.r_min) or np.any(r > self.r_max):
            raise ValueError(f"positions must lie within r_min={self.r_min} and r_max={self.r_max} of the centre")
        n = x / r[:, None]
        spl = self._splines()
        b, db = spl(np.log(r)), spl.derivative()(np.log(r))  # (P, n_radial), d/d ln r
        e = self.exponents
        powers = n[:, None, :] ** e[None]  # (P, A, 3)
        m = powers.prod(-1)
        dm = np.stack([e[None, :, i] * n[:, None, i] ** np.clip(e[None, :, i] - 1, 0, None)
                       * powers[:, :, [j for j in range(3) if j != i]].prod(-1) for i in range(3)], axis=-1)  # (P, A, 3)
        dm -= n[:, None, :] * (dm * n[:, None, :]).sum(-1, keepdims=True)  # tangential part: grad_x M = (I - n n^T) grad_n M / r
        grad = (db[:, :, None, None] * (m[:, None, :, None] * n[:, None, None, :])
                + b[:, :, None, None] * dm[:, None, :, :]) / r[:, None, None, None]
        return grad.reshape(len(x), self.size, 3)

    def penalty(self) -> np.ndarray:
        """(size, size) second-difference penalty on the radial coefficients of every angular function."""
        d = np.diff(np.eye(self.n_radial), 2, axis=0)
        return np.kron(d.T @ d, np.eye(len(self.exponents)))


def fit_positions(n: int, r_min: float, r_max: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` positions (n, 3) with ``ln r`` uniform in [ln r_min, ln r_max] and isotropic directions: equal numbers
    per decade of radius, so the fit constrains the sparse outskirts as well as the centre."""
    r = np.exp(rng.uniform(np.log(r_min), np.log(r_max), n))
    d = rng.standard_normal((n, 3))
    return r[:, None] * d / np.linalg.norm(d, axis=1, keepdims=True)


def fit_design(r_range: tuple[float, float], n_positions: int, n_velocities: int, catalogue_x: np.ndarray,
               catalogue_v: np.ndarray, rng: np.random.Generator, velocities: VelocityDesign = "neighbours",
               n_neighbours: int = 100) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Where to evaluate the CBE for a fit reported between radii ``r_range`` [units of x].

    Positions (n_positions, 3) from :func:`fit_positions` over ``r_range`` widened by :data:`WIDEN` each way, and
    (n_positions, n_velocities, 3) velocities from the catalogue (``catalogue_x``, ``catalogue_v``: (N, 3)
    positions and velocities of the stars), with no potential or escape speed assumed:

    - ``"neighbours"`` (default): the velocities of the ``n_velocities`` nearest stars, i.e. where the DF is
      populated and a flow trained on the catalogue is constrained (the more accurate design in
      ``benchmarks/bench_flows_hernquist.py`` for every ensemble measured);
    - ``"uniform_speed"``: the HernquistFlows design (isotropic directions, ``|v|`` uniform in 0.2-0.9 times a
      speed limit, tangential speed above 0.1 of it; :func:`~popstore.galaxy.dynamics.acceleration.evaluation_velocities`)
      with the limit the largest speed among the ``n_neighbours`` nearest stars instead of the escape speed.

    Also returns the basis' radial range (10% wider still).
    """
    lo, hi = r_range[0] / WIDEN, r_range[1] * WIDEN
    x = fit_positions(n_positions, lo, hi, rng)
    cv = np.asarray(catalogue_v, dtype=float)
    tree = cKDTree(np.asarray(catalogue_x, dtype=float))
    if velocities == "neighbours":
        return x, cv[tree.query(x, n_velocities)[1]], (lo / 1.1, hi * 1.1)
    if velocities != "uniform_speed":
        raise ValueError(f"velocities must be 'uniform_speed' or 'neighbours', got {velocities!r}")
    v_max = np.linalg.norm(cv[tree.query(x, n_neighbours)[1]], axis=-1).max(axis=1)
    return x, evaluation_velocities(x, v_max, n_velocities, rng), (lo / 1.1, hi * 1.1)


@dataclass(frozen=True)
class PotentialFit:
    """A fitted potential: ``acceleration(x) = -grad Phi(x)``."""

    basis: PotentialBasis
    coefficients: np.ndarray

    def acceleration(self, x: np.ndarray) -> np.ndarray:
        """``-grad Phi`` at positions ``x`` (P, 3) [units of v^2 / x]."""
        return -np.einsum("pkj,k->pj", self.basis.gradients(x), self.coefficients)


def fit_potential(x: np.ndarray | torch.Tensor, terms: CBETerms, basis: PotentialBasis, smoothing: float = 1e-4,
                  iterations: int = 2) -> PotentialFit:
    """Least-squares potential for the CBE terms (:func:`~popstore.galaxy.dynamics.acceleration.cbe_terms`) of
    ``log f`` at positions ``x`` (P, 3) and velocities ``terms.v`` (P, K, 3), K >= 3.

    For an ensemble pass the mixture's terms (:func:`~popstore.galaxy.dynamics.acceleration.mixture_terms`).
    ``smoothing``: strength of the radial second-difference penalty relative to the mean data term;
    ``iterations``: refits with weights from the previous fit's ``|a|``. Positions used here should not be
    the ones where the accelerations are then reported (the fit is evaluated anywhere in the basis' range).
    """
    x = np.asarray(torch.as_tensor(x).detach(), dtype=float)
    g = terms.grad_v.detach().double().numpy()
    s = (terms.v * terms.grad_x).sum(-1).detach().double().numpy()
    normal = np.einsum("pki,pkj->pij", g, g)
    rhs = np.einsum("pk,pki->pi", s, g)
    gsq = np.einsum("pii->p", normal)
    a_ref = np.linalg.norm(solve_cbe(terms).detach().double().numpy(), axis=1)
    pen = basis.penalty()
    fit = None
    for _ in range(iterations + 1):
        w = 1.0 / (gsq * a_ref**2) / len(x)
        lhs, vec = np.zeros((basis.size, basis.size)), np.zeros(basis.size)
        for lo in range(0, len(x), CHUNK):
            sl = slice(lo, lo + CHUNK)
            jac = basis.gradients(x[sl])  # (p, nb, 3)
            wj = jac * w[sl, None, None]
            lhs += np.einsum("pki,pij,plj->kl", wj, normal[sl], jac, optimize=True)
            vec += np.einsum("pki,pi->k", wj, rhs[sl])
        lam = smoothing * np.trace(lhs) / max(np.trace(pen), 1e-300)
        # the constant potential has no gradient: a tiny ridge fixes the gauge
        coef = np.linalg.solve(lhs + lam * pen + 1e-12 * np.trace(lhs) / basis.size * np.eye(basis.size), vec)
        fit = PotentialFit(basis, coef)
        a_ref = np.linalg.norm(fit.acceleration(x), axis=1)
    return fit


def _subset(terms: CBETerms, rows: np.ndarray) -> CBETerms:
    idx = torch.as_tensor(rows)
    return CBETerms(terms.log_f[idx], terms.grad_x[idx], terms.grad_v[idx], terms.v[idx])


def held_out_residual(x: np.ndarray | torch.Tensor, terms: CBETerms, basis: PotentialBasis, rng: np.random.Generator,
                      folds: int = 2, smoothing: float = 1e-4) -> float:
    """Cross-validated CBE residual of a basis: fit on all folds but one, then the mean over the held-out positions
    of ``sum_i (S_i + a . g_i)^2 / (sum_i |g_i|^2 |a|^2)`` (dimensionless; the same relative weighting as the fit).

    Comparing bases (e.g. ``l_max`` = 0 ... 4) by this number chooses the potential's angular freedom from the data
    alone: terms the data do not constrain raise the held-out residual. ``x`` (P, 3), ``terms`` at those positions.
    """
    x = np.asarray(torch.as_tensor(x).detach(), dtype=float)
    fold = rng.integers(folds, size=len(x))
    scores = []
    for k in range(folds):
        train, test = np.nonzero(fold != k)[0], np.nonzero(fold == k)[0]
        acc = fit_potential(x[train], _subset(terms, train), basis, smoothing).acceleration(x[test])
        held = _subset(terms, test)
        g = held.grad_v.detach().double().numpy()
        res = (held.v * held.grad_x).sum(-1).detach().double().numpy() + np.einsum("pi,pki->pk", acc, g)
        scores.append((res**2).sum(1) / ((g**2).sum((1, 2)) * (acc**2).sum(1)))
    return float(np.concatenate(scores).mean())


def cross_validated_l_max(x: np.ndarray | torch.Tensor, terms: CBETerms, basis: PotentialBasis, candidates: tuple[int, ...] = (0, 1, 2, 3, 4),
                          seed: int = 0) -> tuple[int, dict[int, float]]:
    """The ``l_max`` among ``candidates`` with the smallest :func:`held_out_residual` (same folds for each), and
    every candidate's score; ``basis`` gives the radial range and ``n_radial``."""
    scores = {l: held_out_residual(x, terms, PotentialBasis(basis.r_min, basis.r_max, basis.n_radial, l), np.random.default_rng(seed))
              for l in candidates}
    return min(scores, key=scores.get), scores
