"""Speed of the vectorised pulsar population synthesis vs the per-star odeint approach.

Times every stage of ``simulate_population`` + ``full_maps`` for ``--n-stars`` stars
(default 1e6) in CPU seconds (``time.process_time``, one thread: seconds on one core,
little affected by other processes on the machine), and per-star ``scipy.integrate.odeint`` (LSODA)
baselines on a random subset of ``--n-baseline`` of the same stars, each orbit
integrated separately in cylindrical coordinates with output every 1e4 yr:

- pure-Python right-hand side, rtol 1e-8 / atol 1e-10 (time unit kpc / (km/s));
- research-code style (ML-Poppyns-Open ``dynamical_evolution``): numba-compiled
  right-hand side, odeint's default tolerances (rtol = atol = 1.49e-8) on the state
  (kpc, rad, kpc, kpc/yr, rad/yr, kpc/yr) with time in yr; needs numba
  (``pip install popstore[bench]``), skipped with a note otherwise.

Each one's final positions, and ours (leapfrog), are compared with a tight-tolerance
reference (numba right-hand side, rtol 1e-11 / atol 1e-13; pure Python without numba).
Each spin-down is also integrated separately with odeint on a log time grid from
1 yr to the age. Baseline times per star are extrapolated to all stars and the
ratios printed. Map binning (``binned_map``, fast-histogram) is compared with
``numpy.histogram2d``.

    OMP_NUM_THREADS=1 python benchmarks/bench_pulsar.py --n-stars 1000000 --n-baseline 100
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import odeint  # noqa: E402

from popstore.maps import binned_map  # noqa: E402
from popstore.pulsars import birth, coords, orbits, radio, spin  # noqa: E402
from popstore.pulsars.config import PulsarConfig, resolve_labels  # noqa: E402
from popstore.pulsars.maps import full_maps, galactic_axes  # noqa: E402
from popstore.pulsars.population import yr_in_time_units  # noqa: E402
from popstore.pulsars.potential import MarchettiPotential  # noqa: E402


class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.process_time()

            def __exit__(self, *exc):
                timer.times[name] = time.process_time() - self.t0

        return _Ctx()


def odeint_orbit(pot: MarchettiPotential, pos0: np.ndarray, vel0: np.ndarray, t_end: float, dt_out: float,
                 rtol: float = 1e-8, atol: float = 1e-10) -> np.ndarray:
    """One star, pure-Python right-hand side: cylindrical (R, phi, z, v_R, dphi/dt, v_z), LSODA, output every dt_out."""
    R0, phi0 = np.hypot(pos0[0], pos0[1]), np.arctan2(pos0[1], pos0[0])
    vR0 = (pos0[0] * vel0[0] + pos0[1] * vel0[1]) / R0
    om0 = (pos0[0] * vel0[1] - pos0[1] * vel0[0]) / R0**2

    def rhs(s, _t):
        R, _, z, vR, om, vz = s
        aR, _, az = pot.acceleration(np.array([R]), np.array([0.0]), np.array([z]))
        return [vR, om, vz, R * om * om + aR[0], -2.0 * vR * om / R, az[0]]

    t = np.append(np.arange(0.0, t_end, dt_out), t_end)
    s = odeint(rhs, [R0, phi0, pos0[2], vR0, om0, vel0[2]], t, rtol=rtol, atol=atol)[-1]
    return np.array([s[0] * np.cos(s[1]), s[0] * np.sin(s[1]), s[2]])


def numba_rhs():
    """The research code's kind of right-hand side: (R, phi, z, v_R, omega, v_z) in kpc, rad, yr, compiled by numba
    (None without numba). ``p`` holds the G M (kpc^3 yr^-2) and scale lengths of :class:`MarchettiPotential`."""
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(cache=False)
    def rhs(t, s, p):
        R, z, vR, om = s[0], s[2], s[3], s[4]
        r = np.sqrt(R * R + z * z)
        zeta = np.sqrt(z * z + p[2] * p[2])
        d2 = R * R + (p[1] + zeta) ** 2
        f_disc = p[0] / (d2 * np.sqrt(d2))
        f_sph = (p[3] / (r * (r + p[4]) ** 2) + p[5] / (r * (r + p[6]) ** 2)
                 + p[7] * (np.log1p(r / p[8]) / r - 1.0 / (r + p[8])) / (r * r))
        out = np.empty(6)
        out[0], out[1], out[2] = vR, om, s[5]
        out[3] = R * om * om - R * (f_disc + f_sph)
        out[4] = -2.0 * vR * om / R
        out[5] = -z * (f_disc * (p[1] + zeta) / zeta + f_sph)
        return out

    return rhs


def odeint_orbit_yr(rhs, pot: MarchettiPotential, pos0: np.ndarray, vel0: np.ndarray, age_yr: float, kms: float,
                    **tol: float) -> np.ndarray:
    """One star with a compiled ``rhs`` in kpc, yr units (``kms``: 1 km/s in kpc/yr), output every 1e4 yr."""
    p = np.array([pot.gm_disc, pot.disc_a, pot.disc_b, pot.gm_bulge, pot.bulge_r, pot.gm_nucleus, pot.nucleus_r,
                  pot.gm_halo, pot.halo_r])
    p[[0, 3, 5, 7]] *= kms**2
    R0, phi0 = np.hypot(pos0[0], pos0[1]), np.arctan2(pos0[1], pos0[0])
    vR0 = (pos0[0] * vel0[0] + pos0[1] * vel0[1]) / R0 * kms
    om0 = (pos0[0] * vel0[1] - pos0[1] * vel0[0]) / R0**2 * kms
    t = np.append(np.arange(0.0, age_yr, 1e4), age_yr)
    s = odeint(rhs, np.array([R0, phi0, pos0[2], vR0, om0, vel0[2] * kms]), t, args=(p,), tfirst=True, **tol)[-1]
    return np.array([s[0] * np.cos(s[1]), s[0] * np.sin(s[1]), s[2]])


def odeint_spin(decay: spin.FieldDecay, i: int, P0: float, chi0: float, age: float, cfg: PulsarConfig) -> float:
    """Star ``i``, research-code style: (P, chi) with odeint on a log time grid from 1 yr to the age."""
    beta = cfg.beta_spindown
    one = spin.FieldDecay(decay.log_B0[i:i + 1], decay.tau[:, i:i + 1], decay.c[:, i:i + 1], decay.log_floor[i:i + 1])

    def rhs(s, t_yr):
        b2 = one.field(t_yr)[0] ** 2 * cfg.yr_s
        return [beta * b2 / s[0] * (cfg.k0 + cfg.k1 * np.sin(s[1]) ** 2),
                -cfg.k2 * beta * b2 / s[0] ** 2 * np.sin(s[1]) * np.cos(s[1])]

    t = np.logspace(0.0, np.log10(max(age, 1.0 + 1e-9)), 100)
    return float(odeint(rhs, [P0, chi0], t, rtol=1e-8, atol=1e-12)[-1, 0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-stars", type=int, default=1_000_000)
    ap.add_argument("--n-baseline", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = PulsarConfig(n_stars=args.n_stars)
    labels = {"mu_logB": 13.1, "sigma_logB": 0.45, "mu_logP": -1.0, "sigma_logP": 0.38, "a_late": -1.8,
              "L_radio_log10_mean": 26.17, "epsilon_L": 0.68}
    lab = resolve_labels(labels, cfg)
    rng = np.random.default_rng(args.seed)
    pot = MarchettiPotential.from_config(cfg)
    n = args.n_stars
    tm = Timer()
    with tm("birth (ages, arms, kicks)"):
        age = birth.sample_ages(n, rng, cfg)
        pos0 = birth.sample_birth_positions(age, rng, cfg)
        vel0 = birth.birth_velocities(pos0, pot.circular_velocity(np.hypot(pos0[0], pos0[1]), pos0[2]), rng, cfg)
    with tm("orbits (leapfrog, all stars)"):
        pos, vel, rep = orbits.integrate_orbits(pot, pos0, vel0, age * yr_in_time_units(cfg), cfg.orbit_steps,
                                                cfg.orbit_energy_tol, cfg.orbit_refine_factor,
                                                cfg.orbit_max_refinements, cfg.orbit_chunk)
    with tm("astropy ICRS + Galactic"):
        obs = coords.to_observables(pos, vel, cfg)
    with tm("field decay + spin-down"):
        init = spin.draw_initial_spin(n, rng, lab)
        decay = spin.FieldDecay.from_config(init["B0"], init["B_asym"], lab)
        P, chi = spin.spin_down(init["P0"], init["chi0"], spin.field_integral(decay, age, lab), lab)
        B = decay.field(age)
        Pdot = spin.period_derivative(P, B, chi, lab)
    with tm("radio (beam, width, L, S1400)"):
        rho = radio.beam_half_opening(P, lab)
        los = np.arccos(rng.uniform(0.0, 1.0, n))
        w = radio.pulse_width(P, chi, los, rho)
        L = radio.radio_luminosity(P, Pdot, rng, lab)
        S = radio.mean_flux_density(radio.spectral_flux_density(L, rho, obs["d"], lab.nu_obs_hz, lab), w, P)
    R = np.hypot(pos[0], pos[1])
    cat = {"x": pos[0], "y": pos[1], "z": pos[2], "vz": vel[2], "v_r": (pos[0] * vel[0] + pos[1] * vel[1]) / R,
           "v_phi": (pos[0] * vel[1] - pos[1] * vel[0]) / R, **obs, "P": P, "Pdot": Pdot, "S1400": S,
           "beamed": radio.is_beamed(chi, los, rho)}
    with tm("ten maps (binning + smoothing)"):
        full_maps(cat, cfg)
    total = sum(tm.times.values())
    print(f"vectorised pipeline, {n:,} stars, one core:")
    for k, v in tm.times.items():
        print(f"  {k:<34s} {v:8.2f} s")
    print(f"  {'TOTAL':<34s} {total:8.2f} s   (target < 60 s for 1e6 stars)")
    print(f"  orbits: {rep.n_refined} stars re-integrated for |dE|/E > {cfg.orbit_energy_tol:g}; "
          f"max error after refinement {rep.max_rel_energy_error:.2e}")

    # --- baselines: per-star odeint on a subset -------------------------------------------------------
    sub = np.random.default_rng(args.seed + 1).choice(n, args.n_baseline, replace=False)
    yr_t = yr_in_time_units(cfg)
    kms = 1.0 / (cfg.kpc_cm / 1e5 / cfg.yr_s)  # 1 km/s in kpc/yr
    rhs = numba_rhs()
    if rhs is not None:
        odeint_orbit_yr(rhs, pot, pos0[:, sub[0]], vel0[:, sub[0]], 1e5, kms)  # compile outside the timings
        ref = np.stack([odeint_orbit_yr(rhs, pot, pos0[:, i], vel0[:, i], age[i], kms, rtol=1e-11, atol=1e-13)
                        for i in sub], axis=1)
        ref_name = "numba odeint rtol 1e-11 atol 1e-13"
    else:
        ref = np.stack([odeint_orbit(pot, pos0[:, i], vel0[:, i], age[i] * yr_t, 1e4 * yr_t, rtol=1e-11, atol=1e-13)
                        for i in sub], axis=1)
        ref_name = "pure-Python odeint rtol 1e-11 atol 1e-13"
    vec_orbit = tm.times["orbits (leapfrog, all stars)"] / n

    def accuracy(p: np.ndarray) -> str:
        dpos = np.linalg.norm(p - ref, axis=0) * 1e3
        return f"|position - reference| median {np.median(dpos):.3g} pc, p90 {np.percentile(dpos, 90):.3g} pc, " \
               f"max {dpos.max():.3g} pc"

    print(f"per-star orbit baselines on {args.n_baseline} stars (reference: {ref_name}):")
    print(f"  leapfrog (ours, vectorised)      {vec_orbit * 1e3:8.4f} ms/star;  {accuracy(pos[:, sub])}")
    t0 = time.process_time()
    py_pos = np.stack([odeint_orbit(pot, pos0[:, i], vel0[:, i], age[i] * yr_t, 1e4 * yr_t) for i in sub], axis=1)
    t_orb = time.process_time() - t0
    print(f"  pure-Python rhs, rtol 1e-8       {t_orb / args.n_baseline * 1e3:8.2f} ms/star "
          f"({t_orb / args.n_baseline / vec_orbit:,.0f}x ours);  {accuracy(py_pos)}")
    if rhs is not None:
        t0 = time.process_time()
        nb_pos = np.stack([odeint_orbit_yr(rhs, pot, pos0[:, i], vel0[:, i], age[i], kms) for i in sub], axis=1)
        t_nb = time.process_time() - t0
        print(f"  numba rhs, odeint default tol    {t_nb / args.n_baseline * 1e3:8.2f} ms/star "
              f"({t_nb / args.n_baseline / vec_orbit:,.0f}x ours);  {accuracy(nb_pos)}   [research-code style]")
    else:
        print("  numba rhs, odeint default tol    skipped: numba is not installed (pip install popstore[bench])")
    t0 = time.process_time()
    base_P = np.array([odeint_spin(decay, i, init["P0"][i], init["chi0"][i], age[i], lab) for i in sub])
    t_spin = time.process_time() - t0
    vec_spin = tm.times["field decay + spin-down"] / n
    print(f"per-star spin-down baseline (pure-Python odeint): {t_spin / args.n_baseline * 1e3:.2f} ms/star "
          f"({t_spin / args.n_baseline / vec_spin:,.0f}x ours); |P/P_odeint - 1| max "
          f"{np.max(np.abs(P[sub] / base_P - 1)):.1e}")
    per_star = (t_orb + t_spin) / args.n_baseline
    print(f"orbits + spin-down, pure-Python baselines: {per_star * 1e3:.1f} ms/star, {per_star * n:,.0f} s "
          f"extrapolated to {n:,} stars; speed-up {per_star / (vec_orbit + vec_spin):,.0f}x")

    # --- map binning vs histogram2d -------------------------------------------------------------------
    x_ax, y_ax, _ = galactic_axes(cfg)
    reps = 5
    t0 = time.process_time()
    for _ in range(reps):
        ours = binned_map(cat["x"], cat["y"], x_ax, y_ax, smooth_sigma=0)
    t_ours = (time.process_time() - t0) / reps
    t0 = time.process_time()
    for _ in range(reps):
        ref = np.histogram2d(cat["x"], cat["y"], bins=[x_ax.bin_edges, y_ax.bin_edges])[0].T
    t_h2d = (time.process_time() - t0) / reps
    assert np.array_equal(ours, ref)
    print(f"count map of {n:,} stars: binned_map {t_ours * 1e3:.1f} ms, np.histogram2d {t_h2d * 1e3:.1f} ms "
          f"(ratio {t_h2d / t_ours:.1f}x, identical counts)")


if __name__ == "__main__":
    main()
