"""The o3_err moment network, its loss, preprocessing and training loop on in-memory tensors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from popstore.estimators.cnn import O3Err, O3ErrConfig
from popstore.estimators.loss import moment_loss
from popstore.estimators.model import MomentModel, load_model
from popstore.errors import UserError
from popstore.estimators.preprocess import (
    Preprocessor,
    Transform,
    fit_preprocessor,
    orient,
    random_orientations,
)
from popstore.estimators.train import TrainConfig, fit, validation_loss


@pytest.mark.parametrize("npix, h, width", [(16, 2, 8), (32, 2, 16), (64, 1, 32), (256, 1, 128)])
def test_o3err_shapes_and_cmd_widths(npix: int, h: int, width: int) -> None:
    torch.manual_seed(0)
    net = O3Err(O3ErrConfig(n_channels=3, n_labels=4, npix=npix, hidden=h, dropout=0.3, positive="square")).eval()
    mean, sigma = net(torch.randn(2, 3, npix, npix))
    assert mean.shape == sigma.shape == (2, 4)
    assert torch.all(sigma >= 0)
    # CMD o3_err on 256^2: the 1x1 feature vector has 128h channels, then 64h hidden units
    assert net.head[2].in_features == width * h and net.head[2].out_features == width * h // 2
    assert net.config.n_blocks == int(math.log2(npix)) - 2


def test_o3err_rectangular_sky_maps() -> None:
    """Dec x RA sky maps (16 x 32): blocks stop when the short side is 4, the last conv spans 4 x 8."""
    cfg = O3ErrConfig(n_channels=3, n_labels=2, npix=16, npix_x=32, hidden=2)
    assert cfg.shape == (16, 32) and cfg.n_blocks == 2 and cfg.final_kernel == (4, 8)
    mean, sigma = O3Err(cfg).eval()(torch.randn(2, 3, 16, 32))
    assert mean.shape == sigma.shape == (2, 2) and torch.all(sigma > 0)


@pytest.mark.parametrize("kw", [{"npix": 48}, {"npix": 8}, {"npix": 512}, {"npix_x": 24}, {"hidden": 0},
                                {"dropout": 1.0}, {"positive": "exp"}])
def test_o3err_rejects_bad_config(kw: dict) -> None:
    args = {"n_channels": 1, "n_labels": 2, "npix": 32} | kw
    with pytest.raises(ValueError):
        O3ErrConfig(**args)


def test_o3err_rejects_wrong_input() -> None:
    net = O3Err(O3ErrConfig(n_channels=2, n_labels=1, npix=16, hidden=1))
    with pytest.raises(ValueError, match=r"\[B, 2, 16, 16\]"):
        net(torch.randn(1, 1, 16, 16))


def test_circular_padding_gives_periodic_equivariance() -> None:
    """Up to the last 4x4 convolution the features commute with circular shifts by the total stride."""
    torch.manual_seed(1)
    net = O3Err(O3ErrConfig(n_channels=1, n_labels=1, npix=32, hidden=1)).eval()
    trunk = net.features[:-3]  # drop the final 4x4 conv + BN + LeakyReLU
    x = torch.randn(1, 1, 32, 32)
    stride = 2**net.config.n_blocks
    shifted = trunk(torch.roll(x, shifts=(stride, -2 * stride), dims=(2, 3)))
    torch.testing.assert_close(shifted, torch.roll(trunk(x), shifts=(1, -2), dims=(2, 3)), rtol=1e-5, atol=1e-5)


def test_moment_loss_analytic_value() -> None:
    truth = torch.zeros(5, 2)
    mean = torch.full((5, 2), 0.5)
    sigma = torch.tensor([[0.1, 0.3]]).expand(5, 2)
    expected = np.mean([math.log(0.25) + math.log((0.25 - s**2) ** 2) for s in (0.1, 0.3)])
    assert moment_loss(mean, sigma, truth).item() == pytest.approx(expected, rel=1e-6)


def test_moment_loss_is_minimised_by_the_rms_error() -> None:
    """For fixed errors the loss is minimal where sigma^2 = <(mu - y)^2> (the posterior variance)."""
    g = torch.Generator().manual_seed(0)
    err = torch.randn(4000, 1, generator=g) * 0.2
    truth = torch.zeros_like(err)
    grid = torch.linspace(0.05, 0.5, 451)
    losses = torch.stack([moment_loss(err, torch.full_like(err, s), truth) for s in grid])
    best = grid[torch.argmin(losses)].item()
    assert best == pytest.approx(err.square().mean().sqrt().item(), abs=2e-3)


def test_moment_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        moment_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 1))


def test_fit_preprocessor_matches_numpy_over_batches() -> None:
    rng = np.random.default_rng(3)
    lognormal = rng.lognormal(1.0, 0.7, size=(10, 1, 8, 8))
    signed = rng.normal(2.0, 3.0, size=(10, 1, 8, 8))
    x = torch.as_tensor(np.concatenate([lognormal, signed], axis=1), dtype=torch.float32)
    pre = fit_preprocessor([x[:4], x[4:7], x[7:]], "auto")
    assert pre.log10.tolist() == [True, False]
    logged = np.log10(x[:, 0].double().numpy())
    np.testing.assert_allclose(pre.mean.numpy(), [logged.mean(), x[:, 1].double().mean()], rtol=1e-5)
    np.testing.assert_allclose(pre.std.numpy(), [logged.std(), x[:, 1].double().std(correction=0)], rtol=1e-5)
    z = pre(x)
    np.testing.assert_allclose(z.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(dim=(0, 2, 3), correction=0).numpy(), 1.0, atol=1e-5)
    with pytest.raises(UserError, match=r"log10\(x\) requested"):
        fit_preprocessor([x], ["log10", "log10"])
    pre1 = fit_preprocessor([x], ["standardise", "auto(x + 20)"])  # the offset makes channel 1 positive
    assert pre1.log10.tolist() == [False, True] and pre1.offset.tolist() == [0.0, 20.0]
    x[3, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_preprocessor([x])


def test_transforms_parse_and_apply_per_channel() -> None:
    """log10(x + 1) (CMD's Mstar), standardise and none on one batch, against numpy."""
    assert Transform.parse("log10(x + 1)") == Transform("log10", 1.0)
    assert Transform.parse("LOG10( x+2.5e-3 )") == Transform("log10", 2.5e-3)
    assert Transform.parse("log10") == Transform.parse("log10(x)") == Transform("log10", 0.0)
    assert Transform.parse("standardize") == Transform("standardise")
    assert str(Transform("log10", 1.0)) == "log10(x + 1)" and Transform.parse(str(Transform("auto", 3.0))).offset == 3
    for bad in ("log(x)", "log10(x + a)", "log10(y + 1)", "sqrt"):
        with pytest.raises(UserError, match="unknown input transform"):
            Transform.parse(bad)
    rng = np.random.default_rng(4)
    stars = rng.lognormal(2.0, 1.0, size=(6, 1, 8, 8)) * (rng.random((6, 1, 8, 8)) < 0.5)  # half the pixels empty
    signed = rng.normal(2.0, 3.0, size=(6, 1, 8, 8))
    x = torch.as_tensor(np.concatenate([stars, signed, signed], axis=1), dtype=torch.float32)
    pre = fit_preprocessor([x[:2], x[2:]], ["log10(x + 1)", "standardise", "none"])
    assert pre.log10.tolist() == [True, False, False]
    z = pre(x).double().numpy()
    logged = np.log10(x[:, 0].double().numpy() + 1)
    np.testing.assert_allclose(z[:, 0], (logged - logged.mean()) / logged.std(), rtol=1e-4, atol=1e-5)
    lin = x[:, 1].double().numpy()
    np.testing.assert_allclose(z[:, 1], (lin - lin.mean()) / lin.std(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(z[:, 2], x[:, 2].numpy())  # none: the raw values
    assert fit_preprocessor([x], "auto").log10.tolist() == [False, False, False]  # zeros: auto cannot log x


def test_validation_loss_over_orientations_counts_each_as_a_sample() -> None:
    """8 orientations = the loss of a split holding every map in all 8 symmetries (CMD's validation set)."""
    torch.manual_seed(0)
    net = O3Err(O3ErrConfig(n_channels=1, n_labels=2, npix=16, hidden=1))
    model = MomentModel(net, Preprocessor([False], [0.0], [0.0], [1.0]), ["f"], ["a", "b"], [0, 0], [1, 1], True)
    x, y = torch.randn(10, 1, 16, 16), torch.rand(10, 2)
    cpu = torch.device("cpu")
    eight = validation_loss(model, DataLoader(TensorDataset(x, y), batch_size=4), cpu, False, 8)
    spelled_out = TensorDataset(torch.cat([orient(x, k) for k in range(8)]), y.repeat(8, 1))
    assert eight == pytest.approx(validation_loss(model, DataLoader(spelled_out, batch_size=7), cpu, False), rel=1e-5)
    assert eight != pytest.approx(validation_loss(model, DataLoader(TensorDataset(x, y), batch_size=4), cpu, False))
    with pytest.raises(ValueError, match="valid_orientations"):
        TrainConfig(valid_orientations=4)


def test_orientations_are_the_eight_symmetries_of_the_square() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    variants = [orient(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in variants}) == 8
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(64, 2, 8, 8)
    out = random_orientations(batch, g)
    for i in range(64):
        assert any(torch.equal(out[i], orient(batch[i], k)) for k in range(8))
    assert not torch.equal(out, batch)
    with pytest.raises(ValueError, match="square"):
        random_orientations(torch.zeros(2, 1, 8, 4), g)


def _toy_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of white noise with mean a and standard deviation b; labels (a, b) uniform in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, 2, generator=g)
    x = 1.0 + y[:, 0, None, None, None] + (0.2 + y[:, 1, None, None, None]) * torch.randn(n, 1, 16, 16, generator=g)
    return x, y


def test_fit_learns_toy_problem_and_checkpoints(tmp_path) -> None:
    torch.manual_seed(0)
    xt, yt = _toy_problem(512, 0)
    xv, yv = _toy_problem(128, 1)
    train = DataLoader(TensorDataset(xt, yt), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    valid = DataLoader(TensorDataset(xv, yv), batch_size=128)
    pre = fit_preprocessor(x for x, _ in train)
    net = O3Err(O3ErrConfig(n_channels=1, n_labels=2, npix=16, hidden=2, dropout=0.0))
    model = MomentModel(net, pre, ["field"], ["a", "b"], [0.0, 0.0], [1.0, 1.0], augment=True)
    res = fit(model, train, valid, TrainConfig(lr=5e-3, epochs=15, cycle=30, progress=False, threads=1), tmp_path)
    with open(res.losses) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(15))
    valid_losses = [float(r["valid_loss"]) for r in rows]
    assert res.best_valid_loss == pytest.approx(min(valid_losses))
    assert res.best_epoch == int(np.argmin(valid_losses))
    loaded = load_model(res.checkpoint)
    mean, _ = loaded(xv)
    rmse = (mean - yv).square().mean(0).sqrt()
    # predicting the mean gives rmse = 1/sqrt(12) = 0.289 per label; noise statistics pin both labels well
    assert torch.all(rmse < 0.12), rmse
    assert res.samples_per_s > 0
    # round trip: the reloaded model gives the same outputs as the checkpointed state
    model.load_state_dict(torch.load(res.checkpoint, weights_only=True)["state_dict"])
    model.eval()
    torch.testing.assert_close(model(xv)[0], mean)


def test_preprocessor_validates_shapes() -> None:
    with pytest.raises(ValueError):
        Preprocessor([True], [0.0, 1.0], [0.0], [1.0])
    with pytest.raises(ValueError):
        Preprocessor([True], [0.0], [0.0], [0.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_with_mixed_precision_reloads_on_cpu(tmp_path) -> None:
    torch.manual_seed(0)
    xt, yt = _toy_problem(256, 0)
    xv, yv = _toy_problem(64, 1)
    train = DataLoader(TensorDataset(xt, yt), batch_size=64, shuffle=True)
    valid = DataLoader(TensorDataset(xv, yv), batch_size=64)
    net = O3Err(O3ErrConfig(n_channels=1, n_labels=2, npix=16, hidden=2, dropout=0.0))
    model = MomentModel(net, fit_preprocessor(x for x, _ in train), ["field"], ["a", "b"], [0.0, 0.0], [1.0, 1.0], True)
    res = fit(model, train, valid, TrainConfig(lr=5e-3, epochs=3, cycle=10, device="cuda", amp=True, progress=False), tmp_path)
    assert math.isfinite(res.best_valid_loss)
    loaded = load_model(res.checkpoint)
    mean, sigma = loaded(xv)
    assert torch.isfinite(mean).all() and torch.all(sigma > 0)
