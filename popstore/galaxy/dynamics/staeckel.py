"""Staeckel-fudge actions (galpy) of the Milky Way potential, differentiable in torch.

Actions ``(J_R, J_z)`` from the Staeckel fudge (Binney 2012, MNRAS 426,
1324), as implemented by galpy's ``actionAngleStaeckel`` (Bovy 2015, ApJS
216, 29; C extension, vectorised over stars), with focal distance
``delta = 0.45 R0`` (galpy's 0.45 in natural units), the choice of Naik et
al. (2021, arXiv:2112.07657, Sect. 3.1) for MWPotential2014.

The galpy potential is built from the *same* :class:`MilkyWayPotential`
dataclass that the orbits and the true accelerations use
(:func:`galpy_potential`); its forces equal ours to round-off and its
potential differs by a constant (galpy's bulge is zero at r = 0, ours at
infinity), which actions do not see (tested).

:class:`StaeckelActions` makes the actions a torch function: the forward
pass calls galpy, the backward pass uses central finite differences in the
six Cartesian phase-space coordinates (steps ``1e-4`` kpc and ``1e-2`` km/s;
the quadrature of galpy is smooth in its inputs, so these derivatives agree
with steps ten times smaller to ~1e-9 relative).
"""

from __future__ import annotations

import numpy as np
import torch

from popstore.galaxy.dynamics.potentials import MilkyWayPotential

#: Central-difference steps of the backward pass: positions [kpc], velocities [km/s].
FD_STEPS = (1e-4, 1e-2)


def galpy_potential(pot: MilkyWayPotential):
    """galpy's version of ``pot`` (natural units: ``ro = pot.r0``, ``vo = pot.v0``), i.e. MWPotential2014 by default."""
    from galpy.potential import (
        MiyamotoNagaiPotential,
        NFWPotential,
        PowerSphericalPotentialwCutoff,
    )

    ro = pot.r0
    return (PowerSphericalPotentialwCutoff(normalize=pot.bulge_fraction, alpha=pot.bulge_alpha, rc=pot.bulge_rc / ro)
            + MiyamotoNagaiPotential(normalize=pot.disc_fraction, a=pot.disc_a / ro, b=pot.disc_b / ro)
            + NFWPotential(normalize=pot.halo_fraction, a=pot.halo_rs / ro))


class StaeckelActions:
    """``(J_R, J_z)`` [kpc km/s] of Cartesian phase-space points in ``potential`` (Staeckel fudge, focal distance ``delta`` [kpc])."""

    def __init__(self, potential: MilkyWayPotential, delta: float | None = None) -> None:
        from galpy.actionAngle import actionAngleStaeckel

        self.potential = potential
        self.delta = 0.45 * potential.r0 if delta is None else float(delta)
        if self.delta <= 0:
            raise ValueError(f"delta must be positive, got {self.delta}")
        self._aa = actionAngleStaeckel(pot=galpy_potential(potential), delta=self.delta / potential.r0, c=True)

    def numpy(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Actions (n, 2) of positions (n, 3) [kpc] and velocities (n, 3) [km/s]."""
        ro, vo = self.potential.r0, self.potential.v0
        big_r = np.hypot(x[:, 0], x[:, 1])
        v_r = (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / big_r
        v_t = (x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]) / big_r
        j_r, _, j_z = self._aa(big_r / ro, v_r / vo, v_t / vo, x[:, 2] / ro, v[:, 2] / vo)
        out = np.stack([j_r, j_z], axis=1) * (ro * vo)
        if not np.all(np.isfinite(out)):
            raise ValueError("galpy returned non-finite Staeckel actions (unbound orbit or R = 0?)")
        return out

    def __call__(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Differentiable actions (n, 2) of float64 tensors (see module docstring)."""
        return _ActionsFunction.apply(x, v, self)


class _ActionsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, v: torch.Tensor, actions: StaeckelActions) -> torch.Tensor:
        ctx.save_for_backward(x, v)
        ctx.actions = actions
        return torch.from_numpy(actions.numpy(x.detach().double().numpy(), v.detach().double().numpy())).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, v = (t.detach().double().numpy() for t in ctx.saved_tensors)
        xv = np.concatenate([x, v], axis=1)
        steps = np.repeat(FD_STEPS, 3)
        # all 12 shifted copies in one galpy call: (6 coords x {+h, -h} x n stars, 6)
        shifted = np.broadcast_to(xv, (6, 2) + xv.shape).copy()
        for j in range(6):
            shifted[j, 0, :, j] += steps[j]
            shifted[j, 1, :, j] -= steps[j]
        flat = shifted.reshape(-1, 6)
        j_all = ctx.actions.numpy(flat[:, :3], flat[:, 3:]).reshape(6, 2, len(xv), 2)
        jac = (j_all[:, 0] - j_all[:, 1]) / (2 * steps[:, None, None])  # (6, n, 2): dJ_k / d coord_j
        g = torch.from_numpy(np.einsum("jnk,nk->nj", jac, grad.double().numpy())).to(grad.dtype)
        return g[:, :3], g[:, 3:], None
