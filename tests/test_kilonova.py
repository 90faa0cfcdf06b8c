"""DU17 kilonova model, parameter tables, NaN transform and the kilonova_du17 simulator."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from popstore.kilonova import (
    BANDS,
    binary_table,
    compactness_from_lambda,
    downsample_fill,
    ejecta_from_binary,
    fill_nearest,
    light_curves,
    order_binaries,
    perturb_labels,
    time_grid,
    valid_samples,
)
from popstore.kilonova.dataset import curves_from_arrays, load_curves
from popstore.kilonova.ejecta import ejecta_mass, opening_angle_phi, opening_angle_theta, velocity_rho, velocity_z
from popstore.kilonova.lightcurve import (
    F0_CGS,
    MSUN_G,
    PC_CM,
    DU17Settings,
    band_magnitudes,
    bolometric_luminosity,
    bolometric_magnitude,
    photospheric_time,
)
from popstore.kilonova.params import check_ordering, noise_draws
from popstore.simulators import get_simulator

# Reference values from gwemlightcurves 0.0.5 (Coughlin et al.; PyPI sdist, GPL-3, run outside this repo):
# EjectaFits.DiUj2017.calc_meje / calc_vej / calc_qej and KNModels.io.DiUj2017.calc_lc(0, 11, 0.01, mej, vej,
# vmin=0.02, th, ph=4 th + pi/2, kappa=10, eps=1.58e10, alp=1.2, eth=0.5, flgbct=0), fed with the Yagi-Yunes
# compactnesses and baryonic masses. Columns: m1, m2, Lambda1, Lambda2, Mej [Msun], v_ej [c], theta_ej [rad],
# L_bol(t=1 d) [erg/s], then g, r, i, z magnitudes at t = 1, 3, 5, 8 d (None = NaN in gwemlightcurves).
GWEM_REFERENCE = [
    (1.35, 1.35, 400, 400, 0.004841487228991658, 0.23890468193302372, 4.1301558106673335, 2.0169740158598016e41,
     [[None, -8.071184, -3.645104, None], [None, -11.374224, -8.106696, -5.205919],
      [None, -13.462275, -11.294494, -8.503875], [None, -15.029444, -13.409183, -10.755065]]),
    (1.5, 1.2, 200, 900, 0.008860565166007948, 0.23199998393114482, 4.111839673103025, 2.676163517204225e41,
     [[None, -9.778163, -5.709275, -1.686339], [None, -12.5855, -9.882863, -6.50871],
      [None, -14.436752, -12.624496, -10.073318], [None, -15.819234, -14.542021, -12.370761]]),
    (1.7, 1.1, 80, 1500, 0.022565718665358944, 0.22883031029706033, 4.066360064851021, 4.2030622486838714e41,
     [[None, -11.405951, -8.869335, -4.768385], [None, -13.693241, -12.257512, -9.220078],
      [None, -15.387377, -14.393653, -12.383305], [None, -16.530454, -15.991873, -14.48742]]),
    (1.9, 1.0, 60, 3000, 0.051509932594714244, 0.20432318285221968, 4.010438239512709, 5.90372475297375e41,
     [[None, None, -10.836636, -7.604749], [None, None, -13.554734, -11.587847],
      [None, None, -15.3711, -14.143578], [None, None, -16.718085, -15.972488]]),
]
REF_TIMES = [1.0, 3.0, 5.0, 8.0]


# --- ejecta ---------------------------------------------------------------------------------------
def test_compactness_yagi_yunes_values_and_clip():
    # Yagi & Yunes 2017 eq. (78): Lambda = 1 -> C = 0.360; C decreases with Lambda; clipped at 0 and 4/9.
    assert compactness_from_lambda(1.0) == pytest.approx(0.360, abs=1e-15)
    c = compactness_from_lambda([50, 400, 5000])
    assert np.all(np.diff(c) < 0) and 0.10 < c[-1] < c[0] < 0.25
    assert compactness_from_lambda(1e-3) == pytest.approx(4 / 9)
    assert compactness_from_lambda(1e8) == 0.0
    with pytest.raises(ValueError):
        compactness_from_lambda([400, -1])


@pytest.mark.parametrize("row", GWEM_REFERENCE, ids=lambda r: f"{r[0]}-{r[1]}")
def test_ejecta_match_gwemlightcurves(row):
    m1, m2, l1, l2, mej, vej, theta = row[:7]
    ej = ejecta_from_binary(m1, m2, l1, l2)
    assert ej.mass == pytest.approx(mej, rel=1e-12)
    assert ej.velocity == pytest.approx(vej, rel=1e-12)
    assert ej.theta == pytest.approx(theta, rel=1e-12)


@pytest.mark.parametrize("row", GWEM_REFERENCE, ids=lambda r: f"{r[0]}-{r[1]}")
def test_light_curve_matches_gwemlightcurves(row):
    m1, m2, l1, l2, *_, lbol1, mags = row
    t = time_grid()
    ej = ejecta_from_binary(m1, m2, l1, l2)
    assert bolometric_luminosity(ej, [1.0]) == pytest.approx(lbol1, rel=1e-12)
    ours = band_magnitudes(ej, t)
    idx = [int(round(x / 0.01)) for x in REF_TIMES]
    ref = np.array([[np.nan if v is None else v for v in band] for band in mags])
    assert np.array_equal(np.isnan(ours[:, idx]), np.isnan(ref))
    np.testing.assert_allclose(ours[:, idx], ref, atol=1e-5)  # reference rounded to 1e-6 mag


@pytest.mark.skipif(not os.environ.get("GWEMLIGHTCURVES_SRC"), reason="set GWEMLIGHTCURVES_SRC to an unpacked gwemlightcurves sdist")
def test_full_curves_match_gwemlightcurves_source():
    """Whole 1101-point curves of random binaries against gwemlightcurves itself (loaded from its source, never vendored)."""
    from popstore.kilonova.reference import gwemlightcurves_curve, load_gwemlightcurves_du17

    reference = gwemlightcurves_curve(*load_gwemlightcurves_du17(os.environ["GWEMLIGHTCURVES_SRC"]))
    table = binary_table(8, seed=5)
    ours = light_curves(*(table[c] for c in ("m1", "m2", "lambda1", "lambda2")), time_grid())
    for k, r in enumerate(table.itertuples()):
        ref = reference(r.m1, r.m2, r.lambda1, r.lambda2)
        assert np.array_equal(np.isnan(ours[k]), np.isnan(ref))
        np.testing.assert_allclose(ours[k], ref, atol=1e-9)


def test_ejecta_mass_symmetric_under_star_exchange():
    c1, c2 = compactness_from_lambda([150.0, 700.0])
    assert ejecta_mass(1.6, c1, 1.25, c2) == pytest.approx(ejecta_mass(1.25, c2, 1.6, c1), rel=1e-14)
    assert velocity_rho(1.6, c1, 1.25, c2) == pytest.approx(velocity_rho(1.25, c2, 1.6, c1), rel=1e-14)


def test_ejecta_require_primary_first():
    with pytest.raises(ValueError, match="m1 >= m2"):
        ejecta_from_binary(1.2, 1.5, 400, 400)


def test_lambda2_is_used_for_the_secondary():
    """KilonovaML defect: its tables had lambda2 = lambda1. Here the secondary's own Lambda sets C2."""
    m1, m2, l1, l2 = 1.5, 1.2, 200.0, 900.0
    ej = ejecta_from_binary(m1, m2, l1, l2)
    c1, c2 = compactness_from_lambda([l1, l2])
    assert ej.mass == pytest.approx(ejecta_mass(m1, c1, m2, c2), rel=1e-14)
    typo = ejecta_from_binary(m1, m2, l1, l1)
    assert abs(ej.mass - typo.mass) > 1e-3 * ej.mass
    t = time_grid()
    assert np.nanmax(np.abs(light_curves(m1, m2, l1, l2, t) - light_curves(m1, m2, l1, l1, t))) > 0.05


def test_phi_uses_theta_of_both_compactnesses():
    """KilonovaML defect: phi_ej was computed with C2 in place of C1."""
    m1, m2, l1, l2 = 1.7, 1.1, 80.0, 1500.0
    c1, c2 = compactness_from_lambda([l1, l2])
    ej = ejecta_from_binary(m1, m2, l1, l2)
    theta = opening_angle_theta(velocity_rho(m1, c1, m2, c2), velocity_z(m1, c1, m2, c2))
    theta_c2 = opening_angle_theta(velocity_rho(m1, c2, m2, c2), velocity_z(m1, c2, m2, c2))
    assert ej.phi == pytest.approx(4 * theta + np.pi / 2, rel=1e-14)
    assert abs(ej.phi - (4 * theta_c2 + np.pi / 2)) > 1e-3
    # DU17 eq. (3.13) maps theta in [pi/8, 3pi/8] onto phi in [pi, 2pi].
    np.testing.assert_allclose(opening_angle_phi([np.pi / 8, 3 * np.pi / 8]), [np.pi, 2 * np.pi], rtol=1e-15)


# --- light curve ----------------------------------------------------------------------------------
def test_luminosity_power_law_after_photosphere_and_zero_point():
    s = DU17Settings()
    ej = ejecta_from_binary(np.array([1.5]), 1.2, 200, 900)
    t_obs = photospheric_time(ej, s)[0]
    t = np.array([1.5, 3.0, 6.0]) * max(t_obs, 1.0)
    lum = bolometric_luminosity(ej, t, s)[0]
    np.testing.assert_allclose(lum[1:] / lum[:-1], 2.0 ** (-s.alpha), rtol=1e-12)
    expected = (1 + ej.theta[0]) * s.eth * s.eps0 * ej.mass[0] * MSUN_G * t[0] ** (-s.alpha)
    assert lum[0] == pytest.approx(expected, rel=1e-12)
    # before t_obs only the fraction t / t_obs escapes
    early = bolometric_luminosity(ej, [0.5 * t_obs], s)[0, 0]
    assert early == pytest.approx(0.5 * (1 + ej.theta[0]) * s.eth * s.eps0 * ej.mass[0] * MSUN_G
                                  * (0.5 * t_obs) ** (-s.alpha), rel=1e-12)
    l0 = 4 * np.pi * (10 * PC_CM) ** 2 * F0_CGS
    assert bolometric_magnitude(l0) == pytest.approx(0.0, abs=1e-12)
    assert bolometric_magnitude(100 * l0) == pytest.approx(-5.0, abs=1e-12)


def test_magnitudes_defined_only_inside_bc_range():
    t = time_grid()
    m1, m2, l1, l2 = 1.5, 1.2, 200.0, 900.0
    mag = light_curves(m1, m2, l1, l2, t)
    tt = t / (100 * ejecta_from_binary(m1, m2, l1, l2).mass) ** (1 / 3.2)
    for b, band in enumerate(BANDS):
        hi = 8.5 if band == "g" else 15.0
        np.testing.assert_array_equal(np.isfinite(mag[b]), (tt > 2) & (tt <= hi))


def test_no_ejecta_gives_all_nan_curves():
    # a near-equal-mass binary of very deformable stars: the DU17 fit is negative, floored at Mej = 0
    ej = ejecta_from_binary(1.5, 1.45, 3000, 4000)
    assert ej.mass == 0.0
    assert np.isnan(band_magnitudes(ej, time_grid())).all()


def test_vectorised_equals_per_binary():
    table = binary_table(16, seed=2)
    cols = [table[c].to_numpy() for c in ("m1", "m2", "lambda1", "lambda2")]
    t = time_grid(0, 11, 0.1)
    batch = light_curves(*cols, t)
    single = np.stack([light_curves(*(c[[k]] for c in cols), t)[0] for k in range(len(table))])
    np.testing.assert_array_equal(batch, single)


# --- parameter tables -----------------------------------------------------------------------------
def test_binary_table_is_ordered_and_fills_the_ranges():
    table = binary_table(2000, seed=0, m_range=(1.0, 2.0), lambda_range=(50, 5000))
    check_ordering(table)
    assert (table.m1 >= table.m2).all() and (table.lambda1 <= table.lambda2).all()
    assert (table.lambda1 < table.lambda2).mean() > 0.99  # distinct Lambdas, not the lambda2 = lambda1 typo
    # the max of two U(1, 2) has mean 5/3, the min 4/3
    assert table.m1.mean() == pytest.approx(5 / 3, abs=0.02)
    assert table.m2.mean() == pytest.approx(4 / 3, abs=0.02)
    assert table[["lambda1", "lambda2"]].to_numpy().min() >= 50 and table.lambda2.max() <= 5000


def test_order_binaries_and_check_ordering():
    bad = pd.DataFrame({"m1": [1.2], "m2": [1.5], "lambda1": [900.0], "lambda2": [200.0]})
    with pytest.raises(ValueError, match="m1 < m2"):
        check_ordering(bad)
    good = order_binaries(bad)
    assert good.iloc[0].tolist() == [1.5, 1.2, 200.0, 900.0]


def test_perturb_labels_reproducible_and_ordered():
    table = binary_table(500, seed=3)
    z = noise_draws(np.arange(500))
    a = perturb_labels(table, z, mass_sigma=0.05, lambda_sigma=0.2)
    np.testing.assert_array_equal(a.to_numpy(), perturb_labels(table, noise_draws(np.arange(500)), 0.05, 0.2).to_numpy())
    check_ordering(a)
    assert np.std(np.log(a.lambda1 * a.lambda2 / (table.lambda1 * table.lambda2))) == pytest.approx(0.2 * np.sqrt(2), rel=0.1)
    np.testing.assert_array_equal(perturb_labels(table, z).to_numpy(), table.to_numpy())


# --- NaN transform --------------------------------------------------------------------------------
def test_fill_nearest_uses_nearest_valid_time():
    x = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan, np.nan])
    filled, empty = fill_nearest(x)
    np.testing.assert_array_equal(filled, [1, 1, 1, 4, 4, 4, 4])
    assert not empty
    tie, _ = fill_nearest(np.array([2.0, np.nan, 3.0]))
    assert tie[1] == 2.0  # equal distance: the earlier time


def test_all_nan_curve_is_flagged_not_zero_filled():
    """KilonovaML defect: all-NaN rows became 0 mag. Here they stay NaN, are flagged, and are dropped."""
    mag = np.full((3, 2, 25), np.nan)
    mag[0] = np.linspace(-15, -10, 25)
    mag[2, 0] = -12.0  # band 1 of sample 2 stays empty
    f = downsample_fill(mag, factor=12)
    np.testing.assert_array_equal(f.time_index, [0, 12, 24])
    np.testing.assert_array_equal(f.empty, [[False, False], [True, True], [False, True]])
    assert np.isnan(f.values[1]).all() and not (f.values == 0).any()
    np.testing.assert_array_equal(valid_samples(f.empty), [True, False, False])
    cs = curves_from_arrays(mag, np.ones((3, 4)), np.arange(25.0), ["g", "r"], factor=12)
    assert len(cs) == 1 and cs.n_dropped == 2 and cs.sample.tolist() == [0]


def test_downsample_fill_on_du17_curves():
    t = time_grid()
    mag = light_curves(np.array([1.35, 1.5]), np.array([1.35, 1.45]), np.array([400.0, 3000]), np.array([400.0, 4000]), t)
    f = downsample_fill(mag, 120)
    np.testing.assert_allclose(t[f.time_index], np.arange(10) * 1.2)
    assert not f.empty[0].any() and f.empty[1].all()  # the second binary has no ejecta
    sub = mag[0][:, f.time_index]
    ok = np.isfinite(sub)
    np.testing.assert_array_equal(f.values[0][ok], sub[ok])
    # before the curve starts, the first valid point is copied back
    first = np.argmax(ok, axis=1)
    for b in range(len(BANDS)):
        np.testing.assert_array_equal(f.values[0, b, :first[b]], sub[b, first[b]])


# --- simulator and store --------------------------------------------------------------------------
def test_simulator_protocol_and_determinism():
    sim = get_simulator("kilonova_du17", dt=0.1, mass_noise=0.02, lambda_noise=0.1)
    json.dumps(sim.config)
    table = binary_table(5, seed=4)
    row = table.iloc[2].to_dict()
    a, b = sim.simulate(row, 11), sim.simulate(row, 11)
    checked = sim.check_sample(a)
    assert checked["mag"].shape == (4, 111)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    batch = sim.simulate_batch(table, [0, 0, 11, 0, 0])
    for k in a:
        np.testing.assert_array_equal(batch[k][2], a[k])
    assert sim.simulate(row, 12)["m1_obs"] != a["m1_obs"]
    np.testing.assert_array_equal(a["mag"], light_curves(*(np.array([row[c]]) for c in ("m1", "m2", "lambda1", "lambda2")),
                                                       sim.time)[0])
    with pytest.raises(ValueError, match="m1 < m2"):
        sim.simulate({**row, "m1": row["m2"] - 0.1}, 0)
    with pytest.raises(ValueError, match="lambda1 > lambda2"):
        sim.simulate({**row, "lambda1": row["lambda2"] + 1.0}, 0)
    with pytest.raises(ValueError):
        get_simulator("kilonova_du17", bands=("V",))


def test_generate_store_round_trip(tmp_path):
    distributed = pytest.importorskip("distributed")
    import popstore

    sim = get_simulator("kilonova_du17", dt=0.05, mass_noise=0.01, lambda_noise=0.05)
    table = binary_table(24, seed=6)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        report = popstore.generate(sim, table, tmp_path / "kn.zarr", client=client, seed=1, samples_per_chunk=8,
                                   progress=False)
    assert report.complete and report.n_written == 24
    ds = popstore.open_store(tmp_path / "kn.zarr")
    assert ds["mag"].dims == ("sample", "band", "time") and list(ds["band"].values) == list(BANDS)
    for c in ("m1", "m2", "lambda1", "lambda2"):
        np.testing.assert_array_equal(ds[c].values, table[c].to_numpy())  # stored labels = the table, lambda2 kept
    np.testing.assert_array_equal(ds["mag"].values, sim.simulate_batch(table, ds["seed"].values)["mag"].astype(np.float32))
    popstore.split(tmp_path / "kn.zarr", test=0.25, valid=0.25, seed=0)
    ds = popstore.open_store(tmp_path / "kn.zarr")
    cs = load_curves(ds, "test", factor=24)
    n_test = int((ds["split"].values == "test").sum())
    assert len(cs) + cs.n_dropped == n_test
    assert cs.curves.shape[1:] == (4, 10) and np.isfinite(cs.curves).all()
    np.testing.assert_array_equal(cs.labels[:, 2], ds["lambda1"].values[cs.sample])
    # noisy labels: drawn from each sample's stored seed, ordered, close to the truth
    obs = load_curves(ds, "test", [f"{c}_obs" for c in ("m1", "m2", "lambda1", "lambda2")], factor=24)
    np.testing.assert_array_equal(obs.curves, cs.curves)
    assert (obs.labels[:, 0] >= obs.labels[:, 1]).all() and (obs.labels[:, 2] <= obs.labels[:, 3]).all()
    assert np.abs(ds["m2_obs"].values - ds["m2"].values).max() < 0.05
    assert 0 < np.abs(ds["m1_obs"].values - ds["m1"].values).max()
    np.testing.assert_array_equal(ds["m1_obs"].values, sim.simulate_batch(table, ds["seed"].values)["m1_obs"])
