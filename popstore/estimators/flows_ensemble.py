"""Ensembles of flows: one configuration trained with several seeds, averaged in density.

The ensemble DF is the mean of the members' densities,
``f = (1/K) sum_k exp(log p_k)`` (An et al. 2021, Sect. 3.3; Naik et al. 2021,
Sect. 3), evaluated as a log-sum-exp so it stays differentiable: its
gradients (used by :func:`popstore.galaxy.dynamics.acceleration.cbe_acceleration`)
are those of the averaged DF, not averages of the members' gradients of log f.
Members train in parallel on Dask workers (one task per seed) or one after
another in this process.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from popstore.cluster import put
from popstore.estimators.flows import (
    CHECKPOINT,
    LOSSES,
    SUMMARY,
    FlowConfig,
    ScaledFlow,
    TrainResult,
    load_flow,
    train_flow,
)

log = logging.getLogger(__name__)


def train_ensemble(
    data: np.ndarray,
    cfg: FlowConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
    client=None,
    rescaling: tuple[np.ndarray, np.ndarray] | None = None,
    context: np.ndarray | None = None,
    progress: bool = True,
    resources: dict[str, float] | None = None,
    retrain: bool = False,
) -> list[TrainResult]:
    """Train one flow per seed into ``out_dir/seed_<seed>``; on ``client`` (a dask.distributed Client) if given.

    Members that already finished with the same ``cfg`` (see :func:`finished_member`) are loaded, not
    retrained, unless ``retrain``: rerunning after a killed job trains only the members it did not finish.
    On ``client`` every member is one task, needing the worker ``resources`` given (e.g. ``{"GPU": 1}``
    for workers started with ``--resources GPU=1``, in SLURM jobs asking ``--gres=gpu:1``).
    """
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    done = {} if retrain else {s: r for s in seeds if (r := finished_member(out_dir, s, cfg)) is not None}
    todo = [s for s in seeds if s not in done]
    if done:
        log.info("flow members %s already trained in %s; training %s", sorted(done), out_dir, todo)
    if not todo:
        new = []
    elif client is None:
        new = [train_flow(data, cfg, s, out_dir, rescaling, context, progress) for s in todo]
    else:
        data_f = put(client, data)
        ctx_f = None if context is None else put(client, context)
        new = client.gather([client.submit(train_flow, data_f, cfg, s, str(out_dir), rescaling, ctx_f, False,
                                           pure=False, resources=resources) for s in todo])
    results = done | dict(zip(todo, new))
    return [results[s] for s in seeds]


def finished_member(out_dir: str | Path, seed: int, cfg: FlowConfig) -> TrainResult | None:
    """The saved result of member ``seed`` if its training with ``cfg`` finished (its ``summary.json``, written
    last, exists and names ``cfg``); ``None`` for a member never started, killed part-way or trained otherwise."""
    out = Path(out_dir) / f"seed_{seed}"
    try:
        summary = json.loads((out / SUMMARY).read_text())
    except FileNotFoundError:
        return None
    if summary.get("config") != asdict(cfg):
        return None
    return TrainResult(seed, pd.read_csv(out / LOSSES), int(summary["best_epoch"]), out / CHECKPOINT)


class FlowEnsemble(torch.nn.Module):
    """Mixture of equally weighted flows: ``log f = logsumexp_k(log p_k) - log K``."""

    def __init__(self, members: Sequence[ScaledFlow]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        lp = torch.stack([m.log_prob(x, context) for m in self.members])
        return torch.logsumexp(lp, dim=0) - math.log(len(self.members))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` draws from the mixture (members chosen uniformly with ``default_rng(seed)``)."""
        counts = np.bincount(np.random.default_rng(seed).integers(len(self.members), size=n), minlength=len(self.members))
        return torch.cat([m.sample(int(k), seed=seed + i) for i, (m, k) in enumerate(zip(self.members, counts)) if k])


def load_ensemble(out_dir: str | Path, seeds: Sequence[int] | None = None, dtype: torch.dtype = torch.float64) -> FlowEnsemble:
    """Load the members saved by :func:`train_ensemble` (all ``seed_*`` directories unless ``seeds`` given)."""
    out_dir = Path(out_dir)
    dirs = [out_dir / f"seed_{s}" for s in seeds] if seeds is not None else sorted(p.parent for p in out_dir.glob(f"seed_*/{CHECKPOINT}"))
    if not dirs:
        raise FileNotFoundError(f"no trained flows under {out_dir}")
    return FlowEnsemble([load_flow(d, dtype) for d in dirs]).eval()


def phase_space_log_df(model: ScaledFlow | FlowEnsemble):
    """``log_f(x, v)`` for :func:`~popstore.galaxy.dynamics.acceleration.cbe_acceleration` from a 6D flow over (x, v)."""
    return lambda x, v: model.log_prob(torch.cat([x, v], dim=-1))
