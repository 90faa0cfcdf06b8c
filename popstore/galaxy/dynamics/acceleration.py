"""Accelerations from the steady-state collisionless Boltzmann equation (CBE).

For a steady state, ``v . grad_x f + a . grad_v f = 0`` at every velocity,
with ``a = -grad Phi``. Dividing by ``f`` changes nothing, so with
``S_i = v_i . grad_x log f`` and ``g_i = grad_v log f`` at velocities ``v_i``
the least-squares acceleration is ``a = -(sum g_i g_i^T)^-1 sum S_i g_i``
(An et al. 2021, arXiv:2106.05981, Sect. 2; Naik et al. 2021,
arXiv:2112.07657, Sect. 2). Gradients come from autograd, so any
differentiable ``log f`` works: an exact DF, one flow, or an ensemble.

Two row weightings (:func:`solve_cbe`): ``"log_f"`` (rows of ``grad log f``,
every velocity counts equally; popstore's default) and ``"f"`` (rows of
``grad f / f_ref``, i.e. weighted by ``f``, as in the HernquistFlows code,
which makes the least squares lean on the densest velocities).

Memory: autograd keeps every intermediate of ``log f`` for every evaluation
point (about 40 kB per point per 8-layer flow in float64), so the points are
processed in chunks sized to ``memory_budget`` from the measured graph size
per point (:func:`graph_bytes_per_point`): a 30-member ensemble costs no more
memory than one flow, only more time. For an ensemble it is cheaper still to
evaluate each member once (:func:`cbe_terms`) and mix the terms exactly
(:func:`mixture_terms`); every sub-ensemble then costs no further gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

LogDF = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of autograd graph per chunk (1 GiB)
GRAPH_HEADROOM = 2.0  # peak / saved-tensor bytes: temporaries of the forward pass and the backward's buffers
Weighting = Literal["log_f", "f"]


@dataclass(frozen=True)
class CBETerms:
    """``log f`` and its gradients at ``P`` positions x ``K`` velocities: everything the least squares needs.

    ``log_f`` (P, K); ``grad_x``, ``grad_v`` (P, K, 3): gradients of ``log f``;
    ``v`` (P, K, 3): the velocities.
    """

    log_f: torch.Tensor
    grad_x: torch.Tensor
    grad_v: torch.Tensor
    v: torch.Tensor


def graph_bytes_per_point(log_f: LogDF, x: torch.Tensor, v: torch.Tensor, probe: tuple[int, int] = (4, 20)) -> float:
    """Bytes of autograd graph one evaluation point of ``log_f`` keeps, times :data:`GRAPH_HEADROOM`.

    Measured by counting the tensors autograd saves for the backward pass
    (``torch.autograd.graph.saved_tensors_hooks``) for two probe sizes; the
    slope removes what does not grow with the points (weights, masks).
    ``x``, ``v``: (n, 3) points to probe (the first ``probe[1]`` are used).
    """
    sizes = []
    for n in probe:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        xx = x[:n].detach().clone().requires_grad_(True)
        vv = v[:n].detach().clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            log_f(xx, vv)
        sizes.append((len(xx), total))
    (n0, b0), (n1, b1) = sizes
    per_point = (b1 - b0) / (n1 - n0) if n1 > n0 else b1 / max(n1, 1)
    return GRAPH_HEADROOM * max(per_point, 1.0)


def cbe_terms(log_f: LogDF, x: torch.Tensor, v: torch.Tensor, memory_budget: float = DEFAULT_MEMORY_BUDGET,
              progress: bool = False) -> CBETerms:
    """``log f``, ``grad_x log f`` and ``grad_v log f`` at positions ``x`` (P, 3) and velocities ``v`` (P, K, 3).

    ``log_f(x, v)`` maps (n, 3), (n, 3) tensors to (n,) log phase-space
    densities (any normalisation). The P x K points are evaluated in chunks
    whose autograd graph fits ``memory_budget`` bytes (:func:`graph_bytes_per_point`).
    """
    if x.ndim != 2 or x.shape[1] != 3 or v.ndim != 3 or v.shape[2] != 3 or v.shape[0] != x.shape[0]:
        raise ValueError(f"need x (P, 3) and v (P, K, 3); got {tuple(x.shape)} and {tuple(v.shape)}")
    if v.shape[1] < 3:
        raise ValueError("need at least 3 velocities per position for a 3D acceleration")
    p, k = v.shape[:2]
    xx = x.detach()[:, None, :].expand(p, k, 3).reshape(-1, 3)
    vv = v.detach().reshape(-1, 3)
    chunk = max(1, int(memory_budget // graph_bytes_per_point(log_f, xx, vv)))
    lfs, gxs, gvs = [], [], []
    for s in tqdm(range(0, len(xx), chunk), disable=not progress, desc="CBE gradients"):
        xc = xx[s : s + chunk].clone().requires_grad_(True)
        vc = vv[s : s + chunk].clone().requires_grad_(True)
        lf = log_f(xc, vc)
        if not torch.all(torch.isfinite(lf)):
            raise ValueError("log f is not finite at some evaluation points (outside the DF's support?)")
        gx, gv = torch.autograd.grad(lf.sum(), (xc, vc))
        lfs.append(lf.detach()), gxs.append(gx), gvs.append(gv)
    return CBETerms(torch.cat(lfs).reshape(p, k), torch.cat(gxs).reshape(p, k, 3), torch.cat(gvs).reshape(p, k, 3), v.detach())


def mixture_terms(members: Sequence[CBETerms]) -> CBETerms:
    """The terms of the equal-weight mixture ``f = (1/M) sum_m f_m`` from those of its members, exactly.

    ``grad log f = sum_m w_m grad log f_m`` with ``w_m = f_m / sum f`` (a
    softmax of the members' ``log f``), so an ensemble's CBE acceleration
    (An et al. 2021, Sect. 3.3: the ensemble DF is the mean density) needs one
    gradient pass per member, reusable for every sub-ensemble.
    """
    if not members:
        raise ValueError("a mixture needs at least one member")
    lp = torch.stack([m.log_f for m in members])
    w = torch.softmax(lp, dim=0)[..., None]
    return CBETerms(torch.logsumexp(lp, dim=0) - np.log(len(members)),
                    (w * torch.stack([m.grad_x for m in members])).sum(0),
                    (w * torch.stack([m.grad_v for m in members])).sum(0), members[0].v)


def solve_cbe(terms: CBETerms, weighting: Weighting = "log_f") -> torch.Tensor:
    """Least-squares acceleration (P, 3), in the units of ``v^2 / x``, from :class:`CBETerms`.

    ``weighting="log_f"``: rows ``S_i + a . g_i`` with ``g = grad_v log f``.
    ``"f"``: the same rows times ``f_i / f_ref`` (HernquistFlows; ``f_ref``,
    one per position, cancels in the solution). Solved in the dtype of the terms.
    """
    s_i = (terms.v * terms.grad_x).sum(-1)
    g_i = terms.grad_v
    if weighting == "f":
        w2 = torch.exp(2 * (terms.log_f - terms.log_f.max(dim=1, keepdim=True).values))
    elif weighting == "log_f":
        w2 = torch.ones_like(s_i)
    else:
        raise ValueError(f"weighting must be 'log_f' or 'f', got {weighting!r}")
    normal = torch.einsum("pk,pki,pkj->pij", w2, g_i, g_i)
    rhs = torch.einsum("pk,pk,pki->pi", w2, s_i, g_i)
    return -torch.linalg.solve(normal, rhs)


def cbe_acceleration(log_f: LogDF, x: torch.Tensor, v: torch.Tensor, memory_budget: float = DEFAULT_MEMORY_BUDGET,
                     weighting: Weighting = "log_f", progress: bool = False) -> torch.Tensor:
    """Least-squares CBE acceleration at positions ``x`` (P, 3) from velocities ``v`` (P, K, 3).

    ``log_f(x, v)`` maps (n, 3), (n, 3) tensors to (n,) log phase-space
    densities (any normalisation). Returns (P, 3) in the units of
    ``v^2 / x``. Use float64 tensors: the 3x3 normal equations are solved in
    the dtype of ``v``. The autograd graph is kept below ``memory_budget``
    bytes by chunking the P x K points (members x points for an ensemble's
    ``log_f``); ``weighting``: see :func:`solve_cbe`.
    """
    return solve_cbe(cbe_terms(log_f, x, v, memory_budget, progress), weighting)


def evaluation_velocities(
    x: np.ndarray,
    v_esc: np.ndarray,
    n: int,
    rng: np.random.Generator,
    v_range: tuple[float, float] = (0.2, 0.9),
    min_tangential: float = 0.1,
    symmetric: bool = False,
    min_component: float = 0.0,
) -> np.ndarray:
    """The Hernquist paper's evaluation velocities: (P, n, 3).

    Isotropic directions, ``|v|`` uniform in ``v_range`` times ``v_esc``,
    tangential speed (perpendicular to ``x``) above ``min_tangential v_esc``
    (An et al. 2021, Sect. 4: keeps away from the ``1/L`` pole of the
    anisotropic DF) and every Cartesian component ``|v_i|`` above
    ``min_component v_esc``. ``x`` (P, 3), ``v_esc`` (P,). The HernquistFlows
    figure code draws ``|v|`` in (0, 0.9) with ``min_component = 0.2``
    (:data:`PAPER_VELOCITIES`); popstore's default cuts ``|v| > 0.2 v_esc``
    instead. ``symmetric``: ``n / 2`` draws and their opposites ``-v``
    (antithetic pairs; the cuts are symmetric), which balances the velocity
    design of the least squares.
    """
    if symmetric:
        if n % 2:
            raise ValueError(f"symmetric velocities need an even n, got {n}")
        half = evaluation_velocities(x, v_esc, n // 2, rng, v_range, min_tangential, min_component=min_component)
        return np.concatenate([half, -half], axis=1)
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
        ok = (vt > min_tangential * v_esc[rows]) & np.all(np.abs(speed[:, None] * d) > min_component * v_esc[rows, None], axis=1)
        idx = np.nonzero(todo)
        out[idx[0][ok], idx[1][ok]] = speed[ok, None] * d[ok]
        todo[idx[0][ok], idx[1][ok]] = False
    return out


PAPER_VELOCITIES = {"v_range": (0.0, 0.9), "min_tangential": 0.1, "min_component": 0.2}
"""Keyword arguments of :func:`evaluation_velocities` for the HernquistFlows figures' velocity design."""
