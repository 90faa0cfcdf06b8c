"""Component profiles: numpy and torch agree, and each force is the gradient of its potential."""

import numpy as np
import pytest
import torch

from popstore.physics.profiles import (
    hernquist_force,
    hernquist_potential,
    miyamoto_nagai_force,
    miyamoto_nagai_potential,
    nfw_force,
    nfw_potential,
)

RNG = np.random.default_rng(4)
R = RNG.uniform(0.1, 40.0, 50)  # kpc
Z = RNG.uniform(-5.0, 5.0, 50)


@pytest.mark.parametrize(("potential", "force", "scale"), [(hernquist_potential, hernquist_force, 0.7),
                                                          (nfw_potential, nfw_force, 16.0)])
def test_spherical_force_is_the_radial_gradient(potential, force, scale):
    r = torch.tensor(R, requires_grad=True)
    (grad,) = torch.autograd.grad(potential(r, scale).sum(), r)
    np.testing.assert_allclose(force(R, scale), grad.numpy() / R, rtol=1e-12)
    np.testing.assert_allclose(potential(R, scale), potential(torch.tensor(R), scale).numpy(), rtol=1e-15)


def test_miyamoto_nagai_force_is_the_gradient_and_limits_to_kepler():
    big_r, z = torch.tensor(R, requires_grad=True), torch.tensor(Z, requires_grad=True)
    d_r, d_z = torch.autograd.grad(miyamoto_nagai_potential(big_r**2, z, 3.0, 0.28).sum(), (big_r, z))
    f_r, f_z = miyamoto_nagai_force(R**2, Z, 3.0, 0.28)
    np.testing.assert_allclose(f_r, d_r.numpy() / R, rtol=1e-12)
    np.testing.assert_allclose(f_z, d_z.numpy() / Z, rtol=1e-12)
    # a = b = 0: a point mass, Phi = -1/r
    np.testing.assert_allclose(miyamoto_nagai_potential(R**2, Z, 0.0, 0.0), -1 / np.hypot(R, Z), rtol=1e-15)
