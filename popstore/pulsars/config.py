"""Every constant and modelling choice of the isolated-pulsar population synthesis.

Values follow the mlpoppyns research code behind Graber et al. 2024 (ApJ 968, 16)
and Pardo-Araujo et al. 2025 (A&A 696, A114); see ``reference/pulsars.md``.
Units are given in each field's comment. Distribution *choices* are strings
(``kick_distribution``, ``luminosity_model``) so that a pipeline file can switch
them; the free parameters of the inference (the labels) have their defaults here
and are overridden per sample by :func:`resolve_labels`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from popstore.simulator import Parameter

#: Labels of the population synthesis, in order, with (low, high) prior ranges
#: of the tutorial runs, units and long names.
LABELS: dict[str, tuple[float, float, str, str]] = {
    "mu_logB": (12.0, 14.0, "1", "mean of log10(B0 / G), initial dipolar field"),
    "sigma_logB": (0.1, 1.0, "1", "standard deviation of log10(B0 / G)"),
    "mu_logP": (-1.5, 0.5, "1", "mean of log10(P0 / s), initial period"),
    "sigma_logP": (0.1, 1.0, "1", "standard deviation of log10(P0 / s)"),
    "a_late": (-3.0, 0.0, "1", "late-time field-decay exponent"),
    "L_radio_log10_mean": (24.6, 28.6, "1", "mean log10(L / (erg s-1)) radio luminosity normalisation"),
    "epsilon_L": (0.1, 1.0, "1", "radio luminosity exponent on Edot"),
}

#: Which :class:`PulsarConfig` field each label overrides.
LABEL_FIELDS: dict[str, str] = {
    "mu_logB": "B_initial_log10_mean",
    "sigma_logB": "B_initial_log10_sigma",
    "mu_logP": "P_initial_log10_mean",
    "sigma_logP": "P_initial_log10_sigma",
    "a_late": "a_late",
    "L_radio_log10_mean": "L_radio_log10_mean",
    "epsilon_L": "epsilon_L",
}

KICK_DISTRIBUTIONS = ("maxwellian", "exponential", "double_maxwellian", "lognormal")
LUMINOSITY_MODELS = ("pardo2025", "graber2024")
BIRTH_MODELS = ("spiral_arms", "ymw16_density")

#: Labels that only the Pardo-Araujo et al. (2025) luminosity law L = 10^N(L_mean, sigma) (Edot / 1e29)^eps uses.
EDOT_LUMINOSITY_LABELS = ("L_radio_log10_mean", "epsilon_L")

#: Named neutron-star radii (cm) for I = 0.4 M R^2 and the spin-down constant beta = pi^2 R^6 / (I c^3):
#: "paper" as in the runs of Graber et al. (2024) and Pardo-Araujo et al. (2025); "bsk24" the
#: BSk24 equation-of-state radius of 1.4 Msun that later research-code configs use.
NS_RADII_CM: dict[str, float] = {"paper": 1.1e6, "bsk24": 1.259e6}

#: Whole-model settings: PulsarConfig field values of each paper's best model.
#: "pardo2025" (Pardo-Araujo et al. 2025, A&A 696, A114) is the field defaults; "graber2024"
#: (Graber et al. 2024, ApJ 968, 16) uses the luminosity law L = 10^N(35.5, 0.8) (Pdot / P^3)^0.5
#: (Faucher-Giguere & Kaspi 2006 form) with a spectral index of -1.6 (Jankowski et al. 2018),
#: so the labels L_radio_log10_mean and epsilon_L do not exist there.
SETTINGS: dict[str, dict[str, Any]] = {
    "pardo2025": {},
    "graber2024": {"luminosity_model": "graber2024", "spectral_index": -1.6},
}

#: Graber et al. (2024) posterior medians on the ATNF data (their table of 95% intervals).
GRABER2024_POSTERIOR_MEDIANS: dict[str, float] = {
    "mu_logB": 13.10, "sigma_logB": 0.45, "mu_logP": -1.00, "sigma_logP": 0.38, "a_late": -1.80,
}


@dataclass(frozen=True)
class PulsarConfig:
    """Frozen set of all settings; ``to_dict``/``from_dict`` give a JSON round trip."""

    # --- physical constants (cgs), as in the research code -------------------
    G_cgs: float = 6.67e-8  # cm^3 g^-1 s^-2
    M_sun_g: float = 2.0e33  # g
    c_cgs: float = 2.99792458e10  # cm/s
    kpc_cm: float = 3.0856775814913673e21  # cm
    yr_s: float = 3.15576e7  # s (Julian year)

    # --- frame (x towards l = 90 deg, y towards l = 180 deg, Galaxy rotates clockwise)
    sun_x_kpc: float = 0.0
    sun_y_kpc: float = 8.3
    sun_z_kpc: float = 0.02
    #: Sun's velocity w.r.t. the Galactic centre in astropy's Galactocentric frame
    #: (km/s; astropy's v4.0 defaults, Drimmel & Poggio 2018 / Gravity 2018 / Reid & Brunthaler 2004).
    galcen_v_sun_kms: tuple[float, float, float] = (12.9, 245.6, 7.78)

    # --- population --------------------------------------------------------------
    n_stars: int = 300_000
    age_min_yr: float = 1.0
    age_max_yr: float = 3.0e7

    # --- birth positions (Yusifov & Kucuk 2004 radial profile; YMW16 arms) ------------
    #: "spiral_arms", or "ymw16_density": (x, y) drawn in proportion to the YMW16 n_e table
    birth_model: str = "spiral_arms"
    ymw16_table_step_kpc: float = 0.2  # cell size of that table, out to r_max_kpc
    radial_A: float = 37.6
    radial_a: float = 1.64
    radial_b: float = 4.01
    radial_R1_kpc: float = 0.55
    radial_Rsun_kpc: float = 8.5
    r_min_kpc: float = 1.0e-4
    r_max_kpc: float = 20.0
    r_grid_points: int = 20_001
    #: (k, r0 kpc, phi0 rad) of Norma, Carina-Sagittarius, Perseus, Crux-Scutum, Local.
    arm_k: tuple[float, ...] = (4.95, 5.46, 5.77, 5.37, 20.67)
    arm_r0_kpc: tuple[float, ...] = (3.35, 3.56, 3.71, 3.67, 8.21)
    arm_phi0_rad: tuple[float, ...] = (0.77, 3.82, 2.09, 5.76, 0.96)
    arm_prob: tuple[float, ...] = (0.2455, 0.2455, 0.2455, 0.2455, 0.018)
    local_arm_r_range_kpc: tuple[float, float] = (8.17, 8.6)
    phi_smear_scale_per_kpc: float = 0.35  # phi += U(0, 2 pi) exp(-0.35 r)
    r_smear_frac: float = 0.07  # r += N(0, 0.07 r)
    arm_rotation_period_yr: float = 2.5e8
    h_c_kpc: float = 0.18  # exponential scale height

    # --- kicks ---------------------------------------------------------------------------
    kick_distribution: str = "maxwellian"
    kick_sigma_kms: float = 265.0  # Maxwellian
    kick_exp_mean_kms: float = 180.0  # exponential
    kick_sigma1_kms: float = 55.0  # double Maxwellian, first component
    kick_sigma2_kms: float = 334.0
    kick_weight1: float = 0.19
    kick_lognormal_mu: float = 5.6  # ln(v / km s^-1)
    kick_lognormal_sigma: float = 0.68

    # --- Galactic potential (Marchetti et al. 2019) ----------------------------------------
    disc_mass_msun: float = 6.8e10
    disc_a_kpc: float = 3.0
    disc_b_kpc: float = 0.28
    bulge_mass_msun: float = 5.0e9
    bulge_r_kpc: float = 1.0
    nucleus_mass_msun: float = 1.71e9
    nucleus_r_kpc: float = 0.07
    halo_mass_msun: float = 5.4e11
    halo_r_kpc: float = 15.62

    # --- orbit integration (leapfrog, per-star step age / n_steps) -----------------------------
    orbit_steps: int = 128
    #: relative energy tolerance |dE| / (|Phi0| + v0^2/2); stars above it are re-integrated
    orbit_energy_tol: float = 1.0e-4
    orbit_refine_factor: int = 4
    orbit_max_refinements: int = 4
    orbit_chunk: int = 32_768  # stars per cache-sized block

    # --- initial spin and field (labels override the *_mean / *_sigma fields) --------------------
    P_initial_log10_mean: float = -0.67
    P_initial_log10_sigma: float = 0.55
    B_initial_log10_mean: float = 13.09
    B_initial_log10_sigma: float = 0.5

    # --- field decay ("BSk24 dip-tor heavy") ------------------------------------------------------
    tau1_coeff_yr: float = 1.0e14  # tau1 = 1e14 B0^-0.8 yr
    tau1_exp: float = -0.8
    tau2_coeff_yr: float = 6.0e8  # tau2 = 6e8 B0^-0.2 yr
    tau2_exp: float = -0.2
    a1: float = -0.13
    a2: float = -3.0
    tau_late_yr: float = 2.0e6
    a_late: float = -0.88
    B_asym_log10_mean: float = 8.5
    B_asym_log10_sigma: float = 0.5

    # --- spin-down (Pons & Vigano 2019) ----------------------------------------------------------
    ns_mass_msun: float = 1.4
    ns_radius: str = "paper"  # a key of NS_RADII_CM
    k0: float = 1.0
    k1: float = 1.0
    k2: float = 1.0
    spin_t_min_yr: float = 1.0
    spin_time_points: int = 65  # log-time grid points of the field integral (odd)
    spin_steps: int = 48  # RK4 steps of the (X = P^2, s = sin^2 chi) system

    # --- radio emission ----------------------------------------------------------------------
    r_em_cm: float = 3.0e7
    luminosity_model: str = "pardo2025"
    L_radio_log10_mean: float = 26.17  # pardo2025
    L_radio_log10_sigma: float = 0.8
    epsilon_L: float = 0.68
    Edot_ref_erg_s: float = 1.0e29
    graber_L_log10_mean: float = 35.5  # graber2024: L = 10^N(35.5, 0.8) (Pdot / P^3)^0.5
    graber_L_exponent: float = 0.5
    f_min_hz: float = 1.0e7
    f_max_hz: float = 1.0e11
    spectral_index: float = -1.8
    nu_obs_hz: float = 1.4e9

    # --- maps -----------------------------------------------------------------------------------
    resolution_dyn: int = 64
    resolution_ppdot: int = 64
    xyz_range_kpc: tuple[float, float] = (-20.0, 20.0)
    P_range_s: tuple[float, float] = (1.0e-3, 1.0e2)
    Pdot_range: tuple[float, float] = (1.0e-21, 1.0e-9)
    smooth_sigma_bins: float = 1.0
    velocity_fill: float = 0.0
    flux_fill: float = -7.0

    def __post_init__(self) -> None:
        if self.kick_distribution not in KICK_DISTRIBUTIONS:
            raise ValueError(f"kick_distribution must be one of {KICK_DISTRIBUTIONS}, got {self.kick_distribution!r}")
        if self.luminosity_model not in LUMINOSITY_MODELS:
            raise ValueError(f"luminosity_model must be one of {LUMINOSITY_MODELS}, got {self.luminosity_model!r}")
        if self.ns_radius not in NS_RADII_CM:
            raise ValueError(f"ns_radius must be one of {sorted(NS_RADII_CM)}, got {self.ns_radius!r}")
        if self.birth_model not in BIRTH_MODELS:
            raise ValueError(f"birth_model must be one of {BIRTH_MODELS}, got {self.birth_model!r}")
        if not 0 < self.ymw16_table_step_kpc < self.r_max_kpc:
            raise ValueError(f"ymw16_table_step_kpc must be in (0, r_max_kpc), got {self.ymw16_table_step_kpc}")
        n_arms = len(self.arm_k)
        if not (len(self.arm_r0_kpc) == len(self.arm_phi0_rad) == len(self.arm_prob) == n_arms):
            raise ValueError("arm_k, arm_r0_kpc, arm_phi0_rad and arm_prob must have the same length")
        if abs(sum(self.arm_prob) - 1.0) > 1e-9:
            raise ValueError(f"arm_prob must sum to 1, got {sum(self.arm_prob)}")
        if not 0 < self.age_min_yr < self.age_max_yr:
            raise ValueError("need 0 < age_min_yr < age_max_yr")
        if self.n_stars < 1 or self.orbit_steps < 1 or self.spin_steps < 1:
            raise ValueError("n_stars, orbit_steps and spin_steps must be >= 1")
        if self.spin_time_points < 3 or self.spin_time_points % 2 == 0:
            raise ValueError("spin_time_points must be odd and >= 3 (Richardson extrapolation on every second point)")
        if self.resolution_dyn < 2 or self.resolution_dyn % 2 or self.resolution_ppdot < 1:
            raise ValueError("resolution_dyn must be even and >= 2; resolution_ppdot >= 1")

    # --- derived quantities ---------------------------------------------------------------------
    @property
    def ns_radius_cm(self) -> float:
        """Neutron-star radius R (cm) of the named choice ``ns_radius``."""
        return NS_RADII_CM[self.ns_radius]

    @property
    def label_names(self) -> tuple[str, ...]:
        """The labels this configuration uses: all of :data:`LABELS`, less the Edot-law ones under the
        Graber et al. (2024) luminosity law (they would be drawn and stored for nothing)."""
        unused = EDOT_LUMINOSITY_LABELS if self.luminosity_model != "pardo2025" else ()
        return tuple(k for k in LABELS if k not in unused)

    @property
    def moment_of_inertia(self) -> float:
        """I = 0.4 M R^2 (g cm^2)."""
        return 0.4 * self.ns_mass_msun * self.M_sun_g * self.ns_radius_cm**2

    @property
    def beta_spindown(self) -> float:
        """beta = pi^2 R^6 / (I c^3) (s G^-2), so that dP/dt = beta B^2 / P (k0 + k1 sin^2 chi)."""
        return math.pi**2 * self.ns_radius_cm**6 / (self.moment_of_inertia * self.c_cgs**3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def for_setting(cls, setting: str = "pardo2025", **overrides: Any) -> "PulsarConfig":
        """The config of a whole-model :data:`SETTINGS` entry, then ``overrides`` (field values)."""
        if setting not in SETTINGS:
            raise ValueError(f"unknown pulsar setting {setting!r}; choose from {sorted(SETTINGS)}")
        return cls.from_dict({**SETTINGS[setting], **overrides})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PulsarConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        A stored ``ns_radius_cm`` of an older config maps to the named radius of that value."""
        d = dict(d)
        if "ns_radius_cm" in d:
            by_value = {v: k for k, v in NS_RADII_CM.items()}
            radius = float(d.pop("ns_radius_cm"))
            if radius not in by_value:
                raise ValueError(f"ns_radius_cm {radius} is none of the named radii {NS_RADII_CM}")
            d.setdefault("ns_radius", by_value[radius])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown PulsarConfig keys: {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


def resolve_labels(labels: Mapping[str, float], config: PulsarConfig) -> PulsarConfig:
    """Return ``config`` with the label values substituted into their fields.

    Missing labels keep the config defaults; unknown names, and labels the config's
    luminosity law does not use (:attr:`PulsarConfig.label_names`), are an error.
    """
    unknown = set(labels) - set(config.label_names)
    if unknown:
        raise ValueError(f"unknown pulsar labels {sorted(unknown)} for luminosity_model {config.luminosity_model!r}; "
                         f"expected a subset of {list(config.label_names)}")
    return dataclasses.replace(config, **{LABEL_FIELDS[k]: float(v) for k, v in labels.items()})


def label_parameters(cfg: PulsarConfig) -> tuple[Parameter, ...]:
    """Simulator parameters of the labels ``cfg`` uses (:attr:`PulsarConfig.label_names`), with the
    prior ranges, units and long names of :data:`LABELS`."""
    return tuple(Parameter(k, *LABELS[k][:2], units=LABELS[k][2], long_name=LABELS[k][3]) for k in cfg.label_names)
