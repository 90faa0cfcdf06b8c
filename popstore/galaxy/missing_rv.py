"""CBE accelerations when part of the stars lack line-of-sight velocities: a factorised DF.

With the data of :func:`popstore.galaxy.dynamics.catalogue.missing_rv_subset`
(positions of every star, full velocities for a random subset), write the DF
as ``f(x, v) = n(x) p(v | x)``:

- ``n(x)``: a 3D flow on the positions of *all* stars (no velocity needed);
- ``p(v | x)``: a 3D flow conditioned on ``x`` (nflows context), trained on
  the stars that have ``v_los``. Stars are missing ``v_los`` at random, so
  the subset with ``v_los`` has the same ``p(v | x)``.

``log f = log n + log p(v | x)`` is differentiable in ``x`` (through the
conditional flow's context too) and ``v``, so
:func:`popstore.galaxy.dynamics.acceleration.cbe_acceleration` applies unchanged.
The positional gradient, usually the noisiest term, uses every star. This is
our construction; it does not use the tangential velocities of the stars
without ``v_los`` (Naik et al. 2021, arXiv:2112.07657, Sect. 4.3, treat the
missing velocities within their own pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from popstore.galaxy.dynamics.catalogue import POSITION_VARS, full_velocities
from popstore.estimators.flows import FlowConfig, ScaledFlow
from popstore.estimators.flows_ensemble import (
    FlowEnsemble,
    load_ensemble,
    train_ensemble,
)


class FactorisedDF(torch.nn.Module):
    """``log f(x, v) = log n(x) + log p(v | x)`` from a position model and a conditional velocity model."""

    def __init__(self, positions: ScaledFlow | FlowEnsemble, velocities: ScaledFlow | FlowEnsemble) -> None:
        super().__init__()
        self.positions, self.velocities = positions, velocities

    def log_prob(self, xv: torch.Tensor) -> torch.Tensor:
        """Log density of (n, 6) phase-space points (x, y, z, vx, vy, vz)."""
        x, v = xv[:, :3], xv[:, 3:]
        return self.positions.log_prob(x) + self.velocities.log_prob(v, context=x)


def train_missing_rv(subset: xr.Dataset, cfg: FlowConfig, seeds: Sequence[int], out_dir: str | Path, progress: bool = True) -> None:
    """Train ``out_dir/positions`` (all stars) and ``out_dir/velocities`` (stars with v_los, conditioned on x).

    ``cfg`` supplies the architecture and training settings; ``features`` and
    ``context_features`` are set here (3 and 0, 3 and 3).
    """
    out_dir = Path(out_dir)
    x_all = np.stack([subset[v].values for v in POSITION_VARS], axis=1)
    x_rv, v_rv = full_velocities(subset)
    if len(x_rv) < 10:
        raise ValueError(f"only {len(x_rv)} stars have line-of-sight velocities")
    train_ensemble(x_all, replace(cfg, features=3, context_features=0), seeds, out_dir / "positions", progress=progress)
    train_ensemble(v_rv, replace(cfg, features=3, context_features=3), seeds, out_dir / "velocities", context=x_rv, progress=progress)


def load_missing_rv(out_dir: str | Path, seeds: Sequence[int] | None = None) -> FactorisedDF:
    """The :class:`FactorisedDF` of the ensembles written by :func:`train_missing_rv` (float64, eval mode)."""
    out_dir = Path(out_dir)
    return FactorisedDF(load_ensemble(out_dir / "positions", seeds), load_ensemble(out_dir / "velocities", seeds)).eval()
