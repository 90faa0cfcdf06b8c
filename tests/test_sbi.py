"""Neural posterior estimation on stores (sbi): the prior from a store, streamed training, and calibration
on a linear-Gaussian simulator whose exact posterior is known."""

import numpy as np
import pytest
import torch

import popstore
from popstore.errors import UserError
from popstore.estimators.calibration import LEVELS, calibration_report, expected_coverage, save_report
from popstore.estimators.sbi import NPEConfig, ParameterSpace, load_posterior, posterior_draws, train_npe
from popstore.pipeline import Pipeline
from popstore.torchdata import MapDataset, make_loader
from toy_simulators import LinearGaussian, Ramp


@pytest.fixture(scope="module")
def gaussian_store(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("sbi") / "lg.zarr"
    sim = LinearGaussian()
    popstore.generate(sim, sim.parameter_table(4000, seed=1, design="latin_hypercube"), path, client,
                      samples_per_chunk=250, progress=False)
    popstore.split(path, test=0.1, valid=0.1, seed=2)
    return path


@pytest.fixture(scope="module")
def trained(gaussian_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("npe") / "npe.pt"
    cfg = NPEConfig(model="maf", embedding="cnn", max_epochs=60, patience=8, batch_size=128, lr=1e-3, seed=0)
    return train_npe(gaussian_store, out, cfg, progress=False)


def test_prior_from_a_store_leaves_fixed_labels_out(tmp_path, client):
    p = tmp_path / "p.toml"
    p.write_text("""
[simulator]
name = "gaussian_fields"
[simulator.config]
npix = 8
[priors]
n_samples = 8
[priors.ranges]
slope = [1.5, 2.5]
[priors.fixed]
smoothing = 1.0
[store]
path = "s.zarr"
""")
    pipe = Pipeline.load(p)
    pipe.generate(client=client, progress=False)
    space = ParameterSpace.from_store(tmp_path / "s.zarr")
    assert space.names == ("amplitude", "slope")  # smoothing was fixed: nothing to infer
    assert space.low == (0.1, 1.5) and space.high == (1.0, 2.5)  # the narrowed range, not the declared one
    prior = space.prior()
    draws = prior.sample((20_000,))
    np.testing.assert_allclose(draws.min(0).values.numpy(), [0.1, 1.5], atol=1e-3)
    np.testing.assert_allclose(draws.max(0).values.numpy(), [1.0, 2.5], atol=1e-3)
    with pytest.raises(UserError, match="held fixed"):
        ParameterSpace.from_store(tmp_path / "s.zarr", ["smoothing"])


def test_log_uniform_labels_are_inferred_in_log10(tmp_path, client):
    path = tmp_path / "r.zarr"
    popstore.generate(Ramp(n=4), Ramp().parameter_table(8, seed=0), path, client, progress=False)
    space = ParameterSpace.from_store(path)
    assert space.log == (False, True)  # Ramp's b is log-uniform on [0.1, 10]
    draws = space.prior().sample((20_000,)).numpy()
    np.testing.assert_allclose(draws.min(0), [0.0, -1.0], atol=1e-3)  # b in [0.1, 10] -> log10 b in [-1, 1]
    np.testing.assert_allclose(draws.max(0), [1.0, 1.0], atol=1e-3)
    theta = torch.tensor([[0.5, 3.0]])
    torch.testing.assert_close(space.to_physical(space.to_inference(theta)), theta)


def test_training_streams_from_the_store(trained, gaussian_store):
    assert trained.checkpoint.exists() and trained.best_epoch > 0
    assert trained.valid_loss[trained.best_epoch] == min(trained.valid_loss)
    assert trained.valid_loss[trained.best_epoch] < trained.valid_loss[0] - 1.0  # it learnt (nats)
    blob = torch.load(trained.checkpoint, weights_only=True)  # plain tensors and dicts only
    assert blob["inputs"] == ["field"] and list(blob["space"]["names"]) == ["offset", "gradient"]


def test_posterior_matches_the_exact_linear_gaussian_posterior(trained, gaussian_store):
    posterior, space, inputs = load_posterior(trained.checkpoint)
    test = MapDataset(gaussian_store, "test", inputs, list(space.names), normalize="none")
    x, theta = next(iter(make_loader(test, 40, shuffle=False)))
    draws = posterior_draws(posterior, x, 2000, seed=3)
    mean, cov = LinearGaussian().exact_posterior(x[:, 0].numpy())
    inside = np.all(np.abs(mean) < 2.0 - 4 * np.sqrt(np.diag(cov)), axis=1)  # truncation by the prior negligible
    sd = np.sqrt(np.diag(cov))
    z = (draws.mean(0)[inside] - mean[inside]) / sd
    assert np.median(np.abs(z)) < 0.35, z
    ratio = draws.std(0)[inside] / sd
    assert 0.75 < np.median(ratio[:, 0]) < 1.3 and 0.75 < np.median(ratio[:, 1]) < 1.3, ratio


def test_a_label_left_out_is_marginalised(gaussian_store, tmp_path):
    """``labels=("offset",)``: the gradient varies in the store but is not inferred, so the estimator learns the
    offset's marginal posterior. The design's two columns are orthogonal, so that marginal is the exact posterior's
    offset mean and standard deviation, whatever the gradient."""
    cfg = NPEConfig(labels=("offset",), model="maf", embedding="cnn", summary=8, max_epochs=80, patience=10,
                    batch_size=128, lr=1e-3, seed=0)
    posterior, space, inputs = load_posterior(train_npe(gaussian_store, tmp_path / "m.pt", cfg, progress=False).checkpoint)
    assert space.names == ("offset",)
    test = MapDataset(gaussian_store, "test", inputs, ["offset", "gradient"], normalize="none")
    x, theta = next(iter(make_loader(test, 200, shuffle=False)))
    draws = posterior_draws(posterior, x, 2000, seed=3)[..., 0]  # (draws, maps)
    mean, cov = LinearGaussian().exact_posterior(x[:, 0].numpy())
    sd = np.sqrt(cov[0, 0])
    assert abs(cov[0, 1]) < 1e-12  # orthogonal columns: the offset's posterior does not depend on the gradient
    z = (draws.mean(0) - mean[:, 0]) / sd
    assert np.median(np.abs(z)) < 0.5 and abs(z.mean()) < 0.25, z
    assert 0.75 < np.median(draws.std(0)) / sd < 1.3  # the prior alone would give 1.15 / 0.125 = 9.2


@pytest.mark.slow
def test_calibration_is_nominal_on_the_linear_gaussian(trained, gaussian_store, tmp_path):
    posterior, space, inputs = load_posterior(trained.checkpoint)
    test = MapDataset(gaussian_store, "test", inputs, list(space.names), normalize="none")
    x, theta = next(iter(make_loader(test, len(test), shuffle=False)))
    report = calibration_report(posterior, space.to_inference(theta.float()), x, space.names, n_draws=300, seed=0)
    assert report.attrs["n_test"] == 400
    assert report.attrs["max_coverage_error"] < 0.1, report.coverage.values
    assert (report.sbc_ks_pvalue.values > 0.01).all(), report.sbc_ks_pvalue.values
    assert abs(report.attrs["tarp_atc"]) < 5.0
    print(report.coverage.to_series().round(3).to_dict(), report.sbc_ks_pvalue.values, report.attrs)
    nc, png = save_report(report, tmp_path / "calibration")
    assert nc.exists() and png.stat().st_size > 10_000


def test_expected_coverage_from_ranks():
    """HPD ranks uniform on [0, n) give nominal coverage; ranks all 0 (truth always most probable) give 1."""
    n = 1000
    ranks = np.random.default_rng(0).integers(0, n, 100_000)
    np.testing.assert_allclose(expected_coverage(ranks, n), LEVELS, atol=0.01)
    assert (expected_coverage(np.zeros(10), n) == 1).all()


def test_ensemble_resumes_only_missing_members(gaussian_store, tmp_path):
    from popstore.estimators.sbi import load_ensemble, member_path, train_ensemble

    cfg = NPEConfig(max_epochs=1, summary=8, hidden_features=16, num_transforms=2)
    paths = train_ensemble(gaussian_store, tmp_path, cfg, [0, 1], progress=False)
    stamp = paths[0].stat().st_mtime_ns
    paths[1].unlink()  # member 1 was killed before it finished
    train_ensemble(gaussian_store, tmp_path, cfg, [0, 1], progress=False)
    assert paths[0].stat().st_mtime_ns == stamp and paths[1].exists()
    assert member_path(tmp_path, 1) == paths[1]
    posterior, space, inputs = load_ensemble(paths)
    assert type(posterior).__name__ == "EnsemblePosterior" and space.names == ("offset", "gradient")
    assert posterior.sample((5,), x=torch.zeros(1, 1, 8, 8), show_progress_bars=False).shape == (5, 2)


def test_learning_rate_halves_on_a_validation_plateau(gaussian_store, tmp_path):
    """lr_patience = 1: the rate halves after every 2 epochs in a row without a validation loss 1e-4 (relative)
    below the best (torch's ReduceLROnPlateau rule, replayed here on the recorded losses); a rate of 1e-7 makes
    every epoch after the first such an epoch. lr_patience = 0 keeps the rate fixed, as sbi does."""
    small = dict(summary=8, hidden_features=16, num_transforms=2, max_epochs=6, patience=10, seed=0)
    res = train_npe(gaussian_store, tmp_path / "a.pt", NPEConfig(lr=1e-7, lr_patience=1, lr_factor=0.5, **small),
                    progress=False)
    lr, best, bad, expected = 1e-7, np.inf, 0, []
    for v in res.valid_loss:
        expected.append(lr)
        best, bad = (v, 0) if v < best * (1 - 1e-4) else (best, bad + 1)
        if bad > 1:
            lr, bad = lr * 0.5, 0
    np.testing.assert_allclose(res.learning_rate, expected, rtol=1e-6)
    assert res.learning_rate[-1] == pytest.approx(1e-7 / 4)  # epochs 1-2 and 3-4 stale: two cuts
    fixed = train_npe(gaussian_store, tmp_path / "b.pt", NPEConfig(lr=1e-3, lr_patience=0, **small), progress=False)
    assert fixed.learning_rate == [1e-3] * 6


def test_members_far_worse_than_the_best_are_dropped(trained, tmp_path):
    """A member whose best validation loss is 1 nat above the best one's is dropped at a 0.5-nat rule and
    kept at 1.5 nats; the kept members load as one ensemble; a negative rule is a user error."""
    from popstore.checkpoints import load_checkpoint
    from popstore.estimators.sbi import load_ensemble, select_members

    good, poor = tmp_path / "npe_seed0.pt", tmp_path / "npe_seed1.pt"
    blob = load_checkpoint(trained.checkpoint)
    torch.save(blob, good)
    torch.save({**blob, "valid_loss": [v + 1.0 for v in blob["valid_loss"]]}, poor)
    assert select_members([good, poor], 0.5) == ([good], [poor])
    assert select_members([poor, good], 1.5) == ([poor, good], [])
    assert select_members([good, poor], None) == ([good, poor], [])
    kept, _ = select_members([good, poor], 0.5)
    assert type(load_ensemble(kept)[0]).__name__ == "DirectPosterior"
    with pytest.raises(UserError, match=">= 0 nats"):
        select_members([good, poor], -1.0)


@pytest.mark.slow
def test_sbi_commands_end_to_end(tmp_path, capsys):
    """popstore sbi train -> calibrate -> posterior -> predictive -> rounds on the shipped gaussian_fields
    pipelines, made small (two members on Dask, one TSNPE round)."""
    from pathlib import Path

    import xarray as xr

    from popstore.cli import main

    shipped = Path(__file__).parents[1] / "pipelines"
    text = (shipped / "gaussian_fields_sbi.toml").read_text().replace("../out/", "")
    for old, new in (("n_samples = 1500", "n_samples = 800"), ("max_epochs = 25", "max_epochs = 4"),
                     ("n_rounds = 2", "n_rounds = 1"), ("simulations_per_round = 500", "simulations_per_round = 200"),
                     ("support_samples = 100000", "support_samples = 20000")):
        text = text.replace(old, new)
    (tmp_path / "p.toml").write_text(text)
    (tmp_path / "obs.toml").write_text((shipped / "gaussian_fields_observed.toml").read_text().replace("../out/", ""))
    assert main(["sbi", "train", str(tmp_path / "p.toml"), "-q"]) == 0
    out = tmp_path / "gf_sbi"
    assert (out / "npe_seed0.pt").exists() and (out / "npe_seed1.pt").exists()
    assert main(["sbi", "calibrate", str(tmp_path / "p.toml"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "ensemble" in printed and "SBC KS p amplitude" in printed
    report = xr.load_dataset(out / "calibration_ensemble.nc")  # drop_members_worse_than = 0.5 in the pipeline
    kept, dropped = report.attrs["members"].split(), report.attrs["dropped_members"].split()
    assert sorted(kept + dropped) == ["npe_seed0.pt", "npe_seed1.pt"] and kept
    assert main(["generate", str(tmp_path / "obs.toml"), "-q", "--no-split"]) == 0
    observed = str(tmp_path / "gaussian_fields_observed.zarr")
    assert main(["sbi", "posterior", str(tmp_path / "p.toml"), observed, "--n-draws", "500"]) == 0
    draws = xr.load_dataset(out / "posterior_gaussian_fields_observed.nc")  # read and closed: rounds rewrites it
    assert draws.sizes["draw"] == 500 and set(draws.data_vars) == {"amplitude", "slope"}
    assert (out / "posterior_gaussian_fields_observed.png").stat().st_size > 10_000

    assert main(["sbi", "predictive", str(tmp_path / "p.toml"), observed, "--n-sims", "30", "-q"]) == 0
    predicted = popstore.open_store(out / "predictive_gaussian_fields_observed.zarr")
    assert predicted.sizes["sample"] == 30 and predicted["done"].values.all()
    assert (predicted["smoothing"].values == 1.0).all()  # the fixed label kept its value
    table = __import__("pandas").read_csv(out / "predictive_gaussian_fields_observed.csv", index_col=0)
    assert 0.0 <= table["p-value"].iloc[0] <= 1.0
    assert (out / "predictive_gaussian_fields_observed.png").stat().st_size > 20_000

    assert main(["sbi", "rounds", str(tmp_path / "p.toml"), "-q"]) == 0
    assert "prior_fraction" in capsys.readouterr().out
    assert popstore.open_store(out / "round1" / "store.zarr").sizes["sample"] == 200
    assert (out / "posterior_gaussian_fields_observed_round1.nc").exists() and (out / "rounds.csv").exists()


def test_calibration_needs_ten_test_samples(trained, gaussian_store):
    posterior, space, inputs = load_posterior(trained.checkpoint)
    with pytest.raises(UserError, match="at least 10 test samples"):
        calibration_report(posterior, torch.zeros(9, 2), torch.zeros(9, 1, 8, 8), space.names)


def test_an_unconstrained_zuko_flow_keeps_its_mass_inside_the_prior_box(gaussian_store, tmp_path):
    """z_score_theta = transform_to_unconstrained: sbi maps the prior box onto the real line, so the flow's own
    draws (without sbi's rejection of draws outside the prior) all lie inside it; nflows models refuse it."""
    cfg = NPEConfig(model="zuko_maf", z_score_theta="transform_to_unconstrained", max_epochs=2, summary=8,
                    hidden_features=16, num_transforms=2)
    out = train_npe(gaussian_store, tmp_path / "z.pt", cfg, progress=False)
    posterior, space, inputs = load_posterior(out.checkpoint)
    x = MapDataset(gaussian_store, "test", inputs, list(space.names), normalize="none")[0][0][None]
    draws = posterior.posterior_estimator.sample((4000,), condition=x).reshape(-1, 2)
    low, high = (torch.as_tensor(v) for v in (space.low, space.high))
    assert bool(((draws > low) & (draws < high)).all())
    with pytest.raises(UserError, match="needs a zuko model"):
        NPEConfig(model="maf", z_score_theta="transform_to_unconstrained")


@pytest.mark.parametrize("embedding", ["cnn", "o3_err", "power_spectrum"])
def test_a_posterior_of_multi_channel_maps_loads(tmp_path, client, embedding):
    """Ramp's image is (band, y, x): one input variable, two channels (16^2, the o3_err trunk's smallest maps).
    The power spectrum's standardisation comes back from the checkpoint (the training maps' statistics, not those
    of the blank maps it is built on)."""
    from popstore.checkpoints import load_checkpoint
    from popstore.estimators.spectrum import SpectrumEmbedding

    path = tmp_path / "r.zarr"
    popstore.generate(Ramp(n=16), Ramp().parameter_table(64, seed=0), path, client, samples_per_chunk=16, progress=False)
    popstore.split(path, test=0.25, valid=0.25, seed=0)
    cfg = NPEConfig(embedding=embedding, max_epochs=1, summary=4, hidden_features=8, num_transforms=1)
    out = train_npe(path, tmp_path / "npe.pt", cfg, progress=False)
    posterior, space, inputs = load_posterior(out.checkpoint)
    assert inputs == ["image"] and posterior_draws(posterior, torch.zeros(1, 2, 16, 16), 5).shape == (5, 1, 2)
    spectra = [m for m in posterior.posterior_estimator.modules() if isinstance(m, SpectrumEmbedding)]
    if embedding == "power_spectrum":
        saved = load_checkpoint(out.checkpoint)["state_dict"]
        (std,) = [v for k, v in saved.items() if k.endswith(".std") and v.numel() == 2 * spectra[0].spectrum.n_bins]
        torch.testing.assert_close(spectra[0].std, std)
        assert float(spectra[0].std.min()) > 1e-3
