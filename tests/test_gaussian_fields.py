"""gaussian_fields physics: spectrum, variance, log-normal mean, temperature-density relation, determinism."""

import numpy as np
import pytest

from popstore.simulators import get_simulator

PARAMS = {"amplitude": 0.4, "slope": 2.0, "smoothing": 1.0}


@pytest.fixture(scope="module")
def sim():
    return get_simulator("gaussian_fields", npix=32)


def test_same_seed_is_bit_identical(sim):
    a, b = sim.simulate(PARAMS, 5), sim.simulate(PARAMS, 5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["density"], sim.simulate(PARAMS, 6)["density"])


def test_unsmoothed_variance_is_the_amplitude(sim):
    p = sim.power(0.7, 2.5, 0.0)
    assert p.mean() == pytest.approx(0.7, rel=1e-12)
    assert p[0, 0] == 0


def test_measured_power_spectrum_matches_input(sim):
    fields = np.stack([sim.gaussian_field(PARAMS, s)[0] for s in range(400)])
    measured = (np.abs(np.fft.fft2(fields)) ** 2).mean(0) / sim.npix**2
    expected = sim.power(**PARAMS)
    k = sim._k
    for kk in (1, 2, 4, 8):  # shell averages agree within sampling noise (400 x ~4kk modes)
        shell = np.abs(k - kk) < 0.5
        assert measured[shell].mean() == pytest.approx(expected[shell].mean(), rel=0.08)


def test_log_normal_density_has_unit_mean_and_temperature_relation(sim):
    maps = [sim.simulate(PARAMS, s) for s in range(200)]
    density = np.stack([m["density"] for m in maps])
    assert density.mean() == pytest.approx(1.0, abs=0.02)
    assert (density > 0).all()
    temp = np.stack([m["temperature"] for m in maps])
    np.testing.assert_allclose(temp, 1e4 * density**0.6, rtol=1e-5)
    g_var = np.log(density).var(axis=(1, 2)).mean()
    assert g_var == pytest.approx(sim.power(**PARAMS).mean(), rel=0.15)
