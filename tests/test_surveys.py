"""Radio survey models: radiometer equation, broadening, sky coverage, detection physics."""

from __future__ import annotations

import numpy as np
import pytest

from popstore.pulsars.surveys import (
    DETECTION_SURVEYS, SURVEYS, Survey, beam_gain, dm_smearing, effective_width, in_any_sky_area, observe,
    observe_all, radiometer_snr, scale_scattering, scattering_time_327, sky_temperature,
)

PMPS = SURVEYS["PMPS"]


def test_radiometer_snr_hand_computed():
    # PMPS, S_bar = 1 mJy, G = 0.735 K/Jy, P = 1 s, w_eff = 50 ms, T_sky = 0:
    # 7.35e-4 K * sqrt(2 * 2100 s * 288 MHz) = 7.35e-4 * 1.09982e6 = 808.37;
    # * sqrt((1 - 0.05) / 0.05) = * 4.35890 -> 3523.6; / (1.25 * 21 K) = 134.23
    snr = radiometer_snr(np.array([1e-3]), np.array([0.735]), np.array([1.0]), np.array([0.05]), np.array([0.0]), PMPS)
    assert snr[0] == pytest.approx(134.23, rel=1e-4)
    # a 30 K sky lowers it by 21 / 51
    snr_sky = radiometer_snr(np.array([1e-3]), np.array([0.735]), np.array([1.0]), np.array([0.05]), np.array([30.0]), PMPS)
    assert snr_sky[0] == pytest.approx(134.23 * 21 / 51, rel=1e-4)


def test_radiometer_zero_when_pulse_fills_period():
    snr = radiometer_snr(np.ones(3), np.full(3, 0.735), np.ones(3), np.array([1.0, 1.5, 0.999]), np.zeros(3), PMPS)
    assert snr[0] == 0 and snr[1] == 0 and snr[2] > 0


def test_dm_smearing_matches_lorimer_kramer():
    # t_DM = 8.3 us DM (dnu/MHz) (nu/GHz)^-3 (Lorimer & Kramer 2005, eq. 5.2)
    assert dm_smearing(1.0, 1e6, 1e9) == pytest.approx(8.30e-6, rel=2e-3)
    # PMPS: 3 MHz channels at 1.374 GHz, DM = 100 -> 8.3e-6 * 100 * 3 / 2.5939 = 0.9600 ms
    assert dm_smearing(100.0, PMPS.chan_bw, PMPS.f_c) == pytest.approx(9.600e-4, rel=2e-3)


def test_effective_width_adds_in_quadrature():
    assert effective_width(3e-3, 4e-3, 0.0, 0.0) == pytest.approx(5e-3)
    assert effective_width(0.0, 0.0, 0.0, 64e-6) == pytest.approx(64e-6)


def test_scattering_law_median_and_frequency_scaling():
    rng = np.random.default_rng(1)
    tau = scattering_time_327(np.full(200_001, 100.0), rng)
    expected = 3.6e-9 * 100**2.2 * (1 + 1.94e-3 * 100**2)  # Krishnakumar et al. 2015, s at 327 MHz
    assert np.median(tau) == pytest.approx(expected, rel=0.01)
    assert np.std(np.log10(tau)) == pytest.approx(0.5, rel=0.01)
    assert scale_scattering(1.0, 654e6) == pytest.approx(2.0**-4.4)


def test_beam_gain_range_and_mean():
    g = beam_gain(200_000, PMPS, np.random.default_rng(2))
    assert g.max() <= 0.735 and g.min() >= 0.735 * np.exp(-2.77 / 4)
    # off^2/FWHM^2 ~ U(0, 1/4): E[G] = G0 (1 - e^{-0.6925}) / 0.6925
    assert g.mean() == pytest.approx(0.735 * (1 - np.exp(-0.6925)) / 0.6925, rel=2e-3)


def test_sky_temperature_fallback():
    assert sky_temperature(0.0, 0.0, 408e6) == pytest.approx(300.0)
    assert sky_temperature(180.0, 90.0, 408e6) == pytest.approx(25 + 275 / ((1 + (180 / 42) ** 2) * (1 + 30**2)))
    assert sky_temperature(0.0, 0.0, 1.374e9) == pytest.approx(300.0 * (408 / 1374) ** 2.6)


def test_sky_areas():
    l = np.array([0.0, 0.0, 0.0, 60.0, 100.0, 100.0, -150.0])
    b = np.array([1.0, 10.0, 40.0, 1.0, 20.0, 20.0, 0.0])
    dec = np.array([-30.0, -30.0, -30.0, 0.0, 5.0, 20.0, 0.0])
    assert SURVEYS["PMPS"].sky.contains(l, b, dec).tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert SURVEYS["SMPS"].sky.contains(l, b, dec).tolist() == [0, 1, 0, 0, 0, 0, 0]
    assert SURVEYS["HTRU_mid"].sky.contains(l, b, dec).tolist() == [1, 1, 0, 0, 0, 0, 0]
    # HTRU high: outside the mid-latitude box and dec < 10 deg
    assert SURVEYS["HTRU_high"].sky.contains(l, b, dec).tolist() == [0, 0, 1, 1, 1, 0, 1]
    assert in_any_sky_area(l, b, dec).tolist() == [1, 1, 1, 1, 1, 0, 1]


def _catalogue(n: int, l: float, b: float, dec: float, P: float = 0.5, duty: float = 0.03) -> dict[str, np.ndarray]:
    return {"l": np.full(n, l), "b": np.full(n, b), "dec": np.full(n, dec), "P": np.full(n, P),
            "w": np.full(n, duty * P), "beamed": np.ones(n, bool)}


def _fraction(survey: Survey, cat, dm, flux, seed=0) -> float:
    rng = np.random.default_rng(seed)
    return observe(survey, cat, dm, scattering_time_327(dm, rng), lambda nu: flux, rng).detected.mean()


def test_brighter_pulsars_are_detected_more():
    n = 20_000
    cat = _catalogue(n, 10.0, 0.5, -20.0)
    dm = np.full(n, 200.0)
    rng = np.random.default_rng(3)
    base = 10 ** rng.uniform(-5, -1, n)  # Jy, peak flux density at f_c
    fr = [_fraction(PMPS, cat, dm, base * k) for k in (0.1, 1.0, 10.0)]
    assert fr[0] < fr[1] < fr[2]
    assert 0.05 < fr[1] < 0.95


def test_closer_pulsars_are_detected_more():
    # same luminosity; flux ~ 1/d^2, DM ~ 40 pc cm^-3 per kpc
    n = 20_000
    cat = _catalogue(n, 10.0, 0.5, -20.0)
    lum = 10 ** np.random.default_rng(4).uniform(-3, 1, n)  # Jy kpc^2
    fr = [_fraction(PMPS, cat, np.full(n, 40.0 * d), lum / d**2) for d in (1.0, 3.0, 9.0)]
    assert fr[0] > fr[1] > fr[2]


def test_scattering_hides_short_period_pulsars():
    # same flux and period, higher DM -> more scattering and smearing -> fewer detections
    n = 20_000
    cat = _catalogue(n, 10.0, 0.5, -20.0, P=0.05)
    flux = 10 ** np.random.default_rng(5).uniform(-4, 0, n)
    fr = [_fraction(PMPS, cat, np.full(n, dm), flux) for dm in (50.0, 400.0, 1000.0)]
    assert fr[0] > fr[1] > fr[2]


def test_outside_sky_area_never_detected():
    n = 1_000
    huge = np.full(n, 1e3)  # 1 kJy: detected anywhere inside a survey
    inside = _catalogue(n, 10.0, 0.5, -20.0)
    outside = _catalogue(n, 120.0, 0.5, 60.0)  # l = 120 deg, dec = +60: no survey covers it
    rng = np.random.default_rng(6)
    obs_in = observe_all(inside, np.full(n, 100.0), lambda nu: huge, rng)
    obs_out = observe_all(outside, np.full(n, 100.0), lambda nu: huge, rng)
    assert obs_in["PMPS"].detected.all() and obs_in["HTRU_low_mid"].detected.all()
    assert not obs_in["SMPS"].detected.any() and not obs_in["HTRU_high"].detected.any()
    for name in DETECTION_SURVEYS:
        assert not obs_out[name].detected.any()
        assert (obs_out[name].snr == 0).all()


def test_unbeamed_never_detected():
    n = 100
    cat = _catalogue(n, 10.0, 0.5, -20.0)
    cat["beamed"][:] = False
    obs = observe_all(cat, np.full(n, 100.0), lambda nu: np.full(n, 1e3), np.random.default_rng(7))
    assert not any(o.detected.any() for o in obs.values())


def test_htru_low_wins_in_combination():
    # inside both low and mid: the combined width and flux are HTRU low's (same here, but its S/N is)
    n = 2_000
    cat = _catalogue(n, 0.0, 1.0, -30.0)
    flux = np.full(n, 1e-2)
    obs = observe_all(cat, np.full(n, 50.0), lambda nu: flux, np.random.default_rng(8))
    rng = np.random.default_rng(8)  # replay observe_all's draws: scattering, then surveys in order
    tau = scattering_time_327(np.full(n, 50.0), rng)
    single = {k: observe(s, cat, np.full(n, 50.0), tau, lambda nu: flux, rng) for k, s in SURVEYS.items()}
    low, mid = single["HTRU_low"], single["HTRU_mid"]
    assert not np.array_equal(low.snr, mid.snr)
    comb = obs["HTRU_low_mid"]
    assert low.detected.all() and comb.detected.all()
    np.testing.assert_array_equal(comb.snr, low.snr)


def test_survey_round_trip():
    for s in SURVEYS.values():
        assert Survey.from_dict(s.to_dict()) == s


def test_fft_search_efficiency_morello2020():
    from popstore.pulsars.surveys import fft_search_efficiency, with_fft_search

    # eq. 44 of Morello et al. (2020): 1 / (1 + 0.0473 delta^-0.627); delta = 1 -> 1 / 1.0473,
    # delta = 0.05 -> 0.0473 * 0.05^-0.627 = 0.0473 * 6.5423 = 0.30945 -> 0.76367
    assert fft_search_efficiency(np.array([1.0]))[0] == pytest.approx(1 / 1.0473, rel=1e-12)
    assert fft_search_efficiency(np.array([0.05]))[0] == pytest.approx(0.76367, rel=1e-4)
    # switched on, the S/N of every star is multiplied by it (same random draws)
    n = 50
    rng = np.random.default_rng(1)
    cat = {"l": np.zeros(n), "b": np.zeros(n), "dec": np.full(n, -30.0), "P": rng.uniform(0.1, 2.0, n),
           "w": np.full(n, 0.01), "beamed": np.ones(n, bool)}
    dm = np.full(n, 50.0)
    tau = np.full(n, 1e-4)
    flux = lambda nu: np.full(n, 1e-3)  # noqa: E731
    fft = with_fft_search({"PMPS": PMPS}, True)["PMPS"]
    plain = observe(PMPS, cat, dm, tau, flux, np.random.default_rng(2))
    with_fft = observe(fft, cat, dm, tau, flux, np.random.default_rng(2))
    np.testing.assert_allclose(with_fft.snr, plain.snr * fft_search_efficiency(plain.w_eff / cat["P"]), rtol=1e-12)
    assert Survey.from_dict(fft.to_dict()) == fft
