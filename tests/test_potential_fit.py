"""The global potential fit of the CBE (popstore.galaxy.dynamics.potential_fit) on exact distribution functions."""

import numpy as np
import pytest
import torch

from popstore.galaxy.dynamics.acceleration import CBETerms, cbe_terms, evaluation_velocities
from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.galaxy.dynamics.metrics import geometric_radii, on_x_axis, vector_error
from popstore.galaxy.dynamics.potential_fit import PotentialBasis, cross_validated_l_max, fit_positions, fit_potential


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_exact_hernquist_df_gives_the_exact_acceleration_at_held_out_positions(kind):
    h = Hernquist(1e10, 5.0)
    rng = np.random.default_rng(0)
    x = fit_positions(600, 0.25 * h.scale_radius, 30 * h.scale_radius, rng)
    v = evaluation_velocities(x, h.escape_speed(np.linalg.norm(x, axis=1)), 32, rng)
    terms = cbe_terms(lambda xx, vv: h.log_df(xx, vv, kind), torch.tensor(x), torch.tensor(v))
    fit = fit_potential(x, terms, PotentialBasis(0.2 * h.scale_radius, 32 * h.scale_radius, 16, 4), smoothing=0.0)
    grid = on_x_axis(geometric_radii(h.scale_radius))  # not among the fitted positions
    err = vector_error(fit.acceleration(grid), h.acceleration(grid))
    assert np.median(err) < 3e-4 and err.max() < 1e-3


def test_flattened_potential_is_recovered_with_its_non_spherical_part():
    """f(E) = exp(-E / s^2) is a steady state of any static potential (Jeans theorem); in a flattened
    logarithmic potential (axis ratio q = 0.8) the fit must recover -grad Phi, off the symmetry axes too."""
    v0, rc, q, s = 200.0, 2.0, 0.8, 150.0

    def phi(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * v0**2 * torch.log(rc**2 + x[..., 0] ** 2 + x[..., 1] ** 2 + (x[..., 2] / q) ** 2)

    rng = np.random.default_rng(1)
    x = fit_positions(800, 1.0, 40.0, rng)
    v = rng.normal(0.0, s, (800, 16, 3))
    terms = cbe_terms(lambda xx, vv: -(0.5 * (vv * vv).sum(-1) + phi(xx)) / s**2, torch.tensor(x), torch.tensor(v))
    fit = fit_potential(x, terms, PotentialBasis(0.8, 50.0, 16, 4), smoothing=0.0)
    test = torch.tensor(fit_positions(200, 1.5, 30.0, np.random.default_rng(2)), requires_grad=True)
    truth = -torch.autograd.grad(phi(test).sum(), test)[0].numpy()
    acc = fit.acceleration(test.detach().numpy())
    assert np.median(vector_error(acc, truth)) < 3e-3
    # the spherical part alone (l_max = 0) cannot: the z pull is 1/q^2 = 1.56 times stronger than in the plane
    sph = fit_potential(x, terms, PotentialBasis(0.8, 50.0, 16, 0), smoothing=0.0).acceleration(test.detach().numpy())
    assert np.median(vector_error(sph, truth)) > 0.05


def test_cross_validation_finds_the_flattening_in_noisy_gradients():
    """With 5% noise on every gradient, the held-out CBE residual prefers a non-spherical potential (l >= 2) for the
    flattened logarithmic potential, and no angular freedom beyond l = 1 is chosen for the spherical Hernquist DF."""
    v0, rc, q, s = 200.0, 2.0, 0.8, 150.0
    rng = np.random.default_rng(1)
    x = fit_positions(800, 1.0, 40.0, rng)
    v = rng.normal(0.0, s, (800, 16, 3))
    phi = lambda xx: 0.5 * v0**2 * torch.log(rc**2 + xx[..., 0] ** 2 + xx[..., 1] ** 2 + (xx[..., 2] / q) ** 2)
    terms = cbe_terms(lambda xx, vv: -(0.5 * (vv * vv).sum(-1) + phi(xx)) / s**2, torch.tensor(x), torch.tensor(v))
    noisy = lambda t, r: CBETerms(t.log_f, t.grad_x * (1 + 0.05 * torch.tensor(r.standard_normal(t.grad_x.shape))),
                                  t.grad_v * (1 + 0.05 * torch.tensor(r.standard_normal(t.grad_v.shape))), t.v)
    best, scores = cross_validated_l_max(x, noisy(terms, np.random.default_rng(3)), PotentialBasis(0.8, 50.0, 12, 4))
    assert best >= 2 and scores[2] < 0.5 * scores[0]

    h = Hernquist(1e10, 5.0)
    xh = fit_positions(800, 0.25 * h.scale_radius, 30 * h.scale_radius, rng)
    vh = evaluation_velocities(xh, h.escape_speed(np.linalg.norm(xh, axis=1)), 16, rng)
    th = cbe_terms(lambda xx, vv: h.log_df(xx, vv), torch.tensor(xh), torch.tensor(vh))
    best, _ = cross_validated_l_max(xh, noisy(th, np.random.default_rng(4)), PotentialBasis(0.2 * h.scale_radius, 32 * h.scale_radius, 12, 4))
    assert best <= 1
