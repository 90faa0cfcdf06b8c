"""Hernquist DFs and their exact samplers (popstore.galaxy.dynamics.hernquist, simulators.hernquist)."""

import numpy as np
import pytest
from scipy import integrate, stats

from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.galaxy.dynamics.rejection import sample_q2_decreasing
from popstore.simulators import get_simulator

H = Hernquist(1e10, 5.0)
A = H.scale_radius


def sigma_r2_isotropic(r):
    """Hernquist (1990) eq. 10: radial velocity dispersion of the isotropic model."""
    s = r / A
    return H.gm / (12 * A) * (12 * s * (1 + s) ** 3 * np.log((1 + s) / s) - s / (1 + s) * (25 + 52 * s + 42 * s**2 + 12 * s**3))


@pytest.mark.parametrize("r", [0.5, 5.0, 40.0])
def test_dfs_integrate_to_density(r):
    """int f d^3v = rho(r) / M for both DFs (unit-normalised phase-space densities)."""
    psi = -H.potential(r)
    vmax = np.sqrt(2 * psi)
    iso = integrate.quad(lambda s: 4 * np.pi * s**2 * H.isotropic_df(0.5 * s**2 - psi), 0, vmax, epsabs=0)[0]
    aniso = integrate.dblquad(lambda vt, vr: 2 * np.pi * vt * H.anisotropic_df(0.5 * (vr**2 + vt**2) - psi, r * vt),
                              -vmax, vmax, 0, lambda vr: np.sqrt(max(2 * psi - vr**2, 0.0)))[0]
    rho = H.density(r) / H.mass
    assert iso == pytest.approx(rho, rel=1e-6)
    assert aniso == pytest.approx(rho, rel=1e-6)


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_radii_follow_enclosed_mass(kind):
    """KS test: sampled radii follow M(<r) = M r^2 / (r + a)^2, truncated at 200 a."""
    x, _ = H.sample(20_000, np.random.default_rng(11), kind, r_max=200 * A)
    r = np.linalg.norm(x, axis=1)
    assert r.max() < 200 * A
    res = stats.kstest(r, lambda rr: H.mass_fraction(rr) / H.mass_fraction(200 * A))
    assert res.pvalue > 0.01, res


def test_isotropic_speeds_at_fixed_radius_ks():
    """The step-envelope rejection sampler draws q = v/v_esc exactly from q^2 f(E) near the cusp (r = 0.02 a)."""
    r = 0.02 * A
    psi = -H.potential(r)
    dens = lambda q: q**2 * H.isotropic_df(-psi * (1 - q**2))
    grid = np.linspace(0, 1, 200_001)
    cum = integrate.cumulative_simpson(dens(grid), x=grid, initial=0)
    cdf = lambda q: np.interp(q, grid, cum / cum[-1])
    q = sample_q2_decreasing(lambda i, qq: H.isotropic_df(-psi * (1 - qq**2)), 5000, np.random.default_rng(3))
    assert stats.kstest(q, cdf).pvalue > 0.01


def test_velocity_moments():
    """<v_r^2> matches Hernquist (1990) eq. 10 (isotropic); beta = 1/2 for the anisotropic DF."""
    rng = np.random.default_rng(5)
    x, v = H.sample(60_000, rng, "isotropic")
    xa, va = H.sample(60_000, rng, "anisotropic")
    for xx, vv, kind in ((x, v, "isotropic"), (xa, va, "anisotropic")):
        r = np.linalg.norm(xx, axis=1)
        vr = (xx * vv).sum(1) / r
        vt2 = (vv**2).sum(1) - vr**2
        for lo, hi in ((0.3 * A, 0.5 * A), (1.0 * A, 1.3 * A), (3 * A, 4 * A)):
            s = (r > lo) & (r < hi)
            beta = 1 - vt2[s].mean() / (2 * (vr[s] ** 2).mean())
            if kind == "isotropic":
                expect = np.average(sigma_r2_isotropic(r[s]))
                assert (vr[s] ** 2).mean() == pytest.approx(expect, rel=4 * np.sqrt(2 / s.sum()))
                assert abs(beta) < 4 * np.sqrt(3 / s.sum())
            else:
                assert beta == pytest.approx(0.5, abs=4 * np.sqrt(3 / s.sum()))


def test_simulator_reproducible_and_noise_copies():
    """Same seed -> identical catalogue; the noisy copy holds the same stars times N(1, sigma)."""
    params = {"mass": 1e10, "scale_radius": 5.0}
    clean = get_simulator("hernquist", n_stars=4000)
    noisy = get_simulator("hernquist", n_stars=4000, noise=0.1)
    a, b, c = clean.simulate(params, 7), clean.simulate(params, 7), noisy.simulate(params, 7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        ratio = c[k] / a[k]
        assert ratio.mean() == pytest.approx(1.0, abs=0.01)
        assert ratio.std() == pytest.approx(0.1, rel=0.05)
    assert not np.array_equal(clean.simulate(params, 8)["x"], a["x"])


def test_bad_input():
    with pytest.raises(ValueError):
        Hernquist(-1.0, 5.0)
    with pytest.raises(ValueError):
        H.sample(10, np.random.default_rng(0), "tangential")
    with pytest.raises(ValueError):
        get_simulator("hernquist", df="bogus")
