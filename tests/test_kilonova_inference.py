"""AT2017gfo photometry reader, the u..K DU17 bands, the photometric likelihood and the MCMC posterior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from popstore.errors import UserError
from popstore.estimators.emulator import EmulatorConfig, train_emulator
from popstore.kilonova.ejecta import ejecta_from_binary
from popstore.kilonova.inference import (
    DU17Photometry,
    EmulatorPhotometry,
    LikelihoodSettings,
    Prior,
    SamplerSettings,
    derived,
    fit,
    from_sampled,
    log_likelihood,
    median_shift,
    to_sampled,
)
from popstore.kilonova.lightcurve import BC_COEFFS, bolometric_correction, light_curves, time_grid
from popstore.kilonova.photometry import (
    AT2017GFO_EBV,
    Observer,
    distance_modulus,
    extinction,
    read_photometry,
    select,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAW = SHARED / "at2017gfo_photometry.dat"
CORRECTED = SHARED / "at2017gfo_photometry_extinction_corrected.dat"
needs_data = pytest.mark.skipif(not RAW.exists(), reason="../shared/data (AT2017gfo photometry) is absent")


# --- photometry -------------------------------------------------------------------------------------
@needs_data
def test_read_photometry_on_the_shipped_file():
    ds = read_photometry(RAW)
    assert ds.sizes["obs"] == 141
    assert set(ds["band"].values.tolist()) == {"u", "g", "r", "i", "z", "y", "J", "H", "K"}
    assert int(ds["upper_limit"].sum()) == 3 and np.isnan(ds["mag_err"].values[ds["upper_limit"].values]).all()
    # first epoch 2017-08-18T00:00:00 is 11 h 18 min 56 s after the GW170817 trigger
    assert ds["time"].values[0] == pytest.approx((11 * 3600 + 18 * 60 + 56) / 86400, abs=1e-9)
    assert np.all(np.diff(ds["time"].values) >= 0) and ds["time"].attrs["units"] == "day"
    first_g = ds.isel(obs=np.flatnonzero(ds["band"].values == "g")[0])
    assert float(first_g["mag"]) == 17.41 and float(first_g["mag_err"]) == 0.02
    # the corrected file is the raw one minus R_band E(B-V): the extinction is explicit and reproduced
    raw, cor = (read_photometry(p).to_dataframe().reset_index(drop=True) for p in (RAW, CORRECTED))
    both = raw.merge(cor, on=["time", "band"], suffixes=("_raw", "_cor"))
    assert len(both) == 116
    resid = both["mag_raw"] - extinction(both["band"].tolist(), AT2017GFO_EBV) - both["mag_cor"]
    assert np.abs(resid).max() < 0.0025
    early = select(ds, bands=["g", "r"], t_max=1.0)
    assert set(early["band"].values.tolist()) == {"g", "r"} and early["time"].max() <= 1.0


def test_read_photometry_refuses_bad_rows(tmp_path):
    good = "2017-08-18T00:00:00.000 ps1::g 17.41 0.02\n"
    for text, match in ((good + "2017-08-18T00:00:00.000 bessellv 17.0 0.1\n", "unknown filter"),
                        (good + "2017-08-18T00:00:00.000 ps1::g 17.0\n", "4 columns"),
                        (good + "2017-08-18T00:00:00.000 ps1::g x 0.1\n", "cannot read"),
                        ("2017-08-17T00:00:00.000 ps1::g 17.41 0.02\n", "not after the merger"),
                        ("", "no measurements")):
        (tmp_path / "p.dat").write_text(text)
        with pytest.raises(UserError, match=match):
            read_photometry(tmp_path / "p.dat")
    with pytest.raises(UserError, match="does not exist"):
        read_photometry(tmp_path / "missing.dat")


def test_distance_modulus_and_extinction_are_explicit():
    assert distance_modulus(40.0) == pytest.approx(5 * np.log10(4e6), abs=1e-12)  # 33.0103
    assert distance_modulus(1e-5) == pytest.approx(0.0, abs=1e-12)  # 10 pc
    obs = Observer(40.0, ebv=0.1)
    np.testing.assert_allclose(obs.offsets(["g", "K"]), 5 * np.log10(4e6) + 0.1 * np.array([3.172, 0.302]))
    with pytest.raises(UserError):
        Observer(-1.0)
    with pytest.raises(UserError):
        extinction(["V"], 0.1)


# --- bands ------------------------------------------------------------------------------------------
def test_u_y_j_h_k_bands():
    t = time_grid(0, 15, 0.05)
    m1, m2, l1, l2 = 1.5, 1.2, 200.0, 900.0
    bands = ("u", "z", "y", "J", "H", "K")
    mag = light_curves(m1, m2, l1, l2, t, bands)
    mej = ejecta_from_binary(m1, m2, l1, l2).mass
    tt = t / (100 * mej) ** (1 / 3.2)
    np.testing.assert_array_equal(np.isfinite(mag[0]), (tt > 2) & (tt <= 5))  # u: fitted only to tt = 5
    for b in (1, 3, 4, 5):
        np.testing.assert_array_equal(np.isfinite(mag[b]), (tt > 2) & (tt <= 15))
    # y: linear in wavelength between z (8657.8 A) and J (12350 A), as the published implementation
    w = (9603.1 - 8657.8) / (12350.0 - 8657.8)
    np.testing.assert_allclose(mag[2], (1 - w) * mag[1] + w * mag[3], rtol=0, atol=1e-12)
    # J bolometric correction at tt = 3 by hand: -1.038 + 1.348*3 - 0.2364*9 + 0.0137*27 - 0.000261*81
    assert bolometric_correction("J", 3.0) == pytest.approx(-1.038 + 4.044 - 2.1276 + 0.3699 - 0.021141, abs=1e-12)
    assert set(BC_COEFFS) == {"u", "g", "r", "i", "z", "J", "H", "K"}


# --- likelihood --------------------------------------------------------------------------------------
def _toy_data(mag, err, upper, band=None, time=None):
    import xarray as xr

    n = len(mag)
    return xr.Dataset({"mag": ("obs", np.asarray(mag, float)), "mag_err": ("obs", np.asarray(err, float)),
                       "upper_limit": ("obs", np.asarray(upper, bool))},
                      coords={"time": ("obs", np.asarray(time if time is not None else np.arange(1.0, n + 1))),
                              "band": ("obs", np.asarray(band if band is not None else ["r"] * n))})


def test_log_likelihood_against_a_hand_computed_value():
    data = _toy_data([18.0, 19.0, 20.0, 21.0], [0.3, 0.1, np.nan, 0.2], [False, False, True, False])
    model = np.array([[18.4, np.nan, 20.1, 21.0]])
    s = LikelihoodSettings(floor=0.4, miss_mag=2.0)
    # 1: r = 0.4, s^2 = 0.09 + 0.16 = 0.25; 2: undefined: r = 2, s^2 = 0.01 + 0.16 = 0.17;
    # 3: upper limit 20.0, model 0.1 mag fainter: ln Phi(0.1 / 0.4); 4: r = 0, s^2 = 0.04 + 0.16 = 0.2
    by_hand = (-0.5 * 0.16 / 0.25 - 0.5 * np.log(2 * np.pi * 0.25)
               - 0.5 * 4.0 / 0.17 - 0.5 * np.log(2 * np.pi * 0.17)
               + np.log(norm.cdf(0.25))
               - 0.5 * np.log(2 * np.pi * 0.2))
    assert log_likelihood(model, data, s)[0] == pytest.approx(by_hand, rel=1e-12)
    # an upper limit missed by the model (brighter than the limit) costs ln Phi(-z)
    bright = log_likelihood(np.array([[18.0, 19.0, 19.2, 21.0]]), data, s)[0]
    assert bright - log_likelihood(np.array([[18.0, 19.0, 20.8, 21.0]]), data, s)[0] == pytest.approx(
        np.log(norm.cdf(-2.0)) - np.log(norm.cdf(2.0)), rel=1e-12)
    # vectorised over models
    assert log_likelihood(np.repeat(model, 3, axis=0), data, s).shape == (3,)
    with pytest.raises(UserError):
        LikelihoodSettings(floor=0.0)
    with pytest.raises(UserError, match="walkers"):
        SamplerSettings(n_walkers=4)
    with pytest.raises(UserError):
        SamplerSettings(n_steps=100, burn=100)


def test_du17_photometry_is_the_model_shifted_by_the_distance_modulus():
    data = _toy_data([20.0] * 4, [0.1] * 4, [False] * 4, band=["g", "K", "y", "g"], time=[3.0, 3.0, 5.0, 9.0])
    params = np.array([[1.5, 1.2, 200.0, 900.0], [1.4, 1.3, 300.0, 500.0]])
    obs = Observer(40.0, ebv=0.05)
    got = DU17Photometry(data, obs)(params)
    for k, (b, t) in enumerate(zip(["g", "K", "y", "g"], [3.0, 3.0, 5.0, 9.0])):
        expected = light_curves(*params.T, [t], (b,))[:, 0, 0] + obs.offsets([b])[0]
        np.testing.assert_allclose(got[:, k], expected, rtol=0, atol=1e-12)


def test_prior_and_coordinates():
    prior = Prior()
    x = prior.sample(500, 0)
    assert np.all(prior.log_prob(x) == 0.0)
    p = from_sampled(x)
    assert np.all(p[:, 0] >= p[:, 1]) and np.all(p[:, 2] <= p[:, 3])
    np.testing.assert_allclose(to_sampled(p), x, rtol=1e-12)
    bad = x[:3].copy()
    bad[0, 0], bad[1, 2], bad[2, 1] = 2.5, 4.0, bad[2, 0] + 0.1  # out of range; lambda1 > 5000; m2 > m1
    assert np.all(prior.log_prob(bad) == -np.inf)
    d = derived(np.array([[1.4, 1.4, 400.0, 400.0]]))
    assert d["chirp_mass"][0] == pytest.approx(1.4 * 2**-0.2, rel=1e-12)  # equal masses: Mc = m / 2^(1/5)
    assert d["lambda_tilde"][0] == pytest.approx(400.0, rel=1e-12)  # equal stars: Lambda-tilde = Lambda


def test_sampler_recovers_a_synthetic_du17_light_curve():
    truth = np.array([1.45, 1.25, 250.0, 700.0])
    ej = ejecta_from_binary(*truth)
    bands = ["g", "r", "i", "z", "J", "H", "K"]
    times = np.array([2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    b, t = np.meshgrid(bands, times, indexing="ij")
    clean = _toy_data(np.zeros(b.size), np.full(b.size, 0.05), np.zeros(b.size, bool), b.ravel(), t.ravel())
    model = DU17Photometry(clean, Observer(40.0))
    mag = model(truth[None])[0]
    keep = np.isfinite(mag)
    rng = np.random.default_rng(3)
    data = clean.isel(obs=np.flatnonzero(keep))
    data["mag"] = ("obs", mag[keep] + 0.05 * rng.standard_normal(keep.sum()))
    post = fit(DU17Photometry(data, Observer(40.0)), data, Prior(), LikelihoodSettings(floor=0.02, miss_mag=2.0),
               SamplerSettings(n_walkers=32, n_steps=1500, burn=500, thin=5, seed=1))
    for name, true in (("ejecta_mass", ej.mass), ("ejecta_velocity", ej.velocity)):
        lo, hi = np.percentile(post[name].values, [1, 99])
        assert lo <= true <= hi, (name, lo, true, hi)
    lo, hi = np.percentile(np.log10(post["ejecta_mass"].values), [16, 84])
    assert hi - lo < 0.1  # the light curve pins the ejecta mass (prior: ~2 dex)
    assert 0.15 < post.attrs["acceptance"] < 0.8
    assert median_shift(post, post, ["m1"]) == {"m1": 0.0}


def test_emulator_photometry_masks_like_du17_and_interpolates():
    """A tiny emulator of 3 bands on 6 times, conditioned on the ejecta; NaN where DU17 is undefined."""
    from popstore.kilonova.params import binary_table

    table = binary_table(400, seed=0)
    ej = ejecta_from_binary(*(table[c].to_numpy() for c in ("m1", "m2", "lambda1", "lambda2")))
    ok = ej.mass > 0
    times = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 12.0])
    curves = light_curves(*(table[c].to_numpy()[ok] for c in ("m1", "m2", "lambda1", "lambda2")), times,
                          ("r", "i", "K"))
    curves = np.where(np.isfinite(curves), curves, -10.0)  # a fill; the test checks the masking, not accuracy
    labels = np.stack([ej.mass[ok], ej.velocity[ok], ej.theta[ok]], axis=1)
    emu, _ = train_emulator(curves, labels, curves[:50], labels[:50], ["ejecta_mass", "ejecta_velocity", "theta_ej"],
                            EmulatorConfig(n_layers=2, hidden=16, n_blocks=1, epochs=1, x_noise=0.0),
                            log_labels=[True, False, False], coords={"band": ["r", "i", "K"], "time": times.tolist()},
                            progress=False)
    data = _toy_data(np.zeros(4), np.full(4, 0.1), np.zeros(4, bool), ["K", "r", "i", "r"], [2.5, 6.5, 14.0, 1.5])
    params = np.array([[1.5, 1.2, 200.0, 900.0], [1.45, 1.42, 3000.0, 4000.0]])  # the second has no ejecta
    obs = Observer(40.0)
    got = EmulatorPhotometry(data, emu, obs)(params)
    du17 = DU17Photometry(data, obs)(params)
    np.testing.assert_array_equal(np.isfinite(got[:, :2]), np.isfinite(du17[:, :2]))
    assert np.isnan(got[:, 2]).all()  # 14 d: after the emulated times
    assert np.isnan(got[1]).all()
    lab, _ = EmulatorPhotometry.labels_of(emu, params[:1])
    central = emu.sample(lab, 1, temperature=0.0)[0, 0]  # (band, time)
    expected = 0.5 * (central[2, 1] + central[2, 2]) + obs.distance_modulus  # K at 2.5 d, halfway between 2 and 3 d
    assert got[0, 0] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(UserError, match="no band"):
        EmulatorPhotometry(_toy_data([1.0], [0.1], [False], ["u"], [3.0]), emu, obs)
