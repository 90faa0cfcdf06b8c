"""The CBE least-squares acceleration method (popstore.galaxy.dynamics.acceleration)."""

import numpy as np
import pytest
import torch

from popstore.galaxy.dynamics.acceleration import (
    PAPER_VELOCITIES,
    cbe_acceleration,
    cbe_terms,
    evaluation_velocities,
    graph_bytes_per_point,
    mixture_terms,
    solve_cbe,
)
from popstore.galaxy.dynamics.metrics import vector_error
from popstore.galaxy.dynamics.hernquist import Hernquist

H = Hernquist(1e10, 5.0)


def _positions():
    pos = np.zeros((50, 3))
    pos[:, 0] = np.geomspace(0.4, 20, 50) * H.scale_radius  # the papers' 0.4 a - 20 a
    return pos


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_exact_hernquist_df_recovers_acceleration(kind):
    """With the exact DF the method returns a(r) = -G M / (r + a)^2 to far better than 1%."""
    pos = _positions()
    vel = evaluation_velocities(pos, H.escape_speed(pos[:, 0]), 1000, np.random.default_rng(0))
    acc = cbe_acceleration(lambda x, v: H.log_df(x, v, kind), torch.tensor(pos), torch.tensor(vel)).numpy()
    truth = H.acceleration(pos)
    err = np.linalg.norm(acc - truth, axis=1) / np.linalg.norm(truth, axis=1)
    assert err.max() < 1e-8


def test_isothermal_harmonic_oscillator():
    """f ∝ exp(-(v^2/2 + Phi)/s^2) with anisotropic harmonic Phi gives a = -(w_i^2 x_i); random positions."""
    w2 = torch.tensor([1.0, 2.5, 0.3], dtype=torch.float64)
    log_f = lambda x, v: -(0.5 * (v**2).sum(-1) + 0.5 * (w2 * x**2).sum(-1)) / 4.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    v = torch.randn(20, 30, 3, generator=g, dtype=torch.float64)
    acc = cbe_acceleration(log_f, x, v, memory_budget=5e3)  # a few points per chunk
    torch.testing.assert_close(acc, -w2 * x, rtol=1e-10, atol=1e-12)


def test_evaluation_velocities_respect_cuts():
    pos = _positions()
    vesc = H.escape_speed(pos[:, 0])
    vel = evaluation_velocities(pos, vesc, 500, np.random.default_rng(1))
    speed = np.linalg.norm(vel, axis=2) / vesc[:, None]
    vt = np.linalg.norm(vel[..., 1:], axis=2) / vesc[:, None]  # positions lie on the x axis
    assert speed.min() >= 0.2 and speed.max() <= 0.9 and vt.min() > 0.1


def test_bad_shapes_and_support():
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        cbe_acceleration(lambda a, b: a.sum(-1), x, torch.zeros(3, 5, 3, dtype=torch.float64))
    far = torch.tensor([[5.0, 0, 0]], dtype=torch.float64)
    unbound = torch.full((1, 4, 3), 1e4, dtype=torch.float64)
    with pytest.raises(ValueError, match="support"):
        cbe_acceleration(lambda a, b: H.log_df(a, b), far, unbound)


def test_mixture_terms_equal_the_gradients_of_the_mixture_density():
    """Mixing per-member terms (softmax weights) is exact: same as autograd through logsumexp of two Gaussians."""
    mus = [torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64), torch.tensor([-0.4, 0.5, 0.2], dtype=torch.float64)]
    members = [lambda x, v, m=m: -0.5 * ((x - m) ** 2).sum(-1) - 0.5 * (v**2).sum(-1) * (1 + m[0]) for m in mus]
    mixture = lambda x, v: torch.logsumexp(torch.stack([f(x, v) for f in members]), 0) - np.log(2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    v = torch.randn(6, 20, 3, generator=g, dtype=torch.float64)
    mixed = mixture_terms([cbe_terms(f, x, v) for f in members])
    direct = cbe_terms(mixture, x, v)
    for name in ("log_f", "grad_x", "grad_v"):
        torch.testing.assert_close(getattr(mixed, name), getattr(direct, name), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(solve_cbe(mixed), cbe_acceleration(mixture, x, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_f_weighted_rows_and_symmetric_velocities_keep_the_exact_answer(kind):
    """With the exact DF every row is consistent, so the papers' f-weighting and +-v pairs still give the truth."""
    pos = _positions()[::5]
    vel = evaluation_velocities(pos, H.escape_speed(pos[:, 0]), 200, np.random.default_rng(2), symmetric=True)
    np.testing.assert_array_equal(vel[:, 100:], -vel[:, :100])
    acc = cbe_acceleration(lambda x, v: H.log_df(x, v, kind), torch.tensor(pos), torch.tensor(vel), weighting="f").numpy()
    assert vector_error(acc, H.acceleration(pos)).max() < 1e-8


def test_graph_size_per_point_grows_with_members_and_sets_the_chunks():
    """Saved-tensor bytes per point are linear in the number of identical members (constants cancel in the slope)."""
    w = torch.linspace(0.5, 2.0, 64, dtype=torch.float64)
    one = lambda x, v: torch.tanh(x.sum(-1, keepdim=True) * w).sum(-1) - (v**2).sum(-1)
    three = lambda x, v: torch.logsumexp(torch.stack([one(x, v), one(x, v) + 1, one(x, v) + 2]), 0)
    x, v = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    b1, b3 = graph_bytes_per_point(one, x, v), graph_bytes_per_point(three, x, v)
    assert b1 >= 2 * 64 * 8  # at least the (n, 64) tanh output, times the headroom
    assert 2.5 < b3 / b1 < 3.6


def test_paper_velocity_design_cuts_every_component():
    """HernquistFlows' design: |v| < 0.9 v_esc, v_t > 0.1 v_esc and every |v_i| > 0.2 v_esc."""
    pos = _positions()[::10]
    vesc = H.escape_speed(pos[:, 0])
    vel = evaluation_velocities(pos, vesc, 400, np.random.default_rng(4), **PAPER_VELOCITIES) / vesc[:, None, None]
    assert np.abs(vel).min() > 0.2 and np.linalg.norm(vel, axis=2).max() < 0.9
    assert np.linalg.norm(vel[..., 1:], axis=2).min() > 0.1
