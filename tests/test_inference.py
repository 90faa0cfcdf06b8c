"""Moment-network inference on stores: data preparation, training, search, test reports, cross-suite, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import xarray as xr

import popstore
from popstore.errors import UserError
from popstore.estimators.data import DataConfig, prepare, rotatable, train_on_store
from popstore.estimators.evaluate import coverage_by_truth, cross_suite, make_test_report, metrics, predict
from popstore.estimators.model import load_model
from popstore.estimators.pipeline import _space
from popstore.estimators.search import DEFAULT_STUDY, SearchSpace, best_trial, load_best, search, summary
from popstore.estimators.train import TrainConfig
from popstore.priors import sample_table
from popstore.simulators import get_simulator

NPIX = 16
FAST = TrainConfig(lr=2e-3, epochs=2, cycle=10, progress=False, threads=1)
DATA = DataConfig(inputs=["density"], labels=["amplitude", "slope"], batch_size=32)


def make_store(path: Path, n: int, seed: int, **config) -> Path:
    from distributed import Client

    sim = get_simulator("gaussian_fields", npix=NPIX, **config)
    params = sample_table(sim.parameters, n, seed=seed, design="latin_hypercube")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        popstore.generate(sim, params, path, client=client, seed=seed, samples_per_chunk=32, progress=False)
    popstore.split(path, test=0.2, valid=0.2, seed=0)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    return make_store(root / "a.zarr", 160, 1), make_store(root / "b.zarr", 96, 2, gamma=1.3)


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    return train_on_store(stores[0], out, hidden=2, dropout=0.1, data=DATA, train=FAST)


def test_prepare_fits_log_statistics_on_training_split(stores) -> None:
    data = prepare(stores[0], DataConfig(inputs=["temperature", "density"], labels=["slope"], batch_size=32))
    assert data.train.channels == ["temperature", "density"]
    assert data.preprocessor.log10.tolist() == [True, True]  # log-normal fields are positive
    ds = popstore.open_store(stores[0])
    train = ds.sel(sample=ds["split"] == "train")
    logt = np.log10(train["temperature"].values.astype(np.float64))
    np.testing.assert_allclose(data.preprocessor.mean[0].item(), logt.mean(), rtol=1e-5)
    np.testing.assert_allclose(data.preprocessor.std[0].item(), logt.std(), rtol=1e-5)
    lo, hi = ds["label_stats"].sel(subset="train", label="slope", statistic=["min", "max"]).values
    assert data.label_shift[0] == pytest.approx(lo) and data.label_scale[0] == pytest.approx(hi - lo)
    assert data.augment  # y and x are the same Mpc/h grid


def test_rotatable_refuses_axes_of_different_quantities() -> None:
    square = xr.Dataset(
        {"m": (("sample", "log10_pdot", "log10_p"), np.zeros((1, 4, 4)))},
        coords={"log10_p": ("log10_p", np.arange(4.0), {"units": "s"}),
                "log10_pdot": ("log10_pdot", np.arange(4.0) - 20, {"units": "s/s"})},
    )
    assert not rotatable(square, ["m"])
    same = square.assign_coords(log10_pdot=("log10_pdot", np.arange(4.0), {"units": "s"}))
    assert rotatable(same, ["m"])


def test_metrics_of_calibrated_gaussian_errors() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    truth = rng.uniform(1.0, 3.0, (n, 1))
    sigma = rng.uniform(0.05, 0.2, (n, 1, 1))
    mean = truth[:, None, :] + sigma * rng.standard_normal((n, 1, 1))
    pred = xr.Dataset({"truth": (("sample", "label"), truth), "mean": (("sample", "orientation", "label"), mean),
                       "sigma": (("sample", "orientation", "label"), sigma)}, coords={"label": ["p"]})
    m = metrics(pred, np.array([2.0])).loc["p"]
    assert m["coverage_1sigma"] == pytest.approx(0.6827, abs=0.003)
    assert m["chi2"] == pytest.approx(1.0, abs=0.01)
    rmse = np.sqrt(np.mean(sigma**2))
    assert m["rmse"] == pytest.approx(rmse, rel=0.01) and m["rmse_norm"] == pytest.approx(rmse / 2, rel=0.01)
    assert m["r2"] == pytest.approx(1 - rmse**2 / (4 / 12), rel=1e-3)  # var of U(1, 3) = 4/12
    useless = pred.assign(mean=pred["mean"] * 0 + truth.mean())
    assert metrics(useless).loc["p", "r2"] == pytest.approx(0.0, abs=1e-12)


def test_coverage_by_truth_bins() -> None:
    """Calibrated Gaussian errors cover 68.3/95.4/99.7% in every truth bin; a mean shifted by 1.5 sigma in the top
    bin only covers 0% at 1 sigma and 100% at 2 sigma there, and 100% elsewhere."""
    rng = np.random.default_rng(1)
    n = 100_000
    truth = rng.uniform(0.0, 1.0, (n, 1))
    sigma = np.full((n, 2, 1), 0.1)
    noisy = truth[:, None, :] + sigma * rng.standard_normal((n, 2, 1))
    top = truth[:, 0] >= truth.min() + 4 * (truth.max() - truth.min()) / 5  # the last of 5 equal bins
    shifted = truth[:, None, :] + np.where(top[:, None, None], 0.15, 0.0) + 0 * sigma
    pred = xr.Dataset({"truth": (("sample", "label"), truth), "mean": (("sample", "orientation", "label"), noisy),
                       "sigma": (("sample", "orientation", "label"), sigma)}, coords={"label": ["p"]})
    table = coverage_by_truth(pred, n_bins=5).loc["p"]
    assert table["n"].sum() == 2 * n and (table["n"] == 2 * table["n_maps"]).all()
    np.testing.assert_allclose(table["truth_lo"], [truth.min() + i * (truth.max() - truth.min()) / 5 for i in range(5)])
    for k, expected in [(1, 0.6827), (2, 0.9545), (3, 0.9973)]:
        np.testing.assert_allclose(table[f"coverage_{k}sigma"], expected, atol=0.01)
    np.testing.assert_allclose(table["rmse"], 0.1, rtol=0.02)
    glob = metrics(pred).loc["p"]
    assert glob["coverage_2sigma"] == pytest.approx(0.9545, abs=0.003) and glob["coverage_3sigma"] > glob["coverage_2sigma"]
    table = coverage_by_truth(pred.assign(mean=(("sample", "orientation", "label"), shifted)), n_bins=5).loc["p"]
    assert table["coverage_1sigma"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert table["coverage_2sigma"].tolist() == [1.0] * 5
    assert table["n_maps"].iloc[-1] == top.sum()


def test_train_on_store_checkpoint_and_losses(trained) -> None:
    losses = pd.read_csv(trained.losses)
    assert list(losses["epoch"]) == [0, 1]
    assert trained.best_valid_loss == pytest.approx(losses["valid_loss"].min())
    model = load_model(trained.checkpoint)
    assert model.inputs == ["density"] and model.labels == ["amplitude", "slope"] and model.augment


def test_test_report_files_agree_with_metrics(trained, stores) -> None:
    table = make_test_report(trained.checkpoint, stores[0]).metrics
    out = trained.checkpoint.parent
    n_test = int((popstore.open_store(stores[0])["split"] == "test").sum())
    rows = pd.read_csv(out / "test_a.csv")
    assert len(rows) == n_test * 8  # augmented model: tested in all 8 orientations
    rmse = np.sqrt(np.mean((rows["mean_slope"] - rows["truth_slope"]) ** 2))
    assert table.loc["slope", "rmse"] == pytest.approx(rmse, rel=1e-9)
    cover = np.mean(np.abs(rows["mean_amplitude"] - rows["truth_amplitude"]) < rows["sigma_amplitude"])
    assert table.loc["amplitude", "coverage_1sigma"] == pytest.approx(cover)
    saved = xr.open_zarr(out / "test_a.zarr", consolidated=False)
    np.testing.assert_allclose(saved["sigma"].sel(label="slope").values.ravel(), rows["sigma_slope"])
    assert (out / "test_a.png").stat().st_size > 10_000
    pd.testing.assert_frame_equal(pd.read_csv(out / "test_a_metrics.csv", index_col="label"), table)


def test_predictions_are_invariant_in_orientation_count_for_first(trained, stores) -> None:
    model = load_model(trained.checkpoint)
    one = predict(model, stores[0], "test", orientations=1)
    eight = predict(model, stores[0], "test", orientations=8)
    np.testing.assert_allclose(one["mean"].values[:, 0], eight["mean"].values[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(one["truth"].values, eight["truth"].values)
    with pytest.raises(ValueError, match="orientations"):
        predict(model, stores[0], "test", orientations=4)


def test_cross_suite_reports_both_stores(trained, stores, tmp_path) -> None:
    table = cross_suite(trained.checkpoint, {"same": stores[0], "gamma1.3": stores[1]}, out_dir=tmp_path)
    assert table.index.names == ["store", "label"]
    assert set(table.index.get_level_values("store")) == {"same", "gamma1.3"}
    n_test_b = int((popstore.open_store(stores[1])["split"] == "test").sum())
    assert table.loc[("gamma1.3", "slope"), "n"] == 8 * n_test_b
    assert (tmp_path / "cross_gamma1.3_metrics.csv").exists()


def test_model_refuses_store_of_other_resolution(trained, tmp_path) -> None:
    from distributed import Client

    sim = get_simulator("gaussian_fields", npix=32)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        popstore.generate(sim, sample_table(sim.parameters, 10, 0), tmp_path / "big.zarr", client=c, progress=False)
    with pytest.raises(ValueError, match=r"the model was trained on 16x16"):
        predict(load_model(trained.checkpoint), tmp_path / "big.zarr", split=None)


def _search_in_a_process(store: Path, out: Path, db: Path, seed: int) -> list[int]:
    study = search(store, out, 2, DATA, FAST, SearchSpace(hidden=(1, 2)), study_name="p", storage=db,
                   n_startup_trials=1, prune=True, seed=seed)
    return [t.number for t in study.trials]


def test_processes_share_one_search(stores, tmp_path) -> None:
    """Two processes search into one sqlite study at the same time: every trial is kept once, with its
    own number, directory and per-epoch validation losses (for pruning)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    db = tmp_path / "study.db"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_search_in_a_process, [stores[0]] * 2, [tmp_path] * 2, [db] * 2, [0, 1]))
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{db}")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3] and all(t.state in done for t in study.trials)
    assert all(set(r) <= {0, 1, 2, 3} for r in runs)
    for t in study.trials:
        assert Path(t.user_attrs["checkpoint"]).parent == tmp_path / f"trial_{t.number}"
        epochs = sorted(t.intermediate_values)  # reported every epoch, so the median rule can prune
        assert epochs == [0, 1] if t.state == optuna.trial.TrialState.COMPLETE else epochs[:1] == [0]


def test_search_saves_trials_and_reloads_best(stores, tmp_path) -> None:
    db = tmp_path / "study.db"
    space = SearchSpace(hidden=(1, 2), dropout=(0.0, 0.2))
    study = search(stores[0], tmp_path, 2, DATA, FAST, space, study_name="s", storage=db, n_startup_trials=2, seed=0)
    assert len(study.trials) == 2
    for t in study.trials:
        assert Path(t.user_attrs["checkpoint"]).parent == tmp_path / f"trial_{t.number}"
        assert len(pd.read_csv(t.user_attrs["losses"])) == 2
        assert space.hidden[0] <= t.params["hidden"] <= space.hidden[1]
    # a second process (here: call) on the same storage adds to the same study
    search(stores[0], tmp_path, 1, DATA, FAST, space, study_name="s", storage=db, n_startup_trials=2, seed=1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert len(study.trials) == 3
    # a rerun that asks for 3 trials in total finds them all done and trains nothing
    study = search(stores[0], tmp_path, 5, DATA, FAST, space, study_name="s", storage=db, seed=2, max_trials=3)
    assert len(study.trials) == 3
    best = load_best(db, "s")
    expected = torch.load(study.best_trial.user_attrs["checkpoint"], weights_only=True)["state_dict"]
    for k, v in best.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    assert best.network.config.hidden == study.best_trial.params["hidden"]


def test_per_variable_transforms_and_network_settings(stores, tmp_path) -> None:
    """A transform per input variable and O3Err settings (positive) reach the saved model."""
    cfg = DataConfig(inputs=["density", "temperature"], labels=["slope"], batch_size=32,
                     transforms={"temperature": "standardise"}, transform="log10(x + 1)")
    data = prepare(stores[0], cfg)
    assert data.preprocessor.log10.tolist() == [True, False]
    assert data.preprocessor.offset.tolist() == [1.0, 0.0]
    train = popstore.open_store(stores[0]).pipe(lambda ds: ds.sel(sample=ds["split"] == "train"))
    t = train["temperature"].values.astype(np.float64)
    assert data.preprocessor.mean[1].item() == pytest.approx(t.mean(), rel=1e-5)  # linear, not log
    res = train_on_store(stores[0], tmp_path, 1, 0.0, cfg, FAST, network={"positive": "square"})
    model = load_model(res.checkpoint)
    assert model.network.config.positive == "square" and model.preprocessor.offset.tolist() == [1.0, 0.0]
    with pytest.raises(UserError, match="not among the inputs"):
        prepare(stores[0], DataConfig(inputs=["density"], transforms={"Mstar": "log10(x + 1)"}))
    with pytest.raises(UserError, match="unknown network settings"):
        train_on_store(stores[0], tmp_path, 1, 0.0, cfg, FAST, network={"positiv": "square"})
    with pytest.raises(UserError, match="disagree with the data"):
        train_on_store(stores[0], tmp_path, 1, 0.0, cfg, FAST, network={"npix": 32})
    with pytest.raises(UserError, match="positive"):
        train_on_store(stores[0], tmp_path, 1, 0.0, cfg, FAST, network={"positive": "exp"})


def test_pipeline_network_table_fixes_searched_settings() -> None:
    space = _space({"lr": [1e-4, 1e-3], "hidden": [2, 4]}, {"dropout": 0.1, "positive": "square"}, "cmd")
    assert space.dropout == (0.1, 0.1) and space.hidden == (2, 4) and space.lr == (1e-4, 1e-3) and space.names == "cmd"
    with pytest.raises(UserError, match="both fixed"):
        _space({"hidden": [2, 4]}, {"hidden": 3}, "popstore")
    with pytest.raises(UserError, match="parameter names"):
        _space({}, {}, "cmd2")


_KILLED_SEARCH = """
import sys
from pathlib import Path
from popstore.estimators.data import DataConfig
from popstore.estimators.search import SearchSpace, search
from popstore.estimators.train import TrainConfig
store, out, db = map(Path, sys.argv[1:])
search(store, out, 5, DataConfig(inputs=["density"], labels=["amplitude", "slope"], batch_size=32),
       TrainConfig(lr=2e-3, epochs=100_000, cycle=10, progress=False, threads=1), SearchSpace(hidden=(1, 2)),
       study_name="r", storage=db, n_startup_trials=10, seed=0)
"""


def test_killed_search_resumes_without_repeats(stores, tmp_path) -> None:
    """Two trials, then a second process killed (SIGKILL) in the middle of its first trial, then a resume:
    the killed trial is FAIL and not counted, and no parameter set is drawn twice (the bug: a resumed
    seed-0 sampler redrew trial 0's parameters)."""
    db = tmp_path / "study.db"
    args = dict(study_name="r", storage=db, n_startup_trials=10, seed=0)
    search(stores[0], tmp_path, 2, DATA, FAST, SearchSpace(hidden=(1, 2)), **args)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SEARCH, str(stores[0]), str(tmp_path), str(db)], env=env)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            study = optuna.load_study(study_name="r", storage=f"sqlite:///{db}")
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if running and running[0].intermediate_values:  # mid-training: an epoch reported
                break
            time.sleep(0.5)
        else:
            pytest.fail("the search process never got into its trial")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [t.state.name for t in optuna.load_study(study_name="r", storage=f"sqlite:///{db}").trials] == \
        ["COMPLETE", "COMPLETE", "RUNNING"]
    study = search(stores[0], tmp_path, 5, DATA, FAST, SearchSpace(hidden=(1, 2)), max_trials=4, **args)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # 4 finished: the dead one not counted
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params)
    assert summary(study).startswith(f"best trial {best_trial(study).number} of 4 finished (1 failed, 0 running)")
    # a rerun asking for 4 finished trials finds them and trains nothing
    assert len(search(stores[0], tmp_path, 5, DATA, FAST, SearchSpace(hidden=(1, 2)), max_trials=4, **args).trials) == 5


CMD_STORAGE_STUDY = DEFAULT_STUDY  # CMD's study name, 'wd_dr_hidden_lr_o3'


def cmd_objective(trial: optuna.Trial) -> float:
    """CMD's search space as its script declares it (names lr, wd, dr, hidden; cmd_benchmark.md); the value
    stands in for CMD's training."""
    lr = trial.suggest_float("lr", 1e-5, 5e-3, log=True)
    wd = trial.suggest_float("wd", 1e-8, 1e-1, log=True)
    dr = trial.suggest_float("dr", 0.0, 0.9)
    hidden = trial.suggest_int("hidden", 6, 12)
    return float(np.log10(lr) ** 2 + np.log10(wd) ** 2 / 10 + dr + hidden)


def cmd_study(db: Path) -> optuna.Study:
    """The study as CMD's script opens it."""
    return optuna.create_study(study_name=CMD_STORAGE_STUDY, sampler=optuna.samplers.TPESampler(n_startup_trials=20),
                               storage=f"sqlite:///{db}", load_if_exists=True)


def test_cmd_study_is_continued_by_popstore(stores, tmp_path) -> None:
    db = tmp_path / "IllustrisTNG_o3_Mgas_all_steps_500_500_o3.db"
    cmd_study(db).optimize(cmd_objective, n_trials=3)
    with pytest.raises(UserError, match="names='cmd'"):
        search(stores[0], tmp_path, 1, DATA, FAST, SearchSpace(), storage=db, seed=0)
    study = search(stores[0], tmp_path, 2, DATA, FAST, SearchSpace(names="cmd"), storage=db, seed=0)
    assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)
    cmd_dists = study.trials[0].distributions
    assert set(cmd_dists) == {"lr", "wd", "dr", "hidden"}
    for t in study.trials[3:]:
        assert t.distributions == cmd_dists  # same names, kinds and ranges: TPE uses CMD's trials as history
    best = best_trial(study)  # CMD's trials have no popstore checkpoint: the best of ours
    assert best.number in (3, 4)
    assert load_best(db).network.config.hidden == best.params["hidden"]


def test_popstore_study_is_continued_by_cmd(stores, tmp_path) -> None:
    db = tmp_path / "study.db"
    search(stores[0], tmp_path, 2, DATA, FAST, SearchSpace(names="cmd"), storage=db, seed=0)
    study = cmd_study(db)
    study.optimize(cmd_objective, n_trials=2)  # CMD's code: raises on a parameter of another name or kind
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for t in study.trials:  # what CMD's test script reads
        assert 6 <= t.params["hidden"] <= 12 and 0.0 <= t.params["dr"] <= 0.9 and 1e-8 <= t.params["wd"] <= 1e-1
    assert study.trials[0].distributions == study.trials[3].distributions


def test_cli_train_and_test(stores, tmp_path, capsys) -> None:
    from popstore.cli import main

    assert main(["inference", "train", str(stores[0]), "-o", str(tmp_path), "--inputs", "density", "--labels", "slope",
                 "--epochs", "1", "--hidden", "1", "--batch-size", "32", "--threads", "1", "-q"]) == 0
    assert "best epoch 0" in capsys.readouterr().out
    assert main(["inference", "test", str(tmp_path / "model.pt"), str(stores[0]), "--orientations", "1"]) == 0
    out = capsys.readouterr().out
    assert "coverage_1sigma" in out and "coverage_3sigma" in out and "coverage by bin of the true value" in out
    assert (tmp_path / "test_a_coverage.csv").exists() and (tmp_path / "test_a_coverage.png").stat().st_size > 10_000


@pytest.mark.slow
def test_ci_pipeline_runs_end_to_end(tmp_path) -> None:
    """The CI pipeline with CMD's sigma (positive = "square") and CMD's parameter names set in the file;
    validation runs over the test's 8 orientations; a rerun resumes without training."""
    import optuna

    from popstore.estimators.pipeline import run
    from popstore.estimators.train import validation_loss

    src = Path(__file__).parents[1] / "pipelines" / "gaussian_fields_inference_ci.toml"
    (tmp_path / "pipelines").mkdir()
    text = src.read_text().replace('positive = "softplus"', 'positive = "square"')
    text = text.replace('param_names = "popstore"', 'param_names = "cmd"')
    (tmp_path / "pipelines" / src.name).write_text(text)
    report = run(tmp_path / "pipelines" / src.name, progress=False)
    table = report.metrics
    assert list(table.index) == ["amplitude", "slope"]
    db = tmp_path / "out" / "gf_inference_ci" / "optuna.db"
    store = tmp_path / "out" / "gaussian_fields_ci.zarr"
    assert table["n"].iloc[0] == 8 * int((popstore.open_store(store)["split"] == "test").sum())
    assert report.coverage.index.get_level_values("bin").max() == 4 and report.files["coverage_figure"].exists()
    study = optuna.load_study(study_name=DEFAULT_STUDY, storage=f"sqlite:///{db}")
    assert all(set(t.params) == {"lr", "wd", "dr", "hidden"} for t in study.trials)
    best = best_trial(study)
    model = load_model(best.user_attrs["checkpoint"])
    assert model.network.config.positive == "square"
    valid = prepare(store, DataConfig(inputs=["density"], labels=["amplitude", "slope"], batch_size=64)).valid_loader
    assert best.value == pytest.approx(validation_loss(model, valid, torch.device("cpu"), False, 8), rel=1e-4)
    run(tmp_path / "pipelines" / src.name, progress=False)  # resumes: finds its trials done
    assert len(optuna.load_study(study_name=DEFAULT_STUDY, storage=f"sqlite:///{db}").trials) == len(study.trials)


@pytest.mark.slow
def test_trains_on_pulsar_ppdot_and_sky_maps(tmp_path) -> None:
    """The same code on the pulsar simulator: P-Pdot maps (no rotations) and rectangular Dec x RA sky maps."""
    from distributed import Client

    sim = get_simulator("pulsar_full", n_stars=20000, resolution_dyn=32, resolution_ppdot=16)
    store = tmp_path / "psr.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        popstore.generate(sim, sample_table(sim.parameters, 48, 0), store, client=c, samples_per_chunk=16, progress=False)
    popstore.split(store, test=0.25, valid=0.25, seed=0)
    for inputs, shape in [(["ppdot_map", "ppdot_map_fluxes"], (16, 16)), (["position_map_radec"], (16, 32))]:
        cfg = DataConfig(inputs=inputs, labels=["mu_logB", "mu_logP"], transform="auto(x + 1)", batch_size=16)
        res = train_on_store(store, tmp_path / inputs[0], hidden=1, dropout=0.0, data=cfg, train=FAST)
        model = load_model(res.checkpoint)
        assert model.network.config.shape == shape and not model.augment
        table = make_test_report(res.checkpoint, store).metrics
        assert table["n"].tolist() == [int((popstore.open_store(store)["split"] == "test").sum())] * 2
