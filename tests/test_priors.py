"""Parameter tables: ranges, log-uniform priors, Latin-hypercube stratification."""

import numpy as np
import pytest
from scipy import stats

from popstore.priors import sample_table, unit_cube
from popstore.simulator import Parameter

PARAMS = (Parameter("m", 1.0, 3.0), Parameter("k", 1e-3, 1e1, log=True))


def test_latin_hypercube_has_one_point_per_stratum():
    u = unit_cube(50, 4, seed=1, design="latin_hypercube")
    for col in u.T:
        np.testing.assert_array_equal(np.sort(np.floor(col * 50)), np.arange(50))


def test_uniform_and_log_uniform_ranges():
    t = sample_table(PARAMS, 20_000, seed=2)
    assert t["m"].between(1, 3).all() and t["k"].between(1e-3, 10).all()
    # log10 k is uniform on [-3, 1]; m uniform on [1, 3]
    assert stats.kstest(np.log10(t["k"]), stats.uniform(-3, 4).cdf).pvalue > 0.01
    assert stats.kstest(t["m"], stats.uniform(1, 2).cdf).pvalue > 0.01


def test_same_seed_same_table_and_range_override():
    a = sample_table(PARAMS, 10, seed=3, design="latin_hypercube")
    b = sample_table(PARAMS, 10, seed=3, design="latin_hypercube")
    assert a.equals(b)
    c = sample_table(PARAMS, 100, seed=3, ranges={"m": (2.0, 2.5)})
    assert c["m"].between(2.0, 2.5).all()
    with pytest.raises(KeyError):
        sample_table(PARAMS, 10, seed=3, ranges={"nope": (0, 1)})


def test_bad_inputs():
    with pytest.raises(ValueError):
        Parameter("x", 2.0, 1.0)
    with pytest.raises(ValueError):
        Parameter("x", 0.0, 1.0, log=True)
    with pytest.raises(ValueError):
        unit_cube(10, 2, seed=0, design="sobol")
