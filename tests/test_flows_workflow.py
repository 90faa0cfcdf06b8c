"""The `popstore flows` pipeline stages on a tiny Hernquist pipeline, and the figure-data cache."""

import numpy as np
import pytest
import torch
import xarray as xr

from popstore.estimators.flows_ensemble import phase_space_log_df
from popstore.galaxy.dynamics.acceleration import cbe_acceleration, cbe_terms, evaluation_velocities
from popstore.galaxy.dynamics.catalogue import catalogue_arrays
from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.galaxy.dynamics.potential_fit import PotentialBasis, fit_design, fit_potential

from popstore.galaxy.figures import (
    cached_figure,
    draw_accelerations,
    draw_losses,
    loss_data,
)
from popstore.galaxy.workflow import (
    acceleration_data,
    ensemble,
    relative_errors,
    train,
)
from popstore.pipeline import Pipeline
from popstore.store import open_store

TOML = """
[simulator]
name = "hernquist"
[simulator.config]
n_stars = 2000
df = "anisotropic"
[priors]
n_samples = 2
[priors.fixed]
mass = 2e10
scale_radius = 4.0
[store]
path = "h.zarr"
samples_per_chunk = 1
[flows]
output = "flows"
n_layers = 1
hidden_features = 8
batch_size = 1000
max_epochs = 2
seeds = [0, 1]
rescaling = "hernquist"
[accelerations]
figure = "acc.png"
n_positions = 8
n_velocities = 100
"""


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from distributed import Client

    d = tmp_path_factory.mktemp("flows")
    (d / "p.toml").write_text(TOML)
    p = Pipeline.load(d / "p.toml")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        assert p.generate(client=c, progress=False).complete
    train(p, progress=False)
    return p


def test_stages_and_exact_accelerations(pipe):
    ds = acceleration_data(pipe, progress=False)
    # the exact DF of the store's labels (M = 2e10, a = 4 kpc) recovers the truth; flows are tiny and untrained
    errs = relative_errors(ds)
    assert errs.loc["exact_df", "max_3d"] < 1e-8 and errs.loc["exact_df", "median_x"] < 1e-8
    assert {"seed_0", "seed_1", "ensemble", "ensemble_f_weighted"} <= set(errs.index)
    np.testing.assert_allclose(ds.r.values[[0, -1]], [0.4 * 4.0, 20 * 4.0])
    # the ensemble mixed from per-member gradients equals the CBE acceleration of the ensemble DF itself
    vel = evaluation_velocities(ds.position.values, Hernquist(2e10, 4.0).escape_speed(ds.r.values), 100, np.random.default_rng(42))
    direct = cbe_acceleration(phase_space_log_df(ensemble(pipe)), torch.tensor(ds.position.values), torch.tensor(vel))
    np.testing.assert_allclose(ds.acc_ensemble.values, direct.numpy(), rtol=1e-9, atol=1e-12)


def potential_fit_data(pipe, l_max):
    extra = {"potential_fit": True, "fit_positions": 300, "fit_velocities": 8, "n_radial": 8, "l_max": l_max}
    pipe.sections["accelerations"].update(extra)
    try:
        return acceleration_data(pipe, progress=False)
    finally:
        for k in extra:
            del pipe.sections["accelerations"][k]


def test_potential_fit_with_l_max_by_cross_validation_is_the_fit_of_the_chosen_degree(pipe):
    chosen = [potential_fit_data(pipe, l).acc_ensemble_potential_fit.values for l in range(5)]
    by_cv = potential_fit_data(pipe, "cv").acc_ensemble_potential_fit.values
    assert sum(np.allclose(by_cv, c, rtol=1e-12, atol=0) for c in chosen) >= 1


def test_potential_fit_of_the_ensemble_equals_the_fit_to_the_ensemble_df(pipe):
    ds = potential_fit_data(pipe, 2)
    # the same design drawn from the same generator after the reported grid's velocities
    h, rng = Hernquist(2e10, 4.0), np.random.default_rng(42)
    evaluation_velocities(ds.position.values, h.escape_speed(ds.r.values), 100, rng)
    fx, fv, (lo, hi) = fit_design((ds.r.values.min(), ds.r.values.max()), 300, 8, *catalogue_arrays(open_store(pipe.store_path)), rng)
    terms = cbe_terms(phase_space_log_df(ensemble(pipe)), torch.tensor(fx), torch.tensor(fv))
    direct = fit_potential(fx, terms, PotentialBasis(lo, hi, 8, 2)).acceleration(ds.position.values)
    np.testing.assert_allclose(ds.acc_ensemble_potential_fit.values, direct, rtol=1e-6, atol=1e-9 * np.abs(direct).max())


def test_linear_radii_are_the_papers(pipe):
    pipe.sections["accelerations"]["radii"] = "linear"
    try:
        ds = acceleration_data(pipe, progress=False)
    finally:
        del pipe.sections["accelerations"]["radii"]
    np.testing.assert_allclose(ds.r.values, np.linspace(0, 20, 9)[1:] * 4.0)


def test_figures_redraw_from_cache(pipe, tmp_path):
    png = tmp_path / "acc.png"
    cached_figure(png, lambda: acceleration_data(pipe, progress=False), draw_accelerations)
    assert png.exists() and png.with_suffix(".nc").exists()
    png.unlink()

    def fail():
        raise AssertionError("the cache must be used")

    cached_figure(png, fail, draw_accelerations)
    assert png.exists()
    losses = loss_data(pipe.path.parent / "flows", [0, 1])
    assert losses.train.shape == (2, 2) and np.isfinite(losses.train).all()
    cached_figure(tmp_path / "loss.png", lambda: losses, draw_losses)
    with xr.open_dataset(tmp_path / "loss.nc", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds.train.values, losses.train.values)


SN_TOML = """
[simulator]
name = "solar_neighbourhood"
[simulator.config]
n_stars = 3000
r_min = 6.5
r_max = 9.5
z_max = 1.5
phi_max = 0.15
actions = "epicyclic"
[priors]
n_samples = 2
[priors.fixed]
kick_vz = 0.0
time_myr = 0.0
[store]
path = "sn.zarr"
samples_per_chunk = 1
[missing_rv]
path = "sn_mrv.zarr"
output = "mrv_flows"
max_epochs = 1
[flows]
output = "flows"
sphere_radius = 1.0
n_layers = 1
hidden_features = 8
batch_size = 1000
max_epochs = 2
seeds = [0]
[accelerations]
figure = "acc.png"
n_positions = 3
n_velocities = 50
"""


def test_missing_rv_cli_stages(tmp_path):
    """missing-rv -> train -> train-missing-rv -> accelerations: the factorised DF joins the comparison."""
    from distributed import Client

    from popstore.cli import main
    from popstore.galaxy.missing_rv import load_missing_rv

    (tmp_path / "sn.toml").write_text(SN_TOML)
    p = Pipeline.load(tmp_path / "sn.toml")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        assert p.generate(client=c, progress=False).complete
    for step in ("missing-rv", "train", "train-missing-rv", "accelerations"):
        assert main(["flows", step, str(tmp_path / "sn.toml"), "-q"]) == 0
    df = load_missing_rv(tmp_path / "mrv_flows", [0])
    assert df.velocities.members[0].cfg.context_features == 3 and df.positions.members[0].cfg.max_epochs == 1
    with xr.open_dataset(tmp_path / "acc.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    assert {"exact_df", "ensemble", "missing_rv"} <= set(relative_errors(ds).index)
    # (untrained tiny flows: only check that the factorised DF was evaluated, as a model of its own)
    assert np.isfinite(ds.acc_missing_rv.values).all() and not np.allclose(ds.acc_missing_rv, ds.acc_ensemble)
