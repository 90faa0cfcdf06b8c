"""Flows (popstore.estimators.flows, flows_ensemble) on problems with known answers."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from popstore.estimators.flows import FlowConfig, ScaledFlow, load_flow, train_flow
from popstore.estimators.flows_ensemble import (
    FlowEnsemble,
    load_ensemble,
    phase_space_log_df,
    train_ensemble,
)

COV = np.array([[4.0, 1.2], [1.2, 1.0]])


def gaussian_data(n, seed=0):
    return np.random.default_rng(seed).multivariate_normal([10.0, -3.0], COV, size=n)


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_scaled_flow_is_a_normalised_density(transform):
    """Rescaling enters the Jacobian: an (untrained) flow's density of x integrates to 1 on a grid."""
    torch.manual_seed(0)
    m = ScaledFlow(FlowConfig(features=2, n_layers=2, hidden_features=8, transform=transform), [1.0, 2.0], [3.0, 0.5]).double()
    g1, g2 = np.meshgrid(np.linspace(-30, 32, 400), np.linspace(-4, 8, 400), indexing="ij")
    pts = torch.tensor(np.stack([g1.ravel(), g2.ravel()], 1))
    with torch.no_grad():
        dens = torch.exp(m.log_prob(pts)).numpy().reshape(g1.shape)
    total = np.trapezoid(np.trapezoid(dens, g2[0], axis=1), g1[:, 0])
    assert total == pytest.approx(1.0, abs=2e-3)


def test_training_learns_a_gaussian_and_saves_best(tmp_path):
    """Mean log-likelihood approaches the Gaussian's negative entropy; checkpoint and losses round-trip."""
    data = gaussian_data(4000)
    cfg = FlowConfig(features=2, n_layers=2, hidden_features=16, batch_size=256, max_epochs=25, valid_fraction=0.2, lr_patience=3)
    res = train_flow(data, cfg, seed=3, out_dir=tmp_path, progress=False)
    losses = pd.read_csv(tmp_path / "seed_3" / "losses.csv")
    assert list(losses.columns) == ["epoch", "train", "valid", "lr"] and len(losses) == len(res.losses) <= 25
    assert res.best_epoch == int(losses.valid.idxmin())
    assert json.loads((tmp_path / "seed_3" / "summary.json").read_text())["best_epoch"] == res.best_epoch
    model = load_flow(tmp_path / "seed_3")
    test = torch.tensor(gaussian_data(20_000, seed=1))
    with torch.no_grad():
        ll = float(model.log_prob(test).mean())
    entropy = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * COV))
    assert ll == pytest.approx(-entropy, abs=0.03)
    draws = model.sample(20_000, seed=4).numpy()
    np.testing.assert_allclose(draws.mean(0), [10.0, -3.0], atol=0.1)
    np.testing.assert_allclose(np.cov(draws.T), COV, rtol=0.1, atol=0.1)
    # the stored best valid loss is the NLL of the rescaled variables: undo the Jacobian
    valid_phys = losses.valid.min() + np.log(data.std(0)).sum()
    assert valid_phys == pytest.approx(-ll, abs=0.05)


def test_ensemble_density_is_the_mean_density(tmp_path):
    cfg = FlowConfig(features=2, n_layers=1, hidden_features=8, batch_size=500, max_epochs=2)
    train_ensemble(gaussian_data(1000), cfg, [0, 1], tmp_path, progress=False)
    ens = load_ensemble(tmp_path)
    x = torch.tensor(gaussian_data(50, seed=2))
    with torch.no_grad():
        members = torch.stack([torch.exp(m.log_prob(x)) for m in ens.members])
        torch.testing.assert_close(torch.exp(ens.log_prob(x)), members.mean(0))
    assert len(ens.sample(100, seed=1)) == 100


def test_phase_space_log_df_gradients():
    """A 6D flow over (x, v) gives finite gradients in float64 for the CBE method."""
    torch.manual_seed(0)
    m = ScaledFlow(FlowConfig(n_layers=2, hidden_features=8), np.zeros(6), np.ones(6)).double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    gx, gv = torch.autograd.grad(phase_space_log_df(FlowEnsemble([m]))(x, v).sum(), (x, v))
    assert torch.all(torch.isfinite(gx)) and torch.all(torch.isfinite(gv)) and gx.abs().sum() > 0


def test_bad_input(tmp_path):
    with pytest.raises(ValueError):
        FlowConfig(transform="glow")
    with pytest.raises(ValueError):
        train_flow(np.zeros((10, 3)), FlowConfig(features=2), 0, tmp_path)
    with pytest.raises(ValueError):
        train_flow(np.full((10, 2), np.nan), FlowConfig(features=2), 0, tmp_path)
    with pytest.raises(FileNotFoundError):
        load_flow(tmp_path / "nothing")
    with pytest.raises(ValueError):
        train_ensemble(np.zeros((10, 2)), FlowConfig(features=2), [1, 1], tmp_path)


def test_missing_rv_factorised_df(tmp_path):
    """log f = log n(x) + log p(v|x); x-gradients flow through the conditional flow's context."""
    from popstore.galaxy.dynamics.catalogue import missing_rv_subset
    from popstore.galaxy.missing_rv import load_missing_rv, train_missing_rv

    rng = np.random.default_rng(0)
    x = np.c_[rng.uniform(6.5, 9.5, 3000), rng.normal(0, 0.5, 3000), rng.normal(0, 0.3, 3000)]
    v = np.c_[rng.normal(0, 30, 3000), rng.normal(220, 20, 3000) - 5 * x[:, 0], rng.normal(0, 20, 3000)]
    sub = missing_rv_subset(x, v, rng)
    cfg = FlowConfig(n_layers=1, hidden_features=8, batch_size=500, max_epochs=2)
    train_missing_rv(sub, cfg, [0], tmp_path, progress=False)
    df = load_missing_rv(tmp_path)
    assert df.positions.members[0].cfg.features == 3 and df.velocities.members[0].cfg.context_features == 3
    pts = torch.tensor(np.c_[x[:4], v[:4]], requires_grad=True)
    lp = df.log_prob(pts)
    with torch.no_grad():
        expect = df.positions.log_prob(pts[:, :3]) + df.velocities.log_prob(pts[:, 3:], context=pts[:, :3])
    torch.testing.assert_close(lp.detach(), expect)
    gx_cond = torch.autograd.grad(df.velocities.log_prob(pts[:, 3:], context=pts[:, :3]).sum(), pts)[0][:, :3]
    assert gx_cond.abs().sum() > 0


class _HernquistDensity:
    """Exact n(x) = rho(r) / M of a Hernquist sphere (the position marginal of both its DFs)."""

    def __init__(self, h):
        self.a = h.scale_radius

    def log_prob(self, x):
        r = torch.linalg.norm(x, dim=-1)
        return np.log(self.a / (2 * np.pi)) - torch.log(r) - 3 * torch.log(r + self.a)


class _HernquistConditional:
    """Exact p(v | x) = f(x, v) / n(x)."""

    def __init__(self, h, kind):
        self.h, self.kind, self.n = h, kind, _HernquistDensity(h)

    def log_prob(self, v, context):
        return self.h.log_df(context, v, self.kind) - self.n.log_prob(context)


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_missing_rv_method_on_exact_df(kind):
    """FactorisedDF(n(x), p(v|x)) with the exact factors gives the 6D method's acceleration (and the truth);
    a wrong n(x) (scale radius 20% off) does not (errors 0.4-7% instead of < 1e-8): the positional gradient comes from n(x)."""
    from popstore.galaxy.dynamics.acceleration import cbe_acceleration, evaluation_velocities
    from popstore.galaxy.dynamics.hernquist import Hernquist
    from popstore.galaxy.missing_rv import FactorisedDF

    h = Hernquist(1e10, 5.0)
    pos = np.zeros((12, 3))
    pos[:, 0] = np.geomspace(0.4, 20, 12) * h.scale_radius
    vel = torch.tensor(evaluation_velocities(pos, h.escape_speed(pos[:, 0]), 300, np.random.default_rng(0)))
    xt, truth = torch.tensor(pos), h.acceleration(pos)
    full = cbe_acceleration(lambda x, v: h.log_df(x, v, kind), xt, vel).numpy()
    fact = cbe_acceleration(phase_space_log_df(FactorisedDF(_HernquistDensity(h), _HernquistConditional(h, kind))), xt, vel).numpy()
    err = lambda a: np.linalg.norm(a - truth, axis=1) / np.linalg.norm(truth, axis=1)
    assert err(full).max() < 1e-8 and err(fact).max() < 1e-8
    np.testing.assert_allclose(fact, full, rtol=1e-9, atol=1e-12 * np.abs(truth).max())
    wrong = FactorisedDF(_HernquistDensity(Hernquist(1e10, 6.0)), _HernquistConditional(h, kind))
    e_wrong = err(cbe_acceleration(phase_space_log_df(wrong), xt, vel).numpy())
    assert e_wrong.min() > 3e-3 and e_wrong.max() > 0.04


def test_ensemble_rerun_trains_only_unfinished_members(tmp_path, client):
    """A member killed part-way (checkpoint, no summary.json) or trained with another config is retrained on
    rerun, on Dask workers; finished members are loaded, their files untouched."""
    cfg = FlowConfig(features=2, n_layers=1, hidden_features=8, batch_size=500, max_epochs=2)
    data = gaussian_data(1000)
    first = train_ensemble(data, cfg, [0, 1, 2], tmp_path, client=client)
    (tmp_path / "seed_1" / "summary.json").unlink()  # as a job killed before the end leaves it
    stamps = {s: (tmp_path / f"seed_{s}" / "checkpoint.pt").stat().st_mtime_ns for s in (0, 2)}
    again = train_ensemble(data, cfg, [0, 1, 2], tmp_path, client=client)
    assert {s: (tmp_path / f"seed_{s}" / "checkpoint.pt").stat().st_mtime_ns for s in (0, 2)} == stamps
    assert (tmp_path / "seed_1" / "summary.json").exists()
    for a, b in zip(first, again):  # same seed, same data: the retrained member repeats its losses exactly
        assert a.seed == b.seed and a.best_epoch == b.best_epoch
        pd.testing.assert_frame_equal(a.losses, b.losses)
    wider = FlowConfig(features=2, n_layers=1, hidden_features=16, batch_size=500, max_epochs=2)
    train_ensemble(data, wider, [0], tmp_path)
    assert json.loads((tmp_path / "seed_0" / "summary.json").read_text())["config"]["hidden_features"] == 16
