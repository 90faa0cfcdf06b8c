"""Birth properties of isolated neutron stars: ages, positions, kicks.

- Ages uniform in ``[age_min_yr, age_max_yr]`` (constant birth rate).
- Galactocentric radius from the Yusifov & Kucuk (2004, A&A 422, 545) pulsar
  surface density, ``pdf(r) = 2 pi r rho(r)``, sampled by inverse CDF.
- Azimuth on the YMW16 spiral arms (Yao, Manchester & Wang 2017, ApJ 835, 29),
  ``phi = k ln(r / r0) + phi0``, smeared as in Faucher-Giguere & Kaspi (2006,
  ApJ 643, 332): ``phi += U(0, 2 pi) exp(-0.35 r)``, ``r += N(0, 0.07 r)``, and
  rotated back by the arm pattern rotation ``2 pi age / 2.5e8 yr``.
- Or (``birth_model = "ymw16_density"``, the reference's option) the birth
  ``(x, y)`` drawn in proportion to the YMW16 free-electron density in the
  Galactic plane, tabulated on cells of ``ymw16_table_step_kpc`` out to
  ``r_max_kpc`` and uniform within a cell, then rotated back by the same arm
  pattern rotation (the density's arms are taken to rotate rigidly, as in the
  research code). The reference names the table without defining it; the total
  in-plane n_e (all YMW16 components) is our reading.
- Height exponential with scale ``h_c`` and random sign.
- Kick velocity: isotropic, speed Maxwellian (Hobbs et al. 2005) by default;
  exponential, double Maxwellian (Verbunt et al. 2017) and log-normal options.

Frame: x towards l = 90 deg, y towards l = 180 deg, Sun at (0, 8.3, 0.02) kpc;
``x = r cos(phi)``, ``y = r sin(phi)``, the Galaxy rotates clockwise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from popstore.pulsars.config import PulsarConfig
from popstore.pulsars.dm import ymw16_ne_plane


def radial_density(r: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """Yusifov & Kucuk (2004) surface density rho(r) (pulsars kpc^-2), r in kpc."""
    r1, rs = cfg.radial_R1_kpc, cfg.radial_Rsun_kpc
    return cfg.radial_A * ((r + r1) / (rs + r1)) ** cfg.radial_a * np.exp(-cfg.radial_b * (r - rs) / (rs + r1))


def radial_cdf_grid(cfg: PulsarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grid r (kpc) and normalised CDF of ``2 pi r rho(r)`` on ``[r_min, r_max]`` (trapezoid rule)."""
    r = np.linspace(cfg.r_min_kpc, cfg.r_max_kpc, cfg.r_grid_points)
    pdf = 2.0 * np.pi * r * radial_density(r, cfg)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(r))])
    return r, cdf / cdf[-1]


def sample_radius(n: int, rng: np.random.Generator, cfg: PulsarConfig,
                  r_range: tuple[float, float] | None = None) -> np.ndarray:
    """Inverse-CDF draws of the birth radius (kpc), optionally truncated to ``r_range``."""
    r, cdf = radial_cdf_grid(cfg)
    lo, hi = (0.0, 1.0) if r_range is None else tuple(np.interp(r_range, r, cdf))
    return np.interp(rng.uniform(lo, hi, n), cdf, r)


def sample_ages(n: int, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """True ages (yr), uniform on ``[age_min_yr, age_max_yr]``."""
    return rng.uniform(cfg.age_min_yr, cfg.age_max_yr, n)


@lru_cache(maxsize=4)
def ymw16_plane_table(r_max_kpc: float, step_kpc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell centres x, y (kpc) within ``r_max_kpc`` of the Galactic centre and the YMW16 n_e there (cm^-3).

    Built once per process, one YMW16 call per cell (about a second for the default 0.2 kpc cells).
    """
    centres = np.arange(-r_max_kpc + step_kpc / 2, r_max_kpc, step_kpc)
    x, y = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
    inside = np.hypot(x, y) <= r_max_kpc
    x, y = x[inside], y[inside]
    return x, y, ymw16_ne_plane(x, y)


def sample_ymw16_plane(n: int, rng: np.random.Generator, cfg: PulsarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Birth (x, y) in kpc with probability proportional to the YMW16 n_e table (uniform within a cell)."""
    step = cfg.ymw16_table_step_kpc
    x, y, ne = ymw16_plane_table(cfg.r_max_kpc, step)
    cell = rng.choice(ne.size, size=n, p=ne / ne.sum())
    return x[cell] + rng.uniform(-step / 2, step / 2, n), y[cell] + rng.uniform(-step / 2, step / 2, n)


def arm_rotation(age_yr: np.ndarray, cfg: PulsarConfig) -> np.ndarray:
    """Angle (rad) the arm pattern has turned since a star's birth: ``2 pi age / arm_rotation_period_yr``.

    Added to a birth azimuth, it places the star where the (rigidly rotating) arms were ``age`` ago.
    """
    return 2.0 * np.pi * age_yr / cfg.arm_rotation_period_yr


def sample_birth_positions(age_yr: np.ndarray, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """Birth positions (3, n) in kpc: on the smeared spiral arms or from the YMW16 n_e table, both
    rotated back by :func:`arm_rotation`."""
    n = age_yr.size
    if cfg.birth_model == "ymw16_density":
        x, y = sample_ymw16_plane(n, rng, cfg)
        angle = arm_rotation(age_yr, cfg)
        cos_a, sin_a = np.cos(angle), np.sin(angle)
        return np.stack([x * cos_a - y * sin_a, x * sin_a + y * cos_a, _sample_heights(n, rng, cfg)])
    arm = rng.choice(len(cfg.arm_k), size=n, p=np.asarray(cfg.arm_prob))
    local = arm == len(cfg.arm_k) - 1  # the Local arm is the last one
    r = np.empty(n)
    r[~local] = sample_radius(int((~local).sum()), rng, cfg)
    r[local] = sample_radius(int(local.sum()), rng, cfg, cfg.local_arm_r_range_kpc)
    k = np.asarray(cfg.arm_k)[arm]
    phi = k * np.log(r / np.asarray(cfg.arm_r0_kpc)[arm]) + np.asarray(cfg.arm_phi0_rad)[arm]
    phi += rng.uniform(0.0, 2.0 * np.pi, n) * np.exp(-cfg.phi_smear_scale_per_kpc * r)
    r = r + rng.normal(0.0, 1.0, n) * cfg.r_smear_frac * r
    phi += arm_rotation(age_yr, cfg)
    return np.stack([r * np.cos(phi), r * np.sin(phi), _sample_heights(n, rng, cfg)])


def _sample_heights(n: int, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """Heights (kpc): exponential with scale ``h_c``, random sign."""
    return rng.exponential(cfg.h_c_kpc, n) * rng.choice(np.array([-1.0, 1.0]), n)


def sample_kick_speed(n: int, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """Kick speeds (km/s) from ``cfg.kick_distribution``."""
    kind = cfg.kick_distribution
    if kind == "maxwellian":
        return cfg.kick_sigma_kms * np.linalg.norm(rng.normal(size=(3, n)), axis=0)
    if kind == "double_maxwellian":
        sigma = np.where(rng.uniform(size=n) < cfg.kick_weight1, cfg.kick_sigma1_kms, cfg.kick_sigma2_kms)
        return sigma * np.linalg.norm(rng.normal(size=(3, n)), axis=0)
    if kind == "exponential":
        return rng.exponential(cfg.kick_exp_mean_kms, n)
    if kind == "lognormal":
        return np.exp(rng.normal(cfg.kick_lognormal_mu, cfg.kick_lognormal_sigma, n))
    raise ValueError(f"unknown kick distribution {kind!r}")


def isotropic_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """(3, n) unit vectors uniform on the sphere."""
    cos_t = rng.uniform(-1.0, 1.0, n)
    ph = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack([sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t])


def birth_velocities(pos: np.ndarray, v_circ: np.ndarray, rng: np.random.Generator, cfg: PulsarConfig) -> np.ndarray:
    """Kick plus circular velocity (3, n) in km/s; circular motion along -phi (clockwise)."""
    n = pos.shape[1]
    kick = sample_kick_speed(n, rng, cfg) * isotropic_unit_vectors(n, rng)
    phi = np.arctan2(pos[1], pos[0])
    kick[0] += v_circ * np.sin(phi)
    kick[1] -= v_circ * np.cos(phi)
    return kick
