"""Radio beaming, pulse width, luminosity and flux density.

- Beam half-opening ``rho = sqrt(9 pi r_em / (2 c P))`` (Lorimer & Kramer 2005,
  eq. 3.29, emission height ``r_em``).
- A star is beamed towards us if ``chi - rho < los < chi + rho`` (los = angle
  between the spin axis and the line of sight, pdf sin on [0, pi/2]).
- Pulse width (Gil, Gronkowska & Rudnicki 1984; Lorimer & Kramer eq. 3.26) with
  impact angle ``beta = los - chi``:
  ``sin^2(w/4) = (sin^2(rho/2) - sin^2(beta/2)) / (sin(chi + beta) sin chi)``, clipped at 1.
- Luminosity: ``L = 10^N(L_mean, sigma) (Edot / 1e29 erg/s)^epsilon_L`` (Pardo-Araujo
  et al. 2025), or ``10^N(35.5, 0.8) (Pdot / P^3)^0.5`` (Graber et al. 2024).
- Flux: ``S = L / (Omega d^2)``, ``Omega = 4 pi (1 - cos rho)``, distributed over
  ``[f_min, f_max]`` as a power law of index ``alpha``.
"""

from __future__ import annotations

import numpy as np

from popstore.pulsars.config import PulsarConfig


def beam_half_opening(P: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """rho (rad) for period P (s)."""
    return np.sqrt(9.0 * np.pi * cfg.r_em_cm / (2.0 * cfg.c_cgs * P))


def is_beamed(chi: np.ndarray, los: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """True where the line of sight crosses the emission cone."""
    return (chi - rho < los) & (los < chi + rho)


def pulse_width(P: np.ndarray, chi: np.ndarray, los: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Intrinsic pulse width (s); 0 for stars whose beam misses us."""
    beta = los - chi
    num = np.sin(0.5 * rho) ** 2 - np.sin(0.5 * beta) ** 2
    den = np.sin(chi + beta) * np.sin(chi)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((num > 0) & (den > 0), num / den, np.where(num > 0, 1.0, 0.0))
    w = 4.0 * np.arcsin(np.sqrt(np.clip(ratio, 0.0, 1.0)))
    return np.where(is_beamed(chi, los, rho), w * P / (2.0 * np.pi), 0.0)


def spin_down_luminosity(P: np.ndarray, Pdot: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """Edot = 4 pi^2 I Pdot / P^3 (erg/s)."""
    return 4.0 * np.pi**2 * cfg.moment_of_inertia * Pdot / P**3


def radio_luminosity(P: np.ndarray, Pdot: np.ndarray, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """Radio luminosity L (erg/s) from ``cfg.luminosity_model``."""
    scatter = rng.normal(0.0, cfg.L_radio_log10_sigma, P.size)
    if cfg.luminosity_model == "pardo2025":
        x = spin_down_luminosity(P, Pdot, cfg) / cfg.Edot_ref_erg_s
        return 10.0 ** (cfg.L_radio_log10_mean + scatter) * x**cfg.epsilon_L
    if cfg.luminosity_model == "graber2024":
        return 10.0 ** (cfg.graber_L_log10_mean + scatter) * (Pdot / P**3) ** cfg.graber_L_exponent
    raise ValueError(f"unknown luminosity model {cfg.luminosity_model!r}")


def spectral_flux_density(L: np.ndarray, rho: np.ndarray, d_kpc: np.ndarray, nu_hz: float | np.ndarray,
                          cfg: PulsarConfig) -> np.ndarray:
    """S_nu (Jy) at frequency ``nu_hz``: ``(alpha + 1) S nu^alpha / (f_max^(alpha+1) - f_min^(alpha+1))``.

    ``S = L / (Omega d^2)`` is the bolometric flux (erg s^-1 cm^-2) inside the beam of
    solid angle ``Omega = 4 pi (1 - cos rho)``; 1 Jy = 1e-23 erg s^-1 cm^-2 Hz^-1.
    """
    a1 = cfg.spectral_index + 1.0
    d_cm = np.asarray(d_kpc) * cfg.kpc_cm
    omega = 4.0 * np.pi * (1.0 - np.cos(rho))
    S = L / (omega * d_cm**2)
    return a1 * S / (cfg.f_max_hz**a1 - cfg.f_min_hz**a1) * np.asarray(nu_hz) ** cfg.spectral_index / 1.0e-23


def mean_flux_density(S_nu: np.ndarray, w: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Period-averaged flux density S_nu w / P (Jy), the catalogue ``S1400`` convention."""
    return S_nu * w / P
