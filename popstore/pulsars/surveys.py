"""Radio survey models: sky coverage, pulse broadening, beam gain, sky temperature, radiometer S/N.

Surveys of the Parkes multibeam receiver as modelled by Graber et al. (2024, ApJ 968, 16)
and Pardo-Araujo et al. (2025, A&A 696, A114):

- PMPS: Parkes Multibeam Pulsar Survey (Manchester et al. 2001; Lorimer et al. 2006),
- SMPS: Swinburne intermediate-latitude survey (Edwards et al. 2001; Jacoby et al. 2009),
- HTRU low / mid / high latitude (Keith et al. 2010); low and mid are combined (OR) into
  ``HTRU_low_mid``, the survey the observed ``htru_pks`` pulsars (with P and Pdot) come from.

A star is detected when its radiometer S/N (Dewey et al. 1985; Lorimer & Kramer 2005, eq. A1.21)

    S/N = S_bar G sqrt(n_pol t_obs BW) sqrt((P - w_eff) / w_eff) / (beta (T_sys + T_sky))

exceeds the threshold (9), with w_eff = sqrt(w^2 + tau_sc^2 + tau_DM^2 + t_samp^2),
S_obs = S_nu w / w_eff and S_bar = S_obs w_eff / P. With ``fft_search`` (the option of the
research code's survey files) the S/N is multiplied by the incoherent FFT-search efficiency
of Morello et al. (2020, MNRAS 497, 4654, eq. 44), 1 / (1 + 0.0473 delta^-0.627), delta = w_eff / P.
All functions are vectorised over stars; frequencies in Hz, times in s, fluxes in Jy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

# CGS constants for the dispersion delay across a channel.
E_CHARGE = 4.80320425e-10  # esu
M_E = 9.1093837e-28  # g
C_CGS = 2.99792458e10  # cm/s
PC_CM = 3.0856775814913673e18  # cm
F_SCATTER_REF = 327e6  # Hz, reference frequency of the scattering law (Krishnakumar et al. 2015)


@dataclass(frozen=True)
class SkyArea:
    """Sky coverage: l_range (deg, l in [-180, 180]) x |b| range (deg), optionally its complement,
    optionally restricted to declination < dec_max (deg)."""

    l_range: tuple[float, float]
    abs_b_range: tuple[float, float]
    outside: bool = False
    dec_max: float | None = None

    def contains(self, l_deg: np.ndarray, b_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Boolean mask of the stars inside the area (open intervals, as in the reference)."""
        l_deg, b_deg, dec_deg = (np.asarray(a, dtype=float) for a in (l_deg, b_deg, dec_deg))
        ab = np.abs(b_deg)
        box = ((l_deg > self.l_range[0]) & (l_deg < self.l_range[1])
               & (ab >= self.abs_b_range[0]) & (ab < self.abs_b_range[1]))
        inside = ~box if self.outside else box
        if self.dec_max is not None:
            inside &= dec_deg < self.dec_max
        return inside


@dataclass(frozen=True)
class Survey:
    """One pointed radio survey (reference table; Parkes multibeam, G0 = 0.735 K/Jy, 2 pol.)."""

    name: str
    beta: float  # digitisation / system loss factor
    t_obs: float  # s, integration time per pointing
    t_samp: float  # s, sampling time
    T_sys: float  # K, system temperature
    f_c: float  # Hz, centre frequency
    bandwidth: float  # Hz
    chan_bw: float  # Hz, channel width
    sky: SkyArea
    G0: float = 0.735  # K/Jy, gain at beam centre
    n_pol: int = 2
    fwhm_arcmin: float = 14.0
    snr_min: float = 9.0
    fft_search: bool = False  # apply the FFT-search efficiency (Morello et al. 2020) to the S/N

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Survey":
        d = dict(d)
        sky = d.pop("sky")
        sky = SkyArea(tuple(sky["l_range"]), tuple(sky["abs_b_range"]), sky["outside"], sky["dec_max"])
        return cls(sky=sky, **d)


_PKS = dict(beta=1.25, T_sys=21.0, f_c=1.374e9, bandwidth=288e6, chan_bw=3e6)
_HTRU = dict(beta=1.25, t_samp=64e-6, T_sys=23.0, f_c=1.352e9, bandwidth=340e6, chan_bw=390.625e3)

SURVEYS: dict[str, Survey] = {
    "PMPS": Survey("PMPS", t_obs=2100.0, t_samp=250e-6, sky=SkyArea((-100.0, 50.0), (0.0, 5.0)), **_PKS),
    "SMPS": Survey("SMPS", t_obs=265.0, t_samp=125e-6, sky=SkyArea((-100.0, 50.0), (5.0, 30.0)), **_PKS),
    "HTRU_low": Survey("HTRU_low", t_obs=4300.0, sky=SkyArea((-80.0, 30.0), (0.0, 3.5)), **_HTRU),
    "HTRU_mid": Survey("HTRU_mid", t_obs=540.0, sky=SkyArea((-120.0, 30.0), (0.0, 15.0)), **_HTRU),
    "HTRU_high": Survey("HTRU_high", t_obs=270.0,
                        sky=SkyArea((-120.0, 30.0), (0.0, 15.0), outside=True, dec_max=10.0), **_HTRU),
}

#: Detection surveys of the detection-driven mode, each built from these SURVEYS (OR-combined).
DETECTION_SURVEYS: dict[str, tuple[str, ...]] = {
    "PMPS": ("PMPS",), "SMPS": ("SMPS",), "HTRU_low_mid": ("HTRU_low", "HTRU_mid"), "HTRU_high": ("HTRU_high",),
}


def scattering_time_327(dm: np.ndarray, rng: np.random.Generator, sigma_dex: float = 0.5) -> np.ndarray:
    """Scattering time (s) at 327 MHz: 10^N(log10(3.6e-9 DM^2.2 (1 + 1.94e-3 DM^2)), sigma_dex).

    Mean relation of Krishnakumar et al. (2015, ApJ 804, 23) with a log-normal scatter
    of 0.5 dex; one draw per star (a property of the line of sight)."""
    dm = np.maximum(np.asarray(dm, dtype=float), 1e-6)
    mean = np.log10(3.6e-9 * dm**2.2 * (1.0 + 1.94e-3 * dm**2))
    return 10.0 ** rng.normal(mean, sigma_dex)


def scale_scattering(tau_327: np.ndarray, f_hz: float, index: float = -4.4) -> np.ndarray:
    """Scale a scattering time from 327 MHz to ``f_hz`` with tau ∝ f^-4.4 (Kolmogorov)."""
    return np.asarray(tau_327) * (f_hz / F_SCATTER_REF) ** index


def dm_smearing(dm: np.ndarray, chan_bw_hz: float, f_hz: float) -> np.ndarray:
    """Intra-channel dispersion smearing tau_DM = e^2 / (pi m_e c) * dnu / nu^3 * DM (s).

    DM in pc cm^-3 (converted to cm^-2); ≈ 8.3 us DM (dnu / MHz) (nu / GHz)^-3
    (Lorimer & Kramer 2005, eq. 5.2)."""
    return E_CHARGE**2 / (np.pi * M_E * C_CGS) * chan_bw_hz / f_hz**3 * np.asarray(dm, dtype=float) * PC_CM


def effective_width(w: np.ndarray, tau_sc: np.ndarray, tau_dm: np.ndarray, t_samp: float) -> np.ndarray:
    """w_eff = sqrt(w^2 + tau_sc^2 + tau_DM^2 + t_samp^2) (s)."""
    return np.sqrt(np.asarray(w) ** 2 + np.asarray(tau_sc) ** 2 + np.asarray(tau_dm) ** 2 + t_samp**2)


def beam_gain(n: int, survey: Survey, rng: np.random.Generator) -> np.ndarray:
    """Gain (K/Jy) at a random offset inside the half-power beam: G0 exp(-2.77 off^2 / FWHM^2),
    off^2 ~ U(0, FWHM^2 / 4) (uniform over the beam's disc of radius FWHM/2)."""
    off2_over_fwhm2 = rng.uniform(0.0, 0.25, n)
    return survey.G0 * np.exp(-2.77 * off2_over_fwhm2)


def sky_temperature(l_deg: np.ndarray, b_deg: np.ndarray, f_hz: float) -> np.ndarray:
    """Sky temperature (K) at ``f_hz``: T408 (408 MHz / f)^2.6 with the ANALYTIC FALLBACK
    T408 = 25 + 275 / ((1 + (l/42)^2)(1 + (b/3)^2)) K of the reference.

    The Haslam et al. (1982) 408 MHz map is not shipped (no offline copy is available
    here), so this smooth approximation is used; see ``config["sky_temperature"]``."""
    l_deg, b_deg = np.asarray(l_deg, dtype=float), np.asarray(b_deg, dtype=float)
    t408 = 25.0 + 275.0 / ((1.0 + (l_deg / 42.0) ** 2) * (1.0 + (b_deg / 3.0) ** 2))
    return t408 * (408e6 / f_hz) ** 2.6


def radiometer_snr(s_mean: np.ndarray, gain: np.ndarray, period: np.ndarray, w_eff: np.ndarray,
                   t_sky: np.ndarray, survey: Survey) -> np.ndarray:
    """Radiometer S/N of the reference; 0 where w_eff >= P (the pulse fills the period)."""
    period, w_eff = np.asarray(period, dtype=float), np.asarray(w_eff, dtype=float)
    duty = np.where(w_eff < period, (period - w_eff) / w_eff, 0.0)
    return (np.asarray(s_mean) * gain * np.sqrt(survey.n_pol * survey.t_obs * survey.bandwidth)
            * np.sqrt(duty) / (survey.beta * (survey.T_sys + t_sky)))


def fft_search_efficiency(duty_cycle: np.ndarray) -> np.ndarray:
    """S/N efficiency of an incoherent FFT search, 1 / (1 + 0.0473 delta^-0.627), for duty cycle
    delta = w_eff / P (Morello et al. 2020, MNRAS 497, 4654, eq. 44)."""
    return 1.0 / (1.0 + 0.0473 * np.asarray(duty_cycle, dtype=float) ** -0.627)


def with_fft_search(surveys: Mapping[str, Survey], fft_search: bool) -> dict[str, Survey]:
    """``surveys`` with the FFT-search efficiency switched on or off in every survey."""
    return {k: replace(s, fft_search=bool(fft_search)) for k, s in surveys.items()}


@dataclass
class SurveyObservation:
    """Per-star result of one survey: S/N, detection, effective width (s), mean flux at f_c (Jy)."""

    snr: np.ndarray
    detected: np.ndarray
    w_eff: np.ndarray
    s_mean: np.ndarray


def observe(survey: Survey, cat: Mapping[str, np.ndarray], dm: np.ndarray, tau_327: np.ndarray,
            flux_density: Callable[[float], np.ndarray], rng: np.random.Generator) -> SurveyObservation:
    """Observe a star catalogue with one survey.

    ``cat`` needs l, b, dec (deg), P (s), w (s, intrinsic width) and beamed (bool);
    ``flux_density(nu_hz)`` returns S_nu (Jy) of every star; ``dm`` (pc cm^-3) and
    ``tau_327`` (s) are per star. Stars outside the survey's sky area, not beamed
    towards us, or with w = 0 get S/N = 0."""
    n = len(dm)
    f = survey.f_c
    w = np.asarray(cat["w"], dtype=float)
    w_eff = effective_width(w, scale_scattering(tau_327, f), dm_smearing(dm, survey.chan_bw, f), survey.t_samp)
    s_obs = flux_density(f) * w / w_eff
    s_mean = s_obs * w_eff / cat["P"]
    visible = survey.sky.contains(cat["l"], cat["b"], cat["dec"]) & np.asarray(cat["beamed"], bool) & (w > 0)
    snr = np.where(visible, radiometer_snr(s_mean, beam_gain(n, survey, rng), cat["P"], w_eff,
                                           sky_temperature(cat["l"], cat["b"], f), survey), 0.0)
    if survey.fft_search:
        snr = snr * fft_search_efficiency(w_eff / np.asarray(cat["P"], dtype=float))
    return SurveyObservation(snr, snr > survey.snr_min, w_eff, s_mean)


def observe_all(cat: Mapping[str, np.ndarray], dm: np.ndarray, flux_density: Callable[[float], np.ndarray],
                rng: np.random.Generator, surveys: Mapping[str, Survey] = SURVEYS,
                combine: Mapping[str, tuple[str, ...]] = DETECTION_SURVEYS,
                scatter_sigma_dex: float = 0.5) -> dict[str, SurveyObservation]:
    """Observe ``cat`` with every survey and OR-combine them into ``combine``'s detection surveys.

    One scattering draw per star is shared by all surveys. In a combination the first
    member that detects a star gives its width and flux ("low wins" for HTRU_low_mid)."""
    tau_327 = scattering_time_327(dm, rng, scatter_sigma_dex)
    single = {name: observe(s, cat, dm, tau_327, flux_density, rng) for name, s in surveys.items()}
    out = {}
    for name, members in combine.items():
        obs = [single[m] for m in members]
        res = SurveyObservation(*(np.array(a, copy=True) for a in (obs[-1].snr, obs[-1].detected,
                                                                   obs[-1].w_eff, obs[-1].s_mean)))
        for o in reversed(obs[:-1]):  # earlier members win where they detect
            sel = o.detected
            res.snr[sel], res.w_eff[sel], res.s_mean[sel] = o.snr[sel], o.w_eff[sel], o.s_mean[sel]
            res.detected |= sel
        out[name] = res
    return out


def in_any_sky_area(l_deg: np.ndarray, b_deg: np.ndarray, dec_deg: np.ndarray,
                    surveys: Mapping[str, Survey] = SURVEYS) -> np.ndarray:
    """Stars inside the sky area of at least one survey (the pre-cut of the detection stage)."""
    return np.logical_or.reduce([s.sky.contains(l_deg, b_deg, dec_deg) for s in surveys.values()])
