"""Semi-analytic kilonova light curves of Dietrich & Ujevic 2017 (DU17).

The bolometric luminosity follows the Kawaguchi et al. 2016 (ApJ 825, 52)
model as used in DU17 (arXiv:1612.03665, Sec. 4): the ejecta (mass ``M``,
velocity ``v_ej``, opening angles ``theta``, ``phi``) radiate the r-process
heating rate ``eth * eps0 * (t / 1 d)^-alpha`` per gram, and the photosphere
emerges at

    t_obs = sqrt(theta kappa M / (2 phi (v_max - v_min) c^2)),  v_max = 2 v_ej - v_min,

before which only the fraction ``t / t_obs`` of the heating escapes:

    L_bol(t) = (1 + theta) * min(1, t / t_obs) * eth * eps0 * M * (t / 1 d)^-alpha   [erg/s].

Absolute bolometric magnitude: ``M_bol = -2.5 log10(L / (4 pi (10 pc)^2 f0))``
with the zero point ``f0 = 2.52e-5 erg/s/cm^2`` (L0 = 3.015e35 erg/s).
Band magnitudes are ``M_band = M_bol - BC_band(tt)``, with quartic bolometric
corrections in the rescaled time ``tt = t / (100 M / Msun)^(1/3.2)`` fitted for
``2 < tt <= 15`` (u only to 5, g only to 8.5; DU17 eq. 4.4 and their table of
coefficients, from Kawaguchi et al. 2016, for u, g, r, i, z, J, H, K); outside
that range the magnitude is undefined and returned as NaN. The model has no y
fit: as in the published implementation (gwemlightcurves ``DiUj2017``), the y
magnitude is interpolated linearly in wavelength between z and J. Binaries
without ejecta (M = 0) give all-NaN curves.

All functions are vectorised over samples: arrays of shape (n_sample, n_band, n_time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from popstore.kilonova.ejecta import Ejecta, ejecta_from_binary

#: Speed of light [cm/s], solar mass [g], day [s], parsec [cm] (values of the DU17 reference code).
C_CGS = 2.99792458e10
MSUN_G = 1.988e33
DAY_S = 86400.0
PC_CM = 3.08568e18
#: Bolometric zero-point flux [erg/s/cm^2] at 10 pc.
F0_CGS = 2.52e-5

#: Effective wavelengths [Angstrom] of the supported bands (SDSS u; PS1-like g r i z y; 2MASS J H K).
BAND_WAVELENGTH = {"u": 3543.0, "g": 4775.6, "r": 6129.5, "i": 7484.6, "z": 8657.8, "y": 9603.1,
                   "J": 12350.0, "H": 16620.0, "K": 21590.0}
#: Quartic bolometric corrections BC(tt) = sum_k a_k tt^k (DU17 eq. 4.4, Kawaguchi et al. 2016).
BC_COEFFS = {
    "u": (40.01, -56.79, 25.73, -5.207, 0.3813),
    "g": (-6.195, 4.054, -1.754, 0.2246, -0.009813),
    "r": (-2.308, 1.445, -0.5740, 0.0531, -0.00152),
    "i": (0.6441, 0.0796, -0.122, 0.00793, -0.000122),
    "z": (1.072, 0.3646, -0.1032, 0.00368, 0.0000126),
    "J": (-1.038, 1.348, -0.2364, 0.0137, -0.000261),
    "H": (-2.763, 1.502, -0.2133, 0.0128, -0.000288),
    "K": (-7.876, 3.245, -0.3946, 0.0216, -0.000443),
}
#: Validity range (tt_min exclusive, tt_max inclusive) of each band's bolometric correction.
BC_RANGE = {"u": (2.0, 5.0), "g": (2.0, 8.5), **{b: (2.0, 15.0) for b in "rizJHK"}}
#: Bands without a fit of their own, interpolated linearly in wavelength between two fitted ones.
INTERPOLATED = {"y": ("z", "J")}
#: The KilonovaML bands (the simulator's default).
BANDS = ("g", "r", "i", "z")
#: Every band the model defines, by wavelength.
ALL_BANDS = tuple(BAND_WAVELENGTH)


@dataclass(frozen=True)
class DU17Settings:
    """Microphysics of the light curve (KilonovaML / DU17 defaults).

    kappa : grey opacity [cm^2/g]; eps0 : heating-rate normalisation [erg/g/s]
    at 1 day; alpha : heating-rate power-law index; eth : thermalisation
    efficiency; v_min : minimum ejecta velocity [c]; distance_pc : distance
    of the magnitudes [pc] (10 = absolute magnitudes).
    """

    kappa: float = 10.0
    eps0: float = 1.58e10
    alpha: float = 1.2
    eth: float = 0.5
    v_min: float = 0.02
    distance_pc: float = 10.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"DU17 setting {name} must be finite and > 0, got {value}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def time_grid(t_min: float = 0.0, t_max: float = 11.0, dt: float = 0.01) -> np.ndarray:
    """Days since merger, ``t_min, t_min + dt, ..., t_max`` (KilonovaML: 0..11 d, 0.01 d, 1101 points)."""
    if not (dt > 0 and t_max > t_min >= 0):
        raise ValueError(f"need dt > 0 and t_max > t_min >= 0, got {t_min}, {t_max}, {dt}")
    n = int(round((t_max - t_min) / dt)) + 1
    return t_min + dt * np.arange(n)


def photospheric_time(ej: Ejecta, settings: DU17Settings) -> np.ndarray:
    """t_obs [day] (0 where v_max <= v_min, i.e. the ejecta are transparent from the start)."""
    dv = 2.0 * (ej.velocity - settings.v_min)  # v_max - v_min
    t2 = ej.theta * ej.mass * MSUN_G * settings.kappa / (2 * ej.phi * np.where(dv > 0, dv, 1.0) * C_CGS**2) / DAY_S**2
    return np.where(dv > 0, np.sqrt(t2), 0.0)


def bolometric_luminosity(ej: Ejecta, t: ArrayLike, settings: DU17Settings = DU17Settings()) -> np.ndarray:
    """L_bol [erg/s], shape ``ej.mass.shape + t.shape`` (see module docstring)."""
    t = np.asarray(t, dtype=float)
    m = ej.mass[..., None]
    t_obs = photospheric_time(ej, settings)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(t < t_obs, t / np.where(t_obs > 0, t_obs, 1.0), 1.0)
        heating = settings.eth * settings.eps0 * m * MSUN_G * t ** (-settings.alpha)
        return (1.0 + ej.theta[..., None]) * frac * heating


def bolometric_magnitude(lbol: ArrayLike, distance_pc: float = 10.0) -> np.ndarray:
    """M_bol for luminosity ``lbol`` [erg/s] seen from ``distance_pc`` (NaN where L <= 0)."""
    lbol = np.asarray(lbol, dtype=float)
    d = distance_pc * PC_CM
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lbol > 0, -2.5 * np.log10(lbol / (4 * np.pi * d * d * F0_CGS)), np.nan)


def bolometric_correction(band: str, tt: ArrayLike) -> np.ndarray:
    """BC of ``band`` at rescaled time ``tt``; NaN outside the fitted range.

    For an interpolated band (y) the BC is interpolated linearly in wavelength
    between its two neighbours, which makes ``M_bol - BC`` the published
    interpolation of the neighbours' magnitudes.
    """
    if band in INTERPOLATED:
        lo_band, hi_band = INTERPOLATED[band]
        w = (BAND_WAVELENGTH[band] - BAND_WAVELENGTH[lo_band]) / (BAND_WAVELENGTH[hi_band] - BAND_WAVELENGTH[lo_band])
        return (1 - w) * bolometric_correction(lo_band, tt) + w * bolometric_correction(hi_band, tt)
    if band not in BC_COEFFS:
        raise ValueError(f"unknown band {band!r}; DU17 bands here: {', '.join(ALL_BANDS)}")
    tt = np.asarray(tt, dtype=float)
    lo, hi = BC_RANGE[band]
    with np.errstate(invalid="ignore", over="ignore"):
        bc = np.polynomial.polynomial.polyval(tt, BC_COEFFS[band])
    return np.where((tt > lo) & (tt <= hi), bc, np.nan)


def band_magnitudes(
    ej: Ejecta,
    t: ArrayLike,
    bands: tuple[str, ...] = BANDS,
    settings: DU17Settings = DU17Settings(),
) -> np.ndarray:
    """DU17 absolute magnitudes, shape ``(*ej.mass.shape, len(bands), len(t))``; NaN where undefined."""
    t = np.asarray(t, dtype=float)
    mbol = bolometric_magnitude(bolometric_luminosity(ej, t, settings), settings.distance_pc)
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = t / (100.0 * ej.mass[..., None]) ** (1 / 3.2)
    return np.stack([mbol - bolometric_correction(b, tt) for b in bands], axis=-2)


def light_curves(
    m1: ArrayLike,
    m2: ArrayLike,
    lambda1: ArrayLike,
    lambda2: ArrayLike,
    t: ArrayLike,
    bands: tuple[str, ...] = BANDS,
    settings: DU17Settings = DU17Settings(),
) -> np.ndarray:
    """DU17 band magnitudes of binaries (m1 >= m2 [Msun], Lambda1, Lambda2): the batch simulator.

    Returns shape ``(n_sample, len(bands), len(t))`` for 1D inputs of length n_sample.
    """
    return band_magnitudes(ejecta_from_binary(m1, m2, lambda1, lambda2), t, bands, settings)
