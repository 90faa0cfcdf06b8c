"""Conditional-flow curve emulator: normalisation, training on a toy problem, sampling, save/load, metrics, plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popstore.estimators.emulator import CurveEmulator, EmulatorConfig, Standardizer, build_flow, train_emulator
from popstore.estimators.emulator_metrics import abs_error_stats
from popstore.estimators.emulator_plots import plot_history, snapshot_callback


SMALL = EmulatorConfig(n_layers=2, hidden=16, n_blocks=1, epochs=2, batch_size=64, x_noise=0.0)


def toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Curves x_b(t) = a + b * s_b * t on 6 times and 2 'bands' (s = 1, 2), labels (a, b) with b log-uniform."""
    rng = np.random.default_rng(seed)
    y = np.stack([rng.uniform(-1, 1, n), np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))], axis=1)
    t = np.linspace(0, 1, 6)
    x = y[:, 0, None, None] + y[:, 1, None, None] * np.array([1.0, 2.0])[None, :, None] * t[None, None, :]
    return x, y


def test_standardizer_round_trip_and_log():
    rng = np.random.default_rng(0)
    v = np.stack([rng.normal(3, 2, 200), np.exp(rng.normal(5, 1, 200))], axis=1)
    s = Standardizer.fit(v, log=[False, True])
    w = s.forward(v)
    np.testing.assert_allclose(w.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(w.std(0), 1, atol=1e-12)
    np.testing.assert_allclose(s.inverse(w), v, rtol=1e-12)
    assert Standardizer.from_state(s.state()).forward(v[:3]).tolist() == w[:3].tolist()
    with pytest.raises(ValueError):
        Standardizer.fit(-v, log=[False, True])
    with pytest.raises(ValueError):
        s.forward(np.array([[1.0, 0.0]]))


def test_build_flow_is_seeded():
    a, b = build_flow(12, 2, SMALL), build_flow(12, 2, SMALL)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(ValueError):
        build_flow(1, 2, SMALL)


def test_emulator_learns_conditional_toy_curves(tmp_path):
    xt, yt = toy(1000, 0)
    xv, yv = toy(200, 1)
    cfg = EmulatorConfig(n_layers=4, hidden=32, n_blocks=1, epochs=20, batch_size=128, lr=3e-3, lr_step=10, x_noise=0.01)
    snaps = tmp_path / "snaps"
    cb = snapshot_callback(snaps, xv[:3], yv[:3], every=10)
    emu, hist = train_emulator(xt, yt, xv, yv, ["a", "b"], cfg, log_labels=[False, True],
                               coords={"band": ["s1", "s2"], "time": np.linspace(0, 1, 6).tolist()},
                               callback=cb, progress=False)
    assert hist.valid_loss[hist.best_epoch] < hist.valid_loss[0] - 10
    pred = np.median(emu.sample(yv, n_draws=20, seed=0), axis=1)
    err = np.abs(pred - xv)
    spread = np.abs(xv - xv.mean(0)).mean()  # error of ignoring the labels
    assert np.median(err) < 0.1 * spread
    assert sorted(p.name for p in snaps.iterdir()) == ["epoch_0001.png", "epoch_0010.png", "epoch_0020.png"]
    assert plot_history(hist, tmp_path / "loss.png").stat().st_size > 0

    # seeded sampling and a save/load round trip reproduce draws exactly
    d1 = emu.sample(yv[:5], n_draws=3, seed=7)
    assert d1.shape == (5, 3, 2, 6)
    np.testing.assert_array_equal(d1, emu.sample(yv[:5], n_draws=3, seed=7))
    emu.save(tmp_path / "emu.pt")
    back = CurveEmulator.load(tmp_path / "emu.pt")
    np.testing.assert_array_equal(back.sample(yv[:5], n_draws=3, seed=7), d1)
    np.testing.assert_allclose(back.log_prob(xv[:5], yv[:5]), emu.log_prob(xv[:5], yv[:5]), rtol=1e-6)
    assert back.coords["band"] == ["s1", "s2"] and back.label_names == ("a", "b")
    with pytest.raises(ValueError):
        emu.sample(np.ones((2, 3)))


def test_train_rejects_nan_curves():
    x, y = toy(20, 2)
    x[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_emulator(x, y, x[:5], y[:5], ["a", "b"], SMALL, progress=False)


def test_abs_error_stats_quantiles_and_mask():
    true = np.zeros((2, 2, 5))
    pred = np.zeros_like(true)
    pred[:, 0] = np.arange(10).reshape(2, 5)  # errors 0..9 in channel 0
    pred[:, 1] = -3.0
    mask = np.ones(true.shape, bool)
    mask[1, 1] = False
    stats = abs_error_stats(pred, true, ["g", "r"], mask)
    assert stats.loc["g", "q50"] == pytest.approx(4.5)
    assert stats.loc["g", "q90"] == pytest.approx(8.1)
    assert stats.loc["r", "q50"] == 3.0 and stats.loc["r", "n_points"] == 5
    with pytest.raises(ValueError):
        abs_error_stats(pred, true[:, :1], ["g"])


def test_temperature_zero_is_deterministic_and_calibration_hits_the_target():
    from popstore.estimators.emulator import band_coverage, calibrate_temperature

    xt, yt = toy(600, 3)
    xv, yv = toy(150, 4)
    cfg = EmulatorConfig(n_layers=2, hidden=16, n_blocks=1, epochs=6, batch_size=128, lr=3e-3, x_noise=0.05)
    emu, _ = train_emulator(xt, yt, xv, yv, ["a", "b"], cfg, log_labels=[False, True], progress=False)
    c0 = emu.sample(yv[:4], n_draws=3, seed=1, temperature=0.0)
    np.testing.assert_array_equal(c0, emu.sample(yv[:4], n_draws=3, seed=2, temperature=0.0))
    np.testing.assert_array_equal(c0[:, 0], c0[:, 2])
    cover = [band_coverage(emu.sample(yv, 50, seed=0, temperature=t), xv) for t in (0.1, 1.0, 3.0)]
    assert cover[0] < cover[1] < cover[2]
    temp, got = calibrate_temperature(emu, xv, yv, target=0.9, n_draws=50, seed=0)
    assert emu.temperature == temp and abs(got - 0.9) < 0.03
    with pytest.raises(ValueError):
        emu.sample(yv[:2], temperature=-1.0)


def test_binned_and_grouped_errors():
    from popstore.estimators.emulator_metrics import binned_abs_error, grouped_abs_error

    true = np.zeros((4, 1, 4))
    pred = np.arange(16, dtype=float).reshape(4, 1, 4)  # sample k, time j: error 4k + j
    t = np.array([0.5, 1.5, 2.5, 3.5])
    table = binned_abs_error(pred, true, ["r"], t, [0, 2, 4])
    assert table.loc["r", "[0, 2)"] == np.median([0, 1, 4, 5, 8, 9, 12, 13])
    assert table.loc["r", "[2, 4)"] == np.median([2, 3, 6, 7, 10, 11, 14, 15])
    g = grouped_abs_error(pred, true, np.array([0, 0, 1, 1]), threshold=5.0)
    assert g.loc[0, "q50"] == 3.5 and g.loc[1, "q50"] == 11.5
    assert g.loc[0, "frac>5"] == pytest.approx(2 / 8) and g.loc[1, "frac>5"] == 1.0


def test_spread_calibration_evens_out_the_channels(tmp_path):
    from popstore.estimators.emulator import band_coverage, calibrate_spread

    xt, yt = toy(600, 5)
    xv, yv = toy(150, 6)
    cfg = EmulatorConfig(n_layers=2, hidden=16, n_blocks=1, epochs=4, batch_size=128, lr=3e-3, x_noise=0.05)
    emu, _ = train_emulator(xt, yt, xv, yv, ["a", "b"], cfg, log_labels=[False, True], progress=False)
    spread, got = calibrate_spread(emu, xv, yv, target=0.9, n_draws=50, seed=0)
    assert len(spread) == 2 and emu.spread == spread
    np.testing.assert_allclose(got, 0.9, atol=0.01)
    d = emu.sample(yv, 50, seed=0)  # the same draws as the calibration: coverage as found
    for c in range(2):
        assert band_coverage(d[:, :, c], xv[:, c]) == pytest.approx(got[c], abs=1e-12)
    # central curve unchanged by the spread; deviations scaled per channel
    np.testing.assert_array_equal(emu.sample(yv[:3], 2, temperature=0.0), emu.sample(yv[:3], 2, temperature=0.0))
    emu.save(tmp_path / "e.pt")
    assert CurveEmulator.load(tmp_path / "e.pt").spread == spread
