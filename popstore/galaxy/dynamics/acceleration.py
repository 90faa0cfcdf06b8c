"""Accelerations from the steady-state collisionless Boltzmann equation (CBE).

For a steady state, ``v . grad_x f + a . grad_v f = 0`` at every velocity,
with ``a = -grad Phi``. Dividing by ``f`` changes nothing, so with
``S_i = v_i . grad_x log f`` and ``g_i = grad_v log f`` at velocities ``v_i``
the least-squares acceleration is ``a = -(sum g_i g_i^T)^-1 sum S_i g_i``
(An et al. 2021, arXiv:2106.05981, Sect. 2; Naik et al. 2021,
arXiv:2112.07657, Sect. 2). Gradients come from autograd, so any
differentiable ``log f`` works: an exact DF, one flow, or an ensemble.

Everything is batched: ``P`` positions with ``K`` velocities each are one
autograd call per chunk of positions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

LogDF = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cbe_acceleration(log_f: LogDF, x: torch.Tensor, v: torch.Tensor, chunk: int = 64, progress: bool = False) -> torch.Tensor:
    """Least-squares CBE acceleration at positions ``x`` (P, 3) from velocities ``v`` (P, K, 3).

    ``log_f(x, v)`` maps (n, 3), (n, 3) tensors to (n,) log phase-space
    densities (any normalisation). Returns (P, 3) in the units of
    ``v^2 / x``. Use float64 tensors: the 3x3 normal equations are solved in
    the dtype of ``v``.
    """
    if x.ndim != 2 or x.shape[1] != 3 or v.ndim != 3 or v.shape[2] != 3 or v.shape[0] != x.shape[0]:
        raise ValueError(f"need x (P, 3) and v (P, K, 3); got {tuple(x.shape)} and {tuple(v.shape)}")
    if v.shape[1] < 3:
        raise ValueError("need at least 3 velocities per position for a 3D acceleration")
    out = []
    for s in tqdm(range(0, x.shape[0], chunk), disable=not progress, desc="CBE accelerations"):
        xs, vs = x[s : s + chunk], v[s : s + chunk]
        p, k = vs.shape[:2]
        xx = xs[:, None, :].expand(p, k, 3).reshape(-1, 3).detach().clone().requires_grad_(True)
        vv = vs.reshape(-1, 3).detach().clone().requires_grad_(True)
        lf = log_f(xx, vv)
        if not torch.all(torch.isfinite(lf)):
            raise ValueError("log f is not finite at some evaluation points (outside the DF's support?)")
        gx, gv = torch.autograd.grad(lf.sum(), (xx, vv))
        s_i = (vv.detach() * gx).sum(-1).reshape(p, k)
        g_i = gv.reshape(p, k, 3)
        normal = torch.einsum("pki,pkj->pij", g_i, g_i)
        rhs = torch.einsum("pk,pki->pi", s_i, g_i)
        out.append(-torch.linalg.solve(normal, rhs))
    return torch.cat(out)


def evaluation_velocities(
    x: np.ndarray,
    v_esc: np.ndarray,
    n: int,
    rng: np.random.Generator,
    v_range: tuple[float, float] = (0.2, 0.9),
    min_tangential: float = 0.1,
) -> np.ndarray:
    """The Hernquist paper's evaluation velocities: (P, n, 3).

    Isotropic directions, ``|v|`` uniform in ``v_range`` times ``v_esc`` and
    tangential speed (perpendicular to ``x``) above ``min_tangential v_esc``
    (An et al. 2021, Sect. 4: keeps away from the ``1/L`` pole of the
    anisotropic DF). ``x`` (P, 3), ``v_esc`` (P,).
    """
    p = x.shape[0]
    xhat = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = np.empty((p, n, 3))
    todo = np.ones((p, n), dtype=bool)
    while todo.any():
        m = int(todo.sum())
        rows = np.nonzero(todo)[0]
        d = rng.standard_normal((m, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        speed = rng.uniform(*v_range, size=m) * v_esc[rows]
        vt = speed * np.sqrt(np.clip(1 - (d * xhat[rows]).sum(1) ** 2, 0, None))
        ok = vt > min_tangential * v_esc[rows]
        idx = np.nonzero(todo)
        out[idx[0][ok], idx[1][ok]] = speed[ok, None] * d[ok]
        todo[idx[0][ok], idx[1][ok]] = False
    return out
