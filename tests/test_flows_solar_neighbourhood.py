"""Solar-neighbourhood mock: potential, quasi-isothermal sampler, orbits, simulator, store, missing-RV subset."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import popstore
from popstore.galaxy.dynamics.catalogue import (
    catalogue_arrays,
    full_velocities,
    missing_rv_subset,
)
from popstore.galaxy.dynamics.orbits import leapfrog
from popstore.galaxy.dynamics.potentials import MilkyWayPotential
from popstore.galaxy.dynamics.quasi_isothermal import (
    QuasiIsothermal,
    QuasiIsothermalMixture,
    Selection,
    randomise_azimuth,
)
from popstore.simulators import get_simulator

POT = MilkyWayPotential()


def test_potential_normalisation_and_forces():
    """v_c(R0) = 220 km/s, component shares 5/60/35 %, closed-form forces = -grad Phi."""
    fr = POT.frequencies(np.array([8.0]))
    assert fr["v_c"][0] == pytest.approx(220.0, rel=1e-12)
    x0 = torch.tensor([[8.0, 0.0, 0.0]], dtype=torch.float64)
    assert float(-POT.acceleration(x0)[0, 0]) == pytest.approx(220.0**2 / 8.0, rel=1e-12)
    x = torch.tensor(np.random.default_rng(0).normal(0, 6, (30, 3)), requires_grad=True)
    grad = torch.autograd.grad(POT.potential(x).sum(), x)[0]
    torch.testing.assert_close(POT.acceleration(x.detach()), -grad, rtol=1e-10, atol=1e-10)
    # MWPotential2014 has kappa/Omega ~ 1.34 at the Sun (flat-ish rotation curve: sqrt 2 = 1.41)
    assert fr["kappa"][0] / fr["omega"][0] == pytest.approx(1.34, abs=0.01)


def test_leapfrog_conserves_energy_and_angular_momentum():
    x, v, _ = QuasiIsothermalMixture(actions="epicyclic").sample(500, np.random.default_rng(1), Selection(4.0, 12.0, 1.0))
    x1, v1 = leapfrog(POT.acceleration, x, v, 500.0, 0.5)
    energy = lambda x, v: POT.potential(torch.tensor(x)).numpy() + 0.5 * (v**2).sum(1)
    de = np.abs(energy(x1, v1) / energy(x, v) - 1)
    lz = lambda x, v: x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
    assert np.median(de) < 1e-5 and np.percentile(de, 99) < 1e-3
    np.testing.assert_allclose(lz(x1, v1), lz(x, v), rtol=1e-9)
    assert np.abs(x1 - x).mean() > 1.0  # the stars did move


def test_quasi_isothermal_dispersions_and_selection():
    """Epicyclic qDF: <v_R^2> and <v_z^2> at R ~ R0 equal sigma^2(R_g) averaged over the guiding radii there."""
    pop = QuasiIsothermal(scale_length=2.5, sigma_r=35.0, sigma_z=20.0, sigma_scale_length=8.0)
    sel = Selection(1.0, 16.0, 2.5)
    mix = QuasiIsothermalMixture([pop], actions="epicyclic")
    x, v, k = mix.sample(60_000, np.random.default_rng(2), sel)
    big_r = np.hypot(x[:, 0], x[:, 1])
    assert big_r.min() > 1.0 and big_r.max() < 16.0 and np.abs(x[:, 2]).max() < 2.5 and np.all(k == 0)
    near = np.abs(big_r - 8.0) < 0.25
    v_r = (x[near, 0] * v[near, 0] + x[near, 1] * v[near, 1]) / big_r[near]
    # p(R_g | R = R0) ∝ p(R_g) N(R0 - R_g; 0, sigma_R(R_g) / kappa(R_g)), sigma^2(R_g) ∝ exp(-2 (R_g - R0) / h_sigma)
    rg = mix.rg
    s_r = 35.0 * np.exp(-(rg - 8.0) / 8.0)
    width = s_r / mix.freq["kappa"]
    w = np.gradient(mix.cdfs[0], rg) * np.exp(-0.5 * ((8.0 - rg) / width) ** 2) / width
    expect_r = np.sqrt(np.sum(w * s_r**2) / np.sum(w))
    expect_z = expect_r * 20.0 / 35.0
    assert v_r.std() == pytest.approx(expect_r, rel=4 / np.sqrt(2 * near.sum()))
    assert v[near, 2].std() == pytest.approx(expect_z, rel=4 / np.sqrt(2 * near.sum()))
    assert expect_r > 35.0  # inner guiding radii dominate: hotter than sigma_R(R0)
    assert v[near, 2].mean() == pytest.approx(0.0, abs=4 * expect_z / np.sqrt(near.sum()))


def test_simulator_kick_and_reproducibility():
    sim = get_simulator("solar_neighbourhood", n_stars=600)
    a = sim.simulate({"kick_vz": 0.0, "time_myr": 0.0}, 5)
    b = sim.simulate({"kick_vz": 15.0, "time_myr": 0.0}, 5)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_allclose(b["vz"] - a["vz"], 15.0)
    c = sim.simulate({"kick_vz": 15.0, "time_myr": 0.0}, 5)
    for key in a:
        np.testing.assert_array_equal(b[key], c[key])


def test_localflows_kick_moves_exactly_a_random_tenth_of_the_stars():
    """kick_fraction = 0.1: 60 of 600 stars gain exactly +20 km/s in v_z, the rest are the equilibrium stars."""
    a = get_simulator("solar_neighbourhood", n_stars=600).simulate({"kick_vz": 0.0, "time_myr": 0.0}, 5)
    sim = get_simulator("solar_neighbourhood", n_stars=600, kick_fraction=0.1)
    b = sim.simulate({"kick_vz": 20.0, "time_myr": 0.0}, 5)
    dv = b["vz"] - a["vz"]
    kicked = np.isclose(dv, 20.0)
    assert kicked.sum() == 60 and np.allclose(dv[~kicked], 0.0)
    assert not np.array_equal(np.flatnonzero(kicked), np.arange(60))  # a random subset, not the first stars
    np.testing.assert_array_equal(a["x"], b["x"])
    assert sim.config["kick_fraction"] == 0.1 and "kick_fraction" not in get_simulator("solar_neighbourhood").config


def test_chunked_store_is_one_catalogue_and_missing_rv(tmp_path):
    """Chunks written by popstore.generate concatenate into one catalogue; the missing-RV subset round-trips."""
    from distributed import Client

    sim = get_simulator("solar_neighbourhood", n_stars=1500, actions="epicyclic")
    params = pd.DataFrame({"kick_vz": [0.0] * 3, "time_myr": [0.0] * 3})
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        rep = popstore.generate(sim, params, tmp_path / "sn.zarr", client=c, samples_per_chunk=1, progress=False)
    assert rep.complete
    ds = popstore.open_store(tmp_path / "sn.zarr")
    x, v = catalogue_arrays(ds)
    assert x.shape == (4500, 3)
    direct = sim.simulate({"kick_vz": 0.0, "time_myr": 0.0}, int(ds.seed.values[1]))
    np.testing.assert_array_equal(x[1500:3000, 0], direct["x"])
    sub = missing_rv_subset(x, v, np.random.default_rng(0))
    big_r = np.hypot(sub.x.values, sub.y.values)
    assert big_r.min() > 7 and big_r.max() < 9
    assert sub.has_vlos.mean() == pytest.approx(0.5, abs=0.06)
    assert np.isnan(sub.v_los.values[~sub.has_vlos.values]).all()
    _, vf = full_velocities(sub)
    inside = (np.hypot(x[:, 0], x[:, 1]) > 7) & (np.hypot(x[:, 0], x[:, 1]) < 9)
    np.testing.assert_allclose(vf, v[inside][sub.has_vlos.values], atol=1e-9)


def cylindrical(x, v):
    big_r = np.hypot(x[:, 0], x[:, 1])
    return np.stack([big_r, x[:, 2], (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r,
                     (x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]) / big_r, v[:, 2]], axis=1)


def test_azimuthal_wedge_is_exact_for_axisymmetry():
    """A wedge sample has the full disc's (R, z, v) distribution; randomise_azimuth keeps each star's invariants."""
    mix = QuasiIsothermalMixture(actions="epicyclic")
    full = cylindrical(*mix.sample(40_000, np.random.default_rng(4), Selection())[:2])
    x, v, _ = mix.sample(40_000, np.random.default_rng(5), Selection(phi_max=0.15))
    wedge = cylindrical(x, v)
    assert np.abs(np.arctan2(x[:, 1], x[:, 0])).max() < 0.15
    for j in range(5):
        assert stats.ks_2samp(full[:, j], wedge[:, j]).pvalue > 0.001
    x2, v2 = randomise_azimuth(x, v, 0.05, np.random.default_rng(6))
    np.testing.assert_allclose(cylindrical(x2, v2), wedge, rtol=1e-12, atol=1e-9)
    assert np.abs(np.arctan2(x2[:, 1], x2[:, 0])).max() < 0.05


def test_qdf_log_df_matches_sampler():
    """E_f[g / f] = int g = 1 for a normalised Gaussian g: log_df and the sampler describe the same unit-total DF."""
    mix = QuasiIsothermalMixture(actions="epicyclic")
    x, v, _ = mix.sample(300_000, np.random.default_rng(0), Selection(0.0, 1e9, 1e9))
    mu, sd = np.array([8, 0, 0, 0, 215, 0.0]), np.array([0.7, 0.7, 0.3, 40, 30, 25.0])
    pts = np.c_[x, v]
    log_g = -0.5 * (((pts - mu) / sd) ** 2).sum(1) - np.log(sd).sum() - 3 * np.log(2 * np.pi)
    w = np.exp(log_g - mix.log_df(torch.tensor(x), torch.tensor(v)).numpy())
    assert w.mean() == pytest.approx(1.0, abs=4 * w.std() / np.sqrt(len(w)))
    assert w.std() / np.sqrt(len(w)) < 0.05


def test_galpy_potential_matches_ours():
    """The galpy potential used for the Staeckel actions has our forces to round-off (potential: up to a constant)."""
    from galpy.potential import evaluatePotentials, evaluateRforces, evaluatezforces

    from popstore.galaxy.dynamics.staeckel import galpy_potential

    gp, ro, vo = galpy_potential(POT), POT.r0, POT.v0
    rng = np.random.default_rng(0)
    big_r, z = rng.uniform(0.5, 20, 50), rng.uniform(-4, 4, 50)
    acc = POT.acceleration(torch.tensor(np.c_[big_r, 0 * big_r, z])).numpy()
    np.testing.assert_allclose(evaluateRforces(gp, big_r / ro, z / ro) * vo**2 / ro, acc[:, 0], rtol=1e-12)
    np.testing.assert_allclose(evaluatezforces(gp, big_r / ro, z / ro) * vo**2 / ro, acc[:, 2], rtol=1e-12, atol=1e-12)
    diff = POT.potential_rz(torch.tensor(big_r), torch.tensor(z)).numpy() - evaluatePotentials(gp, big_r / ro, z / ro) * vo**2
    assert np.ptp(diff) < 1e-9 * np.abs(diff).max()


def test_staeckel_actions_epicyclic_limit_and_gradients():
    """Small epicycles: Staeckel actions -> epicyclic ones (J_R = v_R^2 / 2 kappa, J_z = v_z^2 / 2 nu); autograd = finite differences."""
    mix = QuasiIsothermalMixture()
    fr = POT.frequencies(np.array([8.0]))
    x = np.array([[8.0, 0.0, 0.0]] * 2)
    v = np.array([[1.0, 220.0, 0.5], [2.0, 220.0, 1.0]])
    j = mix.staeckel.numpy(x, v)
    np.testing.assert_allclose(j[:, 0], v[:, 0] ** 2 / (2 * fr["kappa"][0]), rtol=0.01)
    np.testing.assert_allclose(j[:, 1], v[:, 2] ** 2 / (2 * fr["nu"][0]), rtol=0.01)
    xt = torch.tensor([[7.6, 0.3, 0.2]], dtype=torch.float64, requires_grad=True)
    vt = torch.tensor([[20.0, 210.0, -15.0]], dtype=torch.float64, requires_grad=True)
    gx, gv = torch.autograd.grad(mix.staeckel(xt, vt)[:, 1].sum(), (xt, vt))
    h = 1e-3  # 10x the backward pass's steps
    for i, (g, base, step) in enumerate(((gx, xt, h), (gv, vt, 100 * h))):
        for c in range(3):
            up, dn = base.detach().numpy().copy(), base.detach().numpy().copy()
            up[0, c] += step
            dn[0, c] -= step
            pairs = ((up, vt.detach().numpy()), (dn, vt.detach().numpy())) if i == 0 else ((xt.detach().numpy(), up), (xt.detach().numpy(), dn))
            fd = (mix.staeckel.numpy(*pairs[0])[0, 1] - mix.staeckel.numpy(*pairs[1])[0, 1]) / (2 * step)
            assert float(g[0, c]) == pytest.approx(fd, rel=1e-5, abs=1e-6)


def test_staeckel_proposal_and_rejection_sampler():
    """The Gaussian proposal is the epicyclic qDF; rejection draws match importance-weighted proposals (same f)."""
    mix = QuasiIsothermalMixture()
    rng = np.random.default_rng(11)
    xe, ve, ke = QuasiIsothermalMixture(actions="epicyclic").sample(2000, rng, Selection(4, 12, 1))
    lq = mix.log_proposal(xe, ve, ke)
    mix_g = QuasiIsothermalMixture(proposal=(("gaussian", 1.0, 1.0, 1.0),))
    lf = mix_g._log_populations(torch.tensor(xe), torch.tensor(ve), "epicyclic").gather(0, torch.tensor(ke)[None])[0].numpy()
    np.testing.assert_allclose(mix_g.log_proposal(xe, ve, ke), lf - np.log(mix.weights[ke]), atol=1e-4)
    assert np.all(np.isfinite(lq))
    # rejection sample near the Sun vs the proposal reweighted by f/q (self-normalised importance sampling)
    sel = Selection(7.5, 8.5, 0.5, 0.1)
    x, v, k = mix.sample(2500, rng, sel)
    m = 40_000
    kk = rng.choice(3, size=m, p=mix.weights)
    comp = rng.choice(2, size=m, p=[c[1] for c in mix.proposal])
    xq, vq = np.empty((m, 3)), np.empty((m, 3))
    for j in range(3):
        for c in range(2):
            s = (kk == j) & (comp == c)
            xq[s], vq[s] = mix.sample_population(j, int(s.sum()), rng, sel.phi_max, mix.proposal[c])
    big_r = np.hypot(xq[:, 0], xq[:, 1])
    ok = (big_r > 7.5) & (big_r < 8.5) & (np.abs(xq[:, 2]) < 0.5)
    w = np.exp(mix.log_acceptance_ratio(xq[ok], vq[ok], kk[ok]))
    assert np.all(w < mix.rejection_bounds[kk[ok]])

    def stats_of(x, v, k):  # v_R^2, v_z^2, |z|, thick-disc fraction
        big_r = np.hypot(x[:, 0], x[:, 1])
        return np.stack([((x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r) ** 2, v[:, 2] ** 2, np.abs(x[:, 2]), k == 2.0], axis=1)

    got = stats_of(x, v, k)
    ref = stats_of(xq[ok], vq[ok], kk[ok])
    mean_w = (w[:, None] * ref).sum(0) / w.sum()
    err_w = np.sqrt((w[:, None] ** 2 * (ref - mean_w) ** 2).sum(0)) / w.sum()
    err = np.hypot(err_w, got.std(0) / np.sqrt(len(got)))
    np.testing.assert_array_less(np.abs(got.mean(0) - mean_w), 4 * err)
    assert np.sqrt(got[:, 1].mean()) > 15.0 and 0.02 < got[:, 3].mean() < 0.4  # a real mixture of populations
    assert np.all(err[:3] / mean_w[:3] < 0.07)  # moments known to 3-6%: a test with teeth


def test_staeckel_qdf_is_in_equilibrium():
    """CBE acceleration of the exact Staeckel qDF at the Sun = the potential's force to < 0.5% (epicyclic: 6%)."""
    from popstore.galaxy.dynamics.acceleration import cbe_acceleration

    mix = QuasiIsothermalMixture()
    # any velocities where f is non-negligible will do: draw them from the (fast) epicyclic mixture
    x0, v0, _ = QuasiIsothermalMixture(actions="epicyclic").sample(4000, np.random.default_rng(1), Selection(7.0, 9.0, 1.0, 0.15))
    local = v0[np.linalg.norm(x0 - np.array([8.0, 0, 0]), axis=1) < 1.0]
    pos = np.array([[8.0, 0, 0.0], [8.0, 0, 0.1], [8.0, 0, -0.1]])
    vel = local[np.random.default_rng(2).integers(len(local), size=(len(pos), 500))]
    acc = cbe_acceleration(mix.log_df, torch.tensor(pos), torch.tensor(vel)).numpy()
    true = POT.acceleration(torch.tensor(pos)).numpy()
    np.testing.assert_allclose(acc[:, 0] / true[:, 0], 1.0, atol=0.005)
    np.testing.assert_allclose(acc[1:, 2] / true[1:, 2], 1.0, atol=0.005)
