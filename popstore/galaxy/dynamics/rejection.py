"""Exact, vectorised rejection sampling of speeds under a step-function envelope.

Used to draw speeds from ergodic distribution functions at given radii. The
target density of ``q = v / v_esc`` on ``[0, 1]`` at row ``i`` is
``g_i(q) = q^2 h_i(q)`` with ``h_i`` non-increasing in ``q`` (true for every
DF ``f(E)`` that grows with binding energy, e.g. Hernquist 1990, eq. 17).
On bin ``[q_k, q_{k+1}]`` the step ``q_{k+1}^2 h_i(q_k)`` bounds ``g_i`` from
above, so drawing a bin in proportion to the envelope mass, a uniform ``q``
inside it, and accepting with probability ``g_i(q) / envelope`` gives exact
draws from ``g_i`` (von Neumann 1951) -- no grid approximation enters the
accepted samples, the grid only sets the acceptance rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def sample_q2_decreasing(
    h: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_rows: int,
    rng: np.random.Generator,
    n_bins: int = 64,
    max_rounds: int = 200,
) -> np.ndarray:
    """One draw per row from ``g_i(q) ∝ q^2 h(i, q)`` on ``[0, 1]``.

    Parameters
    ----------
    h : callable
        ``h(rows, q)`` with integer row indices ``rows`` (shape ``(m,)`` or
        ``(m, 1)``) broadcast against ``q``; non-increasing in ``q``, finite
        and non-negative on ``[0, 1]``.
    n_rows : int
        Number of independent draws (one per row).
    rng : numpy.random.Generator
        Source of every random number.
    n_bins : int
        Envelope bins (acceptance rises with it; exactness does not depend on it).
    max_rounds : int
        Give up (``RuntimeError``) if rows remain unaccepted after this many rounds.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = np.arange(n_rows)
    env = edges[1:] ** 2 * np.broadcast_to(h(rows[:, None], edges[None, :-1]), (n_rows, n_bins))
    if not np.all(np.isfinite(env)) or np.any(env < 0):
        raise ValueError("h must be finite and non-negative on [0, 1]")
    cum = np.cumsum(env, axis=1)
    out = np.full(n_rows, np.nan)
    todo = rows
    for _ in range(max_rounds):
        if todo.size == 0:
            return out
        c = cum[todo]
        k = np.minimum((c < rng.random(todo.size)[:, None] * c[:, -1:]).sum(axis=1), n_bins - 1)
        q = edges[k] + rng.random(todo.size) * (edges[k + 1] - edges[k])
        g = q**2 * np.broadcast_to(h(todo, q), q.shape)
        accept = rng.random(todo.size) * env[todo, k] < g
        out[todo[accept]] = q[accept]
        todo = todo[~accept]
    raise RuntimeError(f"rejection sampler: {todo.size} rows unaccepted after {max_rounds} rounds")
