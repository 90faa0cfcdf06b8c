"""Magneto-rotational evolution: dipolar field decay and spin-down with alignment.

Spin-down (Spitkovsky 2006 torques as in Pons & Vigano 2019, Living Rev. Comput.
Astrophys. 5, 3; Philippov et al. 2014, MNRAS 441, 1879)::

    dP/dt   =  beta B^2 / P (k0 + k1 sin^2 chi)
    dchi/dt = -k2 beta B^2 / P^2 sin chi cos chi,      beta = pi^2 R^6 / (I c^3).

With ``X = P^2``, ``s = sin^2 chi`` and the field integral
``tau(t) = beta int_0^t B(t')^2 dt'`` (s^2) the system becomes autonomous,
``dX/dtau = 2 (k0 + k1 s)``, ``ds/dtau = -2 k2 s (1 - s) / X``: the field history
enters only through ``tau(age)``, computed on a log-time grid (:func:`field_integral`),
and the (X, s) system is integrated with RK4 in ``u = ln(1 + tau / X0)``
(see :func:`spin_down`).
For k2 = 0 this reproduces ``P^2 = P0^2 + 2 beta B^2 (k0 + k1 sin^2 chi) t``
for constant B, and ``s^k0 X^k2 / (1 - s)^(k0 + k1)`` is an invariant otherwise.

Field decay (BSk24 "dip-tor heavy" fits of the magneto-thermal simulations,
Vigano et al. 2021; as in Graber et al. 2024)::

    B(t) = B0 (1 + t/tau1)^a1 (1 + t/tau2)^(a2 - a1) (1 + t/tau_late)^(a_late - a2)   if tau2 < tau_late
         = B0 (1 + t/tau1)^a1 (1 + t/tau_late)^(a_late - a1)                        if tau1 < tau_late <= tau2
         = B0 (1 + t/tau_late)^a_late                                               if tau_late <= tau1

with ``tau1 = 1e14 B0^-0.8 yr`` and ``tau2 = 6e8 B0^-0.2 yr``, floored at a per-star
``B_asym`` (stars born below it keep B0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popstore.pulsars.config import PulsarConfig


@dataclass(frozen=True)
class FieldDecay:
    """Per-star field-decay law: ``ln B(t) = ln B0 + sum_j c_j ln(1 + t / tau_j)``, floored."""

    log_B0: np.ndarray  # ln B0 (G)
    tau: np.ndarray  # (3, n) time scales, yr
    c: np.ndarray  # (3, n) exponents
    log_floor: np.ndarray  # ln B_asym; -inf for stars that keep B0

    @classmethod
    def from_config(cls, B0: np.ndarray, B_asym: np.ndarray, cfg: PulsarConfig) -> "FieldDecay":
        """The three regimes of the BSk24 law, selected per star."""
        B0 = np.asarray(B0, dtype=float)
        tau1 = cfg.tau1_coeff_yr * B0**cfg.tau1_exp
        tau2 = cfg.tau2_coeff_yr * B0**cfg.tau2_exp
        taul = np.full_like(B0, cfg.tau_late_yr)
        a1, a2, al = cfg.a1, cfg.a2, cfg.a_late
        case_a = tau2 < taul
        case_c = taul <= tau1
        case_b = ~case_a & ~case_c
        c1 = np.where(case_c, 0.0, a1)
        c2 = np.where(case_a, a2 - a1, 0.0)
        c3 = np.select([case_a, case_b], [al - a2, al - a1], default=al)
        keep = B0 < B_asym
        log_floor = np.where(keep, -np.inf, np.log(B_asym))
        c = np.stack([c1, c2, c3]) * ~keep  # stars below their floor do not decay
        return cls(np.log(B0), np.stack([tau1, tau2, taul]), c, log_floor)

    def log_field(self, t_yr: np.ndarray | float) -> np.ndarray:
        """ln B(t) in ln(G) at time(s) ``t_yr`` (broadcast against the stars)."""
        lb = self.log_B0 + self.c[0] * np.log1p(t_yr / self.tau[0])
        lb += self.c[1] * np.log1p(t_yr / self.tau[1])
        lb += self.c[2] * np.log1p(t_yr / self.tau[2])
        return np.maximum(lb, self.log_floor)

    def field(self, t_yr: np.ndarray | float) -> np.ndarray:
        """B(t) in G."""
        return np.exp(self.log_field(t_yr))


def _log_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(b - a) / ln(b / a) for positive a, b (a where a == b)."""
    x = np.log(b / a)
    small = np.abs(x) < 1e-8
    return a * np.where(small, 1.0 + 0.5 * x, np.expm1(x) / np.where(small, 1.0, x))


def field_integral(decay: FieldDecay, age_yr: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """``tau = beta int_0^age B^2 dt`` in s^2.

    On ``spin_time_points`` (odd) points uniform in ln t from ``spin_t_min_yr`` to the
    age, the integrand ``B^2 t`` (per unit ln t) is taken as a power law of t between
    neighbouring points and integrated exactly (logarithmic-mean rule: exact for
    constant B and for every pure power-law regime of the decay law; error O(h^2)),
    then Richardson-extrapolated with the same rule on every second point
    (``(4 I_h - I_2h) / 3``, error O(h^4)); ``B0^2 t_min`` is added for the first ``t_min``.
    """
    m = cfg.spin_time_points
    t_min = np.minimum(cfg.spin_t_min_yr, age_yr)
    lo, hi = np.log(t_min), np.log(age_yr)
    h = (hi - lo) / (m - 1)
    fine = np.zeros_like(age_yr)
    coarse = np.zeros_like(age_yr)
    g = [np.exp(2.0 * decay.log_field(t_min) + lo)]  # the last three points
    for j in range(1, m):
        lt = lo + j * h
        g.append(np.exp(2.0 * decay.log_field(np.exp(lt)) + lt))
        fine += _log_mean(g[-2], g[-1])
        if j % 2 == 0:
            coarse += 2.0 * _log_mean(g[-3], g[-1])
            g = g[-1:]
    integral = (4.0 * fine - coarse) / 3.0 * h + np.exp(2.0 * decay.log_B0) * t_min
    return cfg.beta_spindown * cfg.yr_s * integral


def _rates(Y: np.ndarray, s: np.ndarray, cfg: PulsarConfig) -> tuple[np.ndarray, np.ndarray]:
    return 2.0 * (cfg.k0 + cfg.k1 * s) - Y, -2.0 * cfg.k2 * s * (1.0 - s) / Y


def spin_down(P0: np.ndarray, chi0: np.ndarray, tau: np.ndarray, cfg: PulsarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Final period (s) and inclination (rad) after a field integral ``tau`` (s^2).

    RK4 with ``cfg.spin_steps`` steps of ``u = ln(1 + tau / P0^2)`` per star on the
    scaled variable ``Y = X / (P0^2 + tau)``, ``dY/du = 2 (k0 + k1 s) - Y``,
    ``ds/du = -2 k2 s (1 - s) / Y`` (Y relaxes to 2 (k0 + k1 s), so step errors decay).
    """
    X0 = P0 * P0
    Y, s = np.ones_like(X0), np.sin(chi0) ** 2
    h = np.log1p(tau / X0) / cfg.spin_steps
    for _ in range(cfg.spin_steps):
        k1y, k1s = _rates(Y, s, cfg)
        k2y, k2s = _rates(Y + 0.5 * h * k1y, s + 0.5 * h * k1s, cfg)
        k3y, k3s = _rates(Y + 0.5 * h * k2y, s + 0.5 * h * k2s, cfg)
        k4y, k4s = _rates(Y + h * k3y, s + h * k3s, cfg)
        Y += h / 6.0 * (k1y + 2.0 * k2y + 2.0 * k3y + k4y)
        s += h / 6.0 * (k1s + 2.0 * k2s + 2.0 * k3s + k4s)
    s = np.clip(s, 0.0, 1.0)
    return np.sqrt(Y * (X0 + tau)), np.arcsin(np.sqrt(s))


def period_derivative(P: np.ndarray, B: np.ndarray, chi: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """Pdot (s/s) from the final P (s), B (G), chi (rad)."""
    return cfg.beta_spindown * B * B / P * (cfg.k0 + cfg.k1 * np.sin(chi) ** 2)


def draw_initial_spin(n: int, rng: np.random.Generator, cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """Initial P0 (s), B0 (G), chi0 (rad, pdf sin on [0, pi/2]) and the field floor B_asym (G)."""
    return {
        "P0": 10.0 ** rng.normal(cfg.P_initial_log10_mean, cfg.P_initial_log10_sigma, n),
        "B0": 10.0 ** rng.normal(cfg.B_initial_log10_mean, cfg.B_initial_log10_sigma, n),
        "chi0": np.arccos(rng.uniform(0.0, 1.0, n)),
        "B_asym": 10.0 ** rng.normal(cfg.B_asym_log10_mean, cfg.B_asym_log10_sigma, n),
    }
