"""One isolated-pulsar population: dynamics, magneto-rotational evolution, radio emission.

:func:`simulate_dynamics` draws ages, birth positions and kicks and integrates
all orbits at once; :func:`evolve_spin_and_radio` evolves B, chi and P and
computes beaming, pulse width, luminosity and flux for a (possibly pre-drawn)
dynamical batch; :func:`simulate_population` chains the two. Every column of the
returned catalogue is a 1D array over stars (names and units in :data:`COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from popstore.cf import JANSKY, KILOPARSEC, MILLIARCSEC_PER_YEAR
from popstore.pulsars import birth, coords, orbits, radio, spin
from popstore.pulsars.config import PulsarConfig, resolve_labels
from popstore.pulsars.potential import MarchettiPotential

#: Catalogue columns: name -> (units, long name).
DYNAMICS_COLUMNS: dict[str, tuple[str, str]] = {
    "age": ("yr", "true age"),
    "x": (KILOPARSEC, "galactocentric x (towards l = 90 deg)"),
    "y": (KILOPARSEC, "galactocentric y (towards l = 180 deg)"),
    "z": (KILOPARSEC, "height above the Galactic plane"),
    "vx": ("km s-1", "galactocentric velocity x"),
    "vy": ("km s-1", "galactocentric velocity y"),
    "vz": ("km s-1", "galactocentric velocity z"),
    "v_r": ("km s-1", "cylindrical radial velocity"),
    "v_phi": ("km s-1", "cylindrical azimuthal velocity (Galactic rotation is negative)"),
    "ra": ("degree", "right ascension (ICRS)"),
    "dec": ("degree", "declination (ICRS)"),
    "l": ("degree", "Galactic longitude in [-180, 180]"),
    "b": ("degree", "Galactic latitude"),
    "d": (KILOPARSEC, "distance from the Sun"),
    "pm_ra_cosdec": (MILLIARCSEC_PER_YEAR, "proper motion in RA times cos(dec)"),
    "pm_dec": (MILLIARCSEC_PER_YEAR, "proper motion in declination"),
    "v_los": ("km s-1", "heliocentric line-of-sight velocity"),
}
SPIN_COLUMNS: dict[str, tuple[str, str]] = {
    "P": ("s", "spin period"),
    "Pdot": ("s s-1", "spin period derivative"),
    "B": ("gauss", "dipolar magnetic field at the pole"),
    "chi": ("rad", "magnetic inclination angle"),
    "rho": ("rad", "radio beam half-opening angle"),
    "los": ("rad", "angle between spin axis and line of sight"),
    "beamed": ("1", "radio beam crosses the line of sight"),
    "w": ("s", "intrinsic pulse width (0 if not beamed)"),
    "L": ("erg s-1", "radio luminosity"),
    "S1400": (JANSKY, "period-averaged flux density at 1.4 GHz (0 if not beamed)"),
}
COLUMNS: dict[str, tuple[str, str]] = {**DYNAMICS_COLUMNS, **SPIN_COLUMNS}


def yr_in_time_units(cfg: PulsarConfig) -> float:
    """One year in the orbit time unit kpc / (km/s)."""
    return cfg.yr_s * 1.0e5 / cfg.kpc_cm


def simulate_dynamics(n: int, rng: np.random.Generator, config: PulsarConfig) -> dict[str, np.ndarray]:
    """Ages, birth states and final phase-space coordinates of ``n`` stars.

    Returns the :data:`DYNAMICS_COLUMNS` (all float64 arrays of length ``n``).
    """
    if n < 1:
        raise ValueError(f"need n >= 1 stars, got {n}")
    pot = MarchettiPotential.from_config(config)
    age = birth.sample_ages(n, rng, config)
    pos0 = birth.sample_birth_positions(age, rng, config)
    v_circ = pot.circular_velocity(np.hypot(pos0[0], pos0[1]), pos0[2])
    vel0 = birth.birth_velocities(pos0, v_circ, rng, config)
    pos, vel, _ = orbits.integrate_orbits(
        pot, pos0, vel0, age * yr_in_time_units(config), n_steps=config.orbit_steps,
        energy_tol=config.orbit_energy_tol, refine_factor=config.orbit_refine_factor,
        max_refinements=config.orbit_max_refinements, chunk=config.orbit_chunk,
    )
    R = np.hypot(pos[0], pos[1])
    cos_p, sin_p = pos[0] / R, pos[1] / R
    out = {"age": age, "x": pos[0], "y": pos[1], "z": pos[2], "vx": vel[0], "vy": vel[1], "vz": vel[2],
           "v_r": vel[0] * cos_p + vel[1] * sin_p, "v_phi": -vel[0] * sin_p + vel[1] * cos_p}
    out.update(coords.to_observables(pos, vel, config))
    return out


def evolve_spin_and_radio(dyn: Mapping[str, np.ndarray], labels: Mapping[str, float], rng: np.random.Generator,
                          config: PulsarConfig) -> dict[str, np.ndarray]:
    """Magneto-rotational evolution and radio emission of a dynamical batch.

    ``dyn`` needs at least ``age`` (yr) and ``d`` (kpc); ``labels`` override the
    config's distribution parameters (see :data:`~popstore.pulsars.config.LABELS`).
    Returns ``dyn``'s columns plus the :data:`SPIN_COLUMNS`.
    """
    cfg = resolve_labels(labels, config)
    age = np.asarray(dyn["age"], dtype=float)
    n = age.size
    init = spin.draw_initial_spin(n, rng, cfg)
    decay = spin.FieldDecay.from_config(init["B0"], init["B_asym"], cfg)
    P, chi = spin.spin_down(init["P0"], init["chi0"], spin.field_integral(decay, age, cfg), cfg)
    B = decay.field(age)
    Pdot = spin.period_derivative(P, B, chi, cfg)
    rho = radio.beam_half_opening(P, cfg)
    los = np.arccos(rng.uniform(0.0, 1.0, n))
    w = radio.pulse_width(P, chi, los, rho)
    beamed = radio.is_beamed(chi, los, rho)
    L = radio.radio_luminosity(P, Pdot, rng, cfg)
    S_nu = radio.spectral_flux_density(L, rho, np.asarray(dyn["d"]), cfg.nu_obs_hz, cfg)
    out = dict(dyn)
    out.update({"P": P, "Pdot": Pdot, "B": B, "chi": chi, "rho": rho, "los": los, "beamed": beamed, "w": w, "L": L,
                "S1400": radio.mean_flux_density(S_nu, w, P)})
    return out


def simulate_population(labels: Mapping[str, float], n_stars: int, rng: np.random.Generator,
                        config: PulsarConfig) -> dict[str, np.ndarray]:
    """Full per-star catalogue (:data:`COLUMNS`) of ``n_stars`` stars for one label vector."""
    return evolve_spin_and_radio(simulate_dynamics(n_stars, rng, config), labels, rng, config)
