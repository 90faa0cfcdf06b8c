"""Vectorised orbit integration of all stars of a population at once.

Kick-drift-kick leapfrog (Verlet; symplectic, second order, time reversible)
in Cartesian galactocentric coordinates. Every star gets its own time step
``dt_i = t_i / n_steps`` so all stars take the same number of steps and finish
exactly at their own age with no masking. Stars whose relative energy error
``|E_end - E_0| / (|Phi_0| + v_0^2 / 2)`` exceeds ``energy_tol`` (close passages
to the Galactic nucleus, where the dynamical time is ~1 Myr) are integrated
again with ``refine_factor`` times more steps, up to ``max_refinements`` times.
The potential is static and axisymmetric, so E and L_z are conserved by the
exact flow (checked in the tests). Stars are processed in blocks of ``chunk``
so the working arrays stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popstore.pulsars.potential import MarchettiPotential


@dataclass(frozen=True)
class OrbitReport:
    """Bookkeeping of one :func:`integrate_orbits` call."""

    n_refined: int  # stars integrated more than once
    max_rel_energy_error: float  # after refinement
    n_above_tol: int  # stars still above tolerance after the last refinement


def specific_energy(pot: MarchettiPotential, pos: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """E = v^2 / 2 + Phi in (km/s)^2 for ``pos`` (3, n) kpc and ``vel`` (3, n) km/s."""
    return 0.5 * np.einsum("ij,ij->j", vel, vel) + pot.phi(pos[0], pos[1], pos[2])


def _leapfrog(pot: MarchettiPotential, pos: np.ndarray, vel: np.ndarray, dt: np.ndarray, n_steps: int) -> None:
    """In place: ``n_steps`` KDK steps of per-star length ``dt`` (kpc / (km/s))."""
    x, y, z = pos
    vx, vy, vz = vel
    half = 0.5 * dt
    ax, ay, az = pot.acceleration(x, y, z)
    for step in range(n_steps):
        h = half if step == 0 else dt  # merged half kicks of consecutive steps
        vx += ax * h
        vy += ay * h
        vz += az * h
        x += vx * dt
        y += vy * dt
        z += vz * dt
        ax, ay, az = pot.acceleration(x, y, z)
    vx += ax * half
    vy += ay * half
    vz += az * half


def _integrate_block(pot: MarchettiPotential, pos: np.ndarray, vel: np.ndarray, t: np.ndarray, n_steps: int,
                     chunk: int) -> None:
    for lo in range(0, t.size, chunk):
        sl = slice(lo, lo + chunk)
        p, v = pos[:, sl].copy(), vel[:, sl].copy()
        _leapfrog(pot, p, v, t[sl] / n_steps, n_steps)
        pos[:, sl], vel[:, sl] = p, v


def integrate_orbits(
    pot: MarchettiPotential,
    pos0: np.ndarray,
    vel0: np.ndarray,
    t: np.ndarray,
    n_steps: int = 128,
    energy_tol: float = 1e-4,
    refine_factor: int = 4,
    max_refinements: int = 4,
    chunk: int = 32_768,
) -> tuple[np.ndarray, np.ndarray, OrbitReport]:
    """Integrate every star from its birth state over its own time ``t``.

    Parameters
    ----------
    pot : the Galactic potential.
    pos0, vel0 : (3, n) arrays, kpc and km/s.
    t : (n,) integration times in kpc / (km/s) (age in yr times yr / (kpc / km s^-1)).
    n_steps : leapfrog steps per star on the first pass.
    energy_tol, refine_factor, max_refinements : see module docstring.

    Returns
    -------
    pos, vel : (3, n) final states; report : :class:`OrbitReport`.
    """
    pos0 = np.asarray(pos0, dtype=float)
    vel0 = np.asarray(vel0, dtype=float)
    t = np.asarray(t, dtype=float)
    if pos0.ndim != 2 or pos0.shape[0] != 3 or vel0.shape != pos0.shape or t.shape != pos0.shape[1:]:
        raise ValueError(f"need pos0, vel0 of shape (3, n) and t of shape (n,), got {pos0.shape}, {vel0.shape}, {t.shape}")
    if np.any(t < 0):
        raise ValueError("integration times must be >= 0")
    e0 = specific_energy(pot, pos0, vel0)
    scale = np.abs(pot.phi(*pos0)) + 0.5 * np.einsum("ij,ij->j", vel0, vel0)
    pos, vel = pos0.copy(), vel0.copy()
    _integrate_block(pot, pos, vel, t, n_steps, chunk)
    err = np.abs(specific_energy(pot, pos, vel) - e0) / scale
    refined = np.zeros(t.size, dtype=bool)
    steps = n_steps
    for _ in range(max_refinements):
        bad = np.flatnonzero(err > energy_tol)
        if bad.size == 0:
            break
        steps *= refine_factor
        p, v = pos0[:, bad].copy(), vel0[:, bad].copy()
        _integrate_block(pot, p, v, t[bad], steps, chunk)
        pos[:, bad], vel[:, bad] = p, v
        err[bad] = np.abs(specific_energy(pot, p, v) - e0[bad]) / scale[bad]
        refined[bad] = True
    report = OrbitReport(int(refined.sum()), float(err.max(initial=0.0)), int((err > energy_tol).sum()))
    return pos, vel, report
