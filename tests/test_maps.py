"""Vectorised binned maps (popstore.maps) and the pulsar full-population map builders."""

import dataclasses

import numpy as np
import pytest

from popstore.maps import bin_index, binned_map
from popstore.simulator import Axis
from popstore.pulsars import maps as pmaps
from popstore.pulsars.config import PulsarConfig
from popstore.pulsars.population import simulate_population

XA = Axis.linear("x", 0.0, 4.0, 4, units="kpc")
YA = Axis.linear("y", -1.0, 1.0, 2, units="kpc")


def test_counts_match_histogram2d_and_sum_to_points_in_range():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 5, 5000), rng.uniform(-1.5, 1.5, 5000)
    x[:3] = [4.0, 0.0, np.nan]  # right edge belongs to the last bin; NaN is dropped
    m = binned_map(x, y, XA, YA, smooth_sigma=0)
    ok = np.isfinite(x)
    np.testing.assert_array_equal(m, np.histogram2d(x[ok], y[ok], bins=[XA.bin_edges, YA.bin_edges])[0].T)
    inside = (x >= 0) & (x <= 4) & (y >= -1) & (y <= 1)
    assert m.shape == (2, 4) and m.sum() == inside.sum()
    big = (Axis.linear("x", 0.0, 4.0, 40), Axis.linear("y", -1.0, 1.0, 20))
    np.testing.assert_allclose(binned_map(x, y, *big, smooth_sigma=1.0).sum(), inside.sum(), rtol=1e-12)


def test_weighted_map_is_per_bin_mean_on_hand_made_catalogue():
    x = np.array([0.5, 0.7, 1.5, 3.9, 3.2, 2.5, 9.0])
    y = np.array([-0.5, -0.2, 0.5, 0.9, 0.1, -0.9, 0.0])
    w = np.array([1.0, 3.0, 10.0, -4.0, 6.0, 7.0, 100.0])
    m = binned_map(x, y, XA, YA, weights=w, statistic="mean", fill=-7.0, smooth_sigma=0)
    expect = np.full((2, 4), -7.0)
    expect[0, 0] = 2.0  # (1 + 3) / 2
    expect[1, 1] = 10.0
    expect[1, 3] = 1.0  # (-4 + 6) / 2
    expect[0, 2] = 7.0  # the point at x = 9 is outside
    np.testing.assert_array_equal(m, expect)


def test_log_axis_bins_and_errors():
    ax = Axis("p", edges=np.geomspace(1e-3, 1e2, 6), log=True, units="s")  # one bin per decade
    np.testing.assert_array_equal(bin_index(np.array([1e-3, 5e-3, 0.02, 0.5, 99.0, 1e2, 2e2, 1e-4]), ax),
                                  [0, 0, 1, 2, 4, 4, -1, -1])
    np.testing.assert_allclose(ax.coord_values, np.sqrt(ax.bin_edges[1:] * ax.bin_edges[:-1]))
    with pytest.raises(ValueError, match="needs weights"):
        binned_map(np.zeros(2), np.zeros(2), XA, YA, statistic="mean")
    with pytest.raises(ValueError, match="equal length"):
        binned_map(np.zeros(2), np.zeros(3), XA, YA)


def test_full_maps_of_a_population():
    cfg = dataclasses.replace(PulsarConfig(), resolution_dyn=32, resolution_ppdot=16)
    cat = simulate_population({}, 5000, np.random.default_rng(1), cfg)
    maps = pmaps.full_maps(cat, cfg)
    assert set(maps) == set(pmaps.FULL_MAPS) and len(maps) == 10
    axes = {a.name: a for a in pmaps.full_axes(cfg)}
    for name, spec in pmaps.MAP_SPECS.items():
        assert maps[name].shape == (len(axes[spec.dims[0]]), len(axes[spec.dims[1]])), name
    in_xy = (np.abs(cat["x"]) <= 20) & (np.abs(cat["y"]) <= 20)
    in_pp = (cat["P"] >= 1e-3) & (cat["P"] <= 1e2) & (cat["Pdot"] >= 1e-21) & (cat["Pdot"] <= 1e-9)
    np.testing.assert_allclose(maps["position_map_xy"].sum(), in_xy.sum(), rtol=1e-10)
    np.testing.assert_allclose(maps["position_map_radec"].sum(), 5000, rtol=1e-10)  # every star is on the sky
    np.testing.assert_allclose(maps["ppdot_map"].sum(), in_pp.sum(), rtol=1e-10)
    # unsmoothed flux map: mean log10 S1400 of the beamed stars per bin, -7 where none
    raw = dataclasses.replace(cfg, smooth_sigma_bins=0.0)
    flux = pmaps.ppdot_maps(cat, raw)["ppdot_map_fluxes"]
    sel = cat["beamed"] & in_pp
    ip, ipd = bin_index(cat["P"][sel], axes["p"]), bin_index(cat["Pdot"][sel], axes["pdot"])
    i, j = ipd[0], ip[0]
    here = (ipd == i) & (ip == j)
    np.testing.assert_allclose(flux[i, j], np.log10(cat["S1400"][sel][here]).mean(), rtol=1e-12)
    occupied = np.zeros_like(flux, dtype=bool)
    occupied[ipd, ip] = True
    assert np.all(flux[~occupied] == -7.0)


@pytest.mark.parametrize("log", [False, True])
def test_arithmetic_binning_equals_searchsorted_on_uniform_and_log_edges(log):
    edges = np.geomspace(1e-21, 1e-9, 65) if log else np.linspace(-20.0, 20.0, 65)
    rng = np.random.default_rng(3)
    v = np.r_[10 ** rng.uniform(-22, -8, 20000) if log else rng.uniform(-25, 25, 20000), edges, np.nan, np.inf]
    ref = np.searchsorted(edges, v, side="right") - 1
    ref[v == edges[-1]] = 63
    ref[(ref < 0) | (ref > 63) | ~np.isfinite(v)] = -1
    np.testing.assert_array_equal(bin_index(v, Axis("a", edges=edges, log=log)), ref)


@pytest.mark.parametrize("log", [False, True])
def test_histogram_counts_identical_to_numpy_with_points_on_every_edge(log):
    """fast-histogram's arithmetic binning, corrected near edges, gives numpy.histogram2d's counts exactly."""
    rng = np.random.default_rng(7)
    if log:
        xa = Axis("p", edges=np.geomspace(1e-3, 30.0, 65), log=True)
        ya = Axis("pdot", edges=np.geomspace(1e-21, 1e-9, 49), log=True)
        x, y = 10 ** rng.uniform(-3.5, 2.0, 200_000), 10 ** rng.uniform(-22, -8, 200_000)
    else:
        xa, ya = Axis.linear("ra", 0.0, 360.0, 181), Axis.linear("dec", -90.0, 90.0, 91)
        x, y = rng.uniform(-10, 370, 200_000), rng.uniform(-95, 95, 200_000)
    ex, ey = xa.bin_edges, ya.bin_edges
    # every edge of each axis against random values of the other, both right edges, NaN and inf
    x = np.r_[x, ex, rng.choice(ex, 500), ex[-1], np.nan, np.inf, 1.0]
    y = np.r_[y, rng.choice(ey, ex.size), ey[rng.integers(0, ey.size, 500)], ey[-1], 1.0, 1.0, np.nan]
    ok = np.isfinite(x) & np.isfinite(y)
    ref = np.histogram2d(x[ok], y[ok], bins=[ex, ey])[0].T
    m = binned_map(x, y, xa, ya, smooth_sigma=0)
    np.testing.assert_array_equal(m, ref)
    assert m.sum() == ((x >= ex[0]) & (x <= ex[-1]) & (y >= ey[0]) & (y <= ey[-1])).sum()
    w = rng.normal(size=x.size)
    refw = np.histogram2d(x[ok], y[ok], bins=[ex, ey], weights=w[ok])[0].T
    np.testing.assert_allclose(binned_map(x, y, xa, ya, weights=w, smooth_sigma=0), refw, rtol=1e-9, atol=1e-9)


def test_histogram_of_non_uniform_edges_falls_back_to_exact_bins():
    xa = Axis("x", edges=[0.0, 1.0, 3.0, 7.0])
    x = np.array([0.0, 0.5, 1.0, 2.9, 3.0, 7.0, 7.5, -1.0])
    m = binned_map(x, np.zeros_like(x), xa, YA, smooth_sigma=0)
    np.testing.assert_array_equal(m, [[0, 0, 0], [2, 2, 2]])
