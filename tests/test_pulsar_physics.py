"""Physics checks of the pulsar population synthesis against analytic results and independent integrators."""

import dataclasses

import numpy as np
import pytest
from scipy import integrate, stats

from popstore.pulsars import birth, coords, orbits, radio, spin
from popstore.pulsars.config import PulsarConfig, resolve_labels
from popstore.pulsars.population import evolve_spin_and_radio, simulate_population, yr_in_time_units
from popstore.pulsars.potential import MarchettiPotential

CFG = PulsarConfig()
POT = MarchettiPotential.from_config(CFG)
GM = 6.67e-8 * 2e33 / (3.0856775814913673e21 * 1e10)  # kpc (km/s)^2 per solar mass


def birth_states(n, seed):
    rng = np.random.default_rng(seed)
    age = birth.sample_ages(n, rng, CFG)
    pos = birth.sample_birth_positions(age, rng, CFG)
    vel = birth.birth_velocities(pos, POT.circular_velocity(np.hypot(pos[0], pos[1]), pos[2]), rng, CFG)
    return age, pos, vel


# --- potential ---------------------------------------------------------------------------------
def test_circular_velocity_matches_component_formulas():
    R = np.array([0.5, 4.0, 8.3, 15.0])
    vc2 = (6.8e10 * GM * R**2 / (R**2 + (3.0 + 0.28) ** 2) ** 1.5  # Miyamoto-Nagai in the plane
           + 5e9 * GM * R / (R + 1.0) ** 2 + 1.71e9 * GM * R / (R + 0.07) ** 2  # Hernquist bulge, nucleus
           + 5.4e11 * GM * (np.log1p(R / 15.62) / R - 1 / (R + 15.62)))  # NFW
    np.testing.assert_allclose(POT.circular_velocity(R), np.sqrt(vc2), rtol=1e-12)
    assert 225 < POT.circular_velocity(np.array([8.3]))[0] < 240  # Marchetti et al. 2019: ~230 km/s at the Sun


def test_acceleration_is_minus_gradient_of_potential():
    rng = np.random.default_rng(0)
    x, y, z = rng.uniform(-15, 15, (3, 200))
    h = 1e-5
    grad = [(POT.phi(*(p + h * e)) - POT.phi(*(p - h * e))) / (2 * h)
            for p, e in [(np.array([x, y, z]), np.eye(3)[i][:, None]) for i in range(3)]]
    for a, g in zip(POT.acceleration(x, y, z), grad):
        np.testing.assert_allclose(a, -g, rtol=1e-6, atol=1e-6)


# --- orbits --------------------------------------------------------------------------------------
def test_orbits_conserve_energy_and_lz():
    age, pos0, vel0 = birth_states(4000, 1)
    t = age * yr_in_time_units(CFG)
    pos, vel, rep = orbits.integrate_orbits(POT, pos0, vel0, t, n_steps=128, energy_tol=1e-4)
    scale = np.abs(POT.phi(*pos0)) + 0.5 * (vel0**2).sum(0)
    de = np.abs(orbits.specific_energy(POT, pos, vel) - orbits.specific_energy(POT, pos0, vel0)) / scale
    assert de.max() < 1e-4 and rep.n_above_tol == 0  # stated tolerance: 1e-4 of |Phi0| + v0^2/2
    lz0 = pos0[0] * vel0[1] - pos0[1] * vel0[0]
    lz = pos[0] * vel[1] - pos[1] * vel[0]
    # leapfrog conserves L_z exactly in an axisymmetric potential (up to round-off)
    np.testing.assert_allclose(lz, lz0, rtol=0, atol=1e-9 * np.abs(lz0).max())


def test_leapfrog_is_second_order():
    age, pos0, vel0 = birth_states(500, 2)
    t = age * yr_in_time_units(CFG)
    e0 = orbits.specific_energy(POT, pos0, vel0)
    errs = []
    for n in (64, 128):
        pos, vel, _ = orbits.integrate_orbits(POT, pos0, vel0, t, n_steps=n, max_refinements=0)
        errs.append(np.median(np.abs(orbits.specific_energy(POT, pos, vel) - e0)))
    assert 3.0 < errs[0] / errs[1] < 5.0  # energy error ~ dt^2


def test_orbits_agree_with_solve_ivp():
    age, pos0, vel0 = birth_states(200, 3)
    r0 = np.hypot(pos0[0], pos0[1])
    pick = np.r_[np.argsort(r0)[:2], np.argsort(age)[-3:]]  # two innermost births and three oldest stars
    t = age[pick] * yr_in_time_units(CFG)
    pos, _, _ = orbits.integrate_orbits(POT, pos0[:, pick], vel0[:, pick], t)

    def rhs(_, s):
        return np.r_[s[3:], POT.acceleration(*s[:3, None])[0], POT.acceleration(*s[:3, None])[1],
                     POT.acceleration(*s[:3, None])[2]].ravel()

    for i in range(pick.size):
        s0 = np.r_[pos0[:, pick[i]], vel0[:, pick[i]]]
        sol = integrate.solve_ivp(rhs, (0, t[i]), s0, method="DOP853", rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pos[:, i], sol.y[:3, -1], atol=5e-3)  # 5 pc (map bins are 625 pc)


# --- spin-down and field decay ---------------------------------------------------------------------
def test_spin_down_constant_field_no_alignment_is_analytic():
    cfg = dataclasses.replace(CFG, a1=0.0, a2=0.0, a_late=0.0, k2=0.0)
    rng = np.random.default_rng(4)
    n = 2000
    init = spin.draw_initial_spin(n, rng, cfg)
    age = birth.sample_ages(n, rng, cfg)
    decay = spin.FieldDecay.from_config(init["B0"], init["B_asym"], cfg)
    P, chi = spin.spin_down(init["P0"], init["chi0"], spin.field_integral(decay, age, cfg), cfg)
    B = init["B0"]
    expect = np.sqrt(init["P0"] ** 2 + 2 * cfg.beta_spindown * B**2 * (1 + np.sin(init["chi0"]) ** 2) * age * cfg.yr_s)
    np.testing.assert_allclose(P, expect, rtol=1e-6)
    np.testing.assert_allclose(chi, init["chi0"], rtol=1e-12)


def test_spin_down_with_decay_and_alignment_matches_solve_ivp():
    cfg = resolve_labels({"a_late": -1.8}, CFG)
    rng = np.random.default_rng(5)
    init = spin.draw_initial_spin(6, rng, cfg)
    init["chi0"] = np.array([0.2, 0.5, 0.8, 1.1, 1.3, 1.5])
    age = np.array([1e3, 1e4, 1e5, 1e6, 1e7, 3e7])
    decay = spin.FieldDecay.from_config(init["B0"], init["B_asym"], cfg)
    P, chi = spin.spin_down(init["P0"], init["chi0"], spin.field_integral(decay, age, cfg), cfg)
    beta = cfg.beta_spindown
    for i in range(6):
        def rhs(lt, s, i=i):  # d/d ln t of (P, chi), t in s
            t = np.exp(lt)
            b2 = decay.field(t / cfg.yr_s)[i] ** 2
            return t * np.array([beta * b2 / s[0] * (1 + np.sin(s[1]) ** 2),
                                 -beta * b2 / s[0] ** 2 * np.sin(s[1]) * np.cos(s[1])])
        t0 = 1e-6 * cfg.yr_s
        sol = integrate.solve_ivp(rhs, (np.log(t0), np.log(age[i] * cfg.yr_s)), [init["P0"][i], init["chi0"][i]],
                                  method="DOP853", rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose([P[i], chi[i]], sol.y[:, -1], rtol=2e-4)
    # invariant of the k = (1, 1, 1) system: sin^2(chi) P^2 / cos^4(chi)
    inv = lambda p, c: np.sin(c) ** 2 * p**2 / np.cos(c) ** 4  # noqa: E731
    np.testing.assert_allclose(inv(P, chi), inv(init["P0"], init["chi0"]), rtol=1e-4)


def test_field_decay_limits_and_floor():
    cfg = resolve_labels({"a_late": -1.5}, CFG)
    B0 = np.array([1e13, 1e14, 1e12])
    decay = spin.FieldDecay.from_config(B0, np.array([1.0, 1.0, 1e13]), cfg)
    np.testing.assert_allclose(decay.field(1e-3), B0, rtol=1e-6)  # no decay at t << tau1
    t = np.array([1e10, 1e11])  # t >> tau_late: d ln B / d ln t -> a_late
    lb = np.array([decay.log_field(ti)[:2] for ti in t])
    slope = (lb[1] - lb[0]) / np.log(10.0)
    np.testing.assert_allclose(slope, -1.5, atol=1e-3)
    assert np.isclose(decay.field(1e7)[2], 1e12, rtol=1e-12)  # born below its floor: B stays B0
    assert np.isclose(spin.FieldDecay.from_config(B0[:1], np.array([1e12]), cfg).field(1e10)[0], 1e12)  # floor


def test_field_integral_matches_quad():
    rng = np.random.default_rng(6)
    init = spin.draw_initial_spin(4, rng, CFG)
    age = np.array([10.0, 3e4, 2e6, 3e7])
    decay = spin.FieldDecay.from_config(init["B0"], init["B_asym"], CFG)
    got = spin.field_integral(decay, age, CFG)
    for i in range(4):
        f = lambda lt, i=i: decay.field(np.exp(lt))[i] ** 2 * np.exp(lt)  # noqa: E731
        val = integrate.quad(f, -30, np.log(age[i]), limit=400, epsabs=0, epsrel=1e-10)[0]
        np.testing.assert_allclose(got[i], CFG.beta_spindown * CFG.yr_s * val, rtol=3e-5)  # stated accuracy


# --- radio -------------------------------------------------------------------------------------------
def test_pulse_width_geometry():
    P = np.array([0.5, 0.5, 0.5])
    chi = np.array([np.pi / 2, np.pi / 2, 0.7])
    rho = radio.beam_half_opening(P, CFG)
    los = np.array([np.pi / 2, np.pi / 2 - rho[1] * 1.0000001, 0.7])
    w = radio.pulse_width(P, chi, los, rho)
    np.testing.assert_allclose(w[0], 2 * rho[0] * P[0] / (2 * np.pi), rtol=1e-12)  # orthogonal rotator, central cut
    assert w[1] == 0  # grazes outside the cone
    # central cut at chi: cone of half-angle rho crossed along a small circle of radius chi
    expect = 4 * np.arcsin(np.sin(rho[2] / 2) / np.sin(0.7)) * P[2] / (2 * np.pi)
    np.testing.assert_allclose(w[2], expect, rtol=1e-12)
    np.testing.assert_allclose(radio.beam_half_opening(np.array([1.0]), CFG), np.sqrt(9 * np.pi * 3e7 / (2 * 2.99792458e10)))


def test_spectrum_integrates_to_bolometric_flux():
    L, rho, d = np.array([1e30]), np.array([0.1]), np.array([2.0])
    S = L / (4 * np.pi * (1 - np.cos(rho)) * (d * CFG.kpc_cm) ** 2)
    val = integrate.quad(lambda nu: radio.spectral_flux_density(L, rho, d, nu, CFG)[0] * 1e-23,
                         CFG.f_min_hz, CFG.f_max_hz, points=np.geomspace(1e7, 1e11, 9)[1:-1], limit=200)[0]
    np.testing.assert_allclose(val, S[0], rtol=1e-6)


# --- distributions -------------------------------------------------------------------------------------
def test_kick_speeds_are_maxwellian():
    v = birth.sample_kick_speed(20000, np.random.default_rng(7), CFG)
    assert stats.kstest(v, stats.maxwell(scale=265.0).cdf).pvalue > 0.01
    assert stats.kstest(v, stats.maxwell(scale=240.0).cdf).pvalue < 1e-6  # the test has power


@pytest.mark.parametrize("kind,dist", [("exponential", stats.expon(scale=180.0)),
                                       ("lognormal", stats.lognorm(0.68, scale=np.exp(5.6)))])
def test_kick_speed_options(kind, dist):
    v = birth.sample_kick_speed(20000, np.random.default_rng(8), dataclasses.replace(CFG, kick_distribution=kind))
    assert stats.kstest(v, dist.cdf).pvalue > 0.01


def test_birth_radii_follow_yusifov_kucuk():
    def pdf(r):
        return 2 * np.pi * r * 37.6 * ((r + 0.55) / 9.05) ** 1.64 * np.exp(-4.01 * (r - 8.5) / 9.05)
    norm = integrate.quad(pdf, 1e-4, 20)[0]
    cdf = np.vectorize(lambda r: integrate.quad(pdf, 1e-4, min(max(r, 1e-4), 20))[0] / norm)
    r = birth.sample_radius(5000, np.random.default_rng(9), CFG)
    assert stats.kstest(r, cdf).pvalue > 0.01


def test_birth_heights_exponential_and_isotropic_kicks():
    rng = np.random.default_rng(10)
    pos = birth.sample_birth_positions(birth.sample_ages(20000, rng, CFG), rng, CFG)
    assert stats.kstest(np.abs(pos[2]), stats.expon(scale=0.18).cdf).pvalue > 0.01
    assert abs(np.mean(pos[2] > 0) - 0.5) < 0.02
    u = birth.isotropic_unit_vectors(20000, rng)
    assert stats.kstest(u[2], stats.uniform(-1, 2).cdf).pvalue > 0.01


# --- coordinates ----------------------------------------------------------------------------------------
def test_frame_conversion_of_known_positions():
    sun_v = np.array([245.6, -12.9, 7.78])  # astropy's v_sun (12.9, 245.6, 7.78) in the model frame
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 9.3, 0.02], [1.0, 8.3, 0.02]]).T
    vel = np.stack([np.zeros(3), sun_v, sun_v], axis=1)
    o = coords.to_observables(pos, vel, CFG)
    # the Galactic centre is Sgr A* (astropy's galcen_coord) at 8.3 kpc
    np.testing.assert_allclose([o["ra"][0], o["dec"][0], o["d"][0]], [266.4051, -28.936175, 8.3], atol=1e-6)
    np.testing.assert_allclose([abs(o["l"][1]), o["d"][1]], [180.0, 1.0], atol=0.2)  # y points to l = 180
    np.testing.assert_allclose([o["l"][2], o["b"][2], o["d"][2]], [90.0, 0.0, 1.0], atol=0.2)  # x points to l = 90
    # stars co-moving with the Sun have no proper motion and no radial velocity
    np.testing.assert_allclose(np.r_[o["pm_ra_cosdec"][1:], o["pm_dec"][1:], o["v_los"][1:]], 0, atol=1e-8)


# --- whole population --------------------------------------------------------------------------------------
def test_population_is_deterministic_per_seed():
    labels = {"mu_logB": 13.0, "a_late": -1.0}
    a = simulate_population(labels, 3000, np.random.default_rng(11), CFG)
    b = simulate_population(labels, 3000, np.random.default_rng(11), CFG)
    c = simulate_population(labels, 3000, np.random.default_rng(12), CFG)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["P"], c["P"])


def test_population_galactic_rotation_and_labels():
    cat = simulate_population({}, 5000, np.random.default_rng(13), CFG)
    assert np.median(cat["v_phi"][cat["age"] < 1e6]) < -100  # clockwise rotation
    n = 4000
    dyn = {"age": np.full(n, 0.01), "d": np.full(n, 1.0)}
    young = evolve_spin_and_radio(dyn, {"mu_logB": 13.5, "sigma_logB": 0.1, "mu_logP": -1.0, "sigma_logP": 0.2},
                                  np.random.default_rng(14), CFG)
    # 4-day-old stars have neither decayed nor spun down: B and P follow the label distributions
    assert abs(np.mean(np.log10(young["B"])) - 13.5) < 0.01 and abs(np.std(np.log10(young["B"])) - 0.1) < 0.01
    assert abs(np.mean(np.log10(young["P"])) + 1.0) < 0.02 and abs(np.std(np.log10(young["P"])) - 0.2) < 0.01
    with pytest.raises(ValueError, match="unknown pulsar labels"):
        simulate_population({"mu_logb": 13}, 10, np.random.default_rng(0), CFG)


@pytest.mark.parametrize("model", ["pardo2025", "graber2024"])
def test_luminosity_models_follow_their_power_laws(model):
    """log10 L = mean + N(0, 0.8) + slope * log10(x): Pardo 2025 with x = Edot / 1e29 erg/s and slope epsilon_L,
    Graber 2024 with x = Pdot / P^3 and slope 0.5; the scatter is the 0.8 dex log-normal of the papers."""
    cfg = dataclasses.replace(PulsarConfig(), luminosity_model=model)
    n = 200_000
    rng = np.random.default_rng(3)
    P = 10 ** rng.uniform(-1.5, 0.5, n)
    Pdot = 10 ** rng.uniform(-17, -12, n)
    L = radio.radio_luminosity(P, Pdot, np.random.default_rng(4), cfg)
    if model == "pardo2025":
        edot = 4 * np.pi**2 * cfg.moment_of_inertia * Pdot / P**3  # erg/s, I = 0.4 M R^2
        log_x, mean, slope = np.log10(edot / 1e29), 26.17, 0.68
    else:
        log_x, mean, slope = np.log10(Pdot / P**3), 35.5, 0.5
    fit = np.polyfit(log_x, np.log10(L), 1)
    assert fit[0] == pytest.approx(slope, abs=0.01)
    assert fit[1] == pytest.approx(mean, abs=0.02)
    assert (np.log10(L) - np.polyval(fit, log_x)).std() == pytest.approx(0.8, rel=0.01)
