"""Ensembles of flows: one configuration trained with several seeds, averaged in density.

The ensemble DF is the mean of the members' densities,
``f = (1/K) sum_k exp(log p_k)`` (An et al. 2021, Sect. 3.3; Naik et al. 2021,
Sect. 3), evaluated as a log-sum-exp so it stays differentiable: its
gradients (used by :func:`popstore.galaxy.dynamics.acceleration.cbe_acceleration`)
are those of the averaged DF, not averages of the members' gradients of log f.
Members train in parallel on Dask workers (one task per seed) or one after
another in this process, on one shared training sample or on independent
ones (``sampling="bootstrap"`` or ``"disjoint"`` rows of one sample,
:func:`member_rows`, or a fresh draw per member from a simulator when ``data``
is a function of the seed): members that share a sample share its
fluctuations, which averaging cannot remove.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from popstore.cluster import put
from popstore.errors import UserError
from popstore.estimators.flows import (
    CHECKPOINT,
    LOSSES,
    SUMMARY,
    NFLOWS_BEST,
    NFLOWS_LOSSES,
    FlowConfig,
    ScaledFlow,
    TrainResult,
    load_flow,
    load_nflows,
    train_flow,
)

log = logging.getLogger(__name__)
Sampling = Literal["shared", "bootstrap", "disjoint"]
MemberData = Callable[[int], np.ndarray]


def member_rows(n: int, seeds: Sequence[int], seed: int, sampling: Sampling) -> np.ndarray | None:
    """Rows of an ``n``-row training set that member ``seed`` of the ensemble ``seeds`` trains on.

    ``"shared"``: all rows (``None``). ``"bootstrap"``: ``n`` rows drawn with
    replacement by ``default_rng(seed)``. ``"disjoint"``: the ``i``-th of
    ``len(seeds)`` equal parts of one fixed random permutation (``i``: the
    position of ``seed`` in ``seeds``), so members see independent stars.
    """
    if sampling == "shared":
        return None
    if sampling == "bootstrap":
        return np.random.default_rng(seed).integers(n, size=n)
    if sampling == "disjoint":
        if n < len(seeds):
            raise ValueError(f"cannot split {n} rows into {len(seeds)} disjoint parts")
        return np.array_split(np.random.default_rng(0).permutation(n), len(seeds))[list(seeds).index(seed)]
    raise ValueError(f"sampling must be 'shared', 'bootstrap' or 'disjoint', got {sampling!r}")


def _train_member(data: np.ndarray | MemberData, rows: np.ndarray | None, cfg: FlowConfig, seed: int, out_dir: str | Path,
                  rescaling, context: np.ndarray | None, progress: bool, sampling: str) -> TrainResult:
    """:func:`train_flow` on the rows of ``data`` (and ``context``) of one member, or on ``data(seed)``; runs where the member trains."""
    if callable(data):
        data = data(seed)
    elif rows is not None:
        data, context = data[rows], None if context is None else context[rows]
    return train_flow(data, cfg, seed, out_dir, rescaling, context, progress, meta={"sampling": sampling})


def train_ensemble(
    data: np.ndarray | MemberData,
    cfg: FlowConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
    client=None,
    rescaling: tuple[np.ndarray, np.ndarray] | None = None,
    context: np.ndarray | None = None,
    progress: bool = True,
    resources: dict[str, float] | None = None,
    retrain: bool = False,
    sampling: Sampling = "shared",
) -> list[TrainResult]:
    """Train one flow per seed into ``out_dir/seed_<seed>``; on ``client`` (a dask.distributed Client) if given.

    Members that already finished with the same ``cfg`` (see :func:`finished_member`) are loaded, not
    retrained, unless ``retrain``: rerunning after a killed job trains only the members it did not finish.
    On ``client`` every member is one task, needing the worker ``resources`` given (e.g. ``{"GPU": 1}``
    for workers started with ``--resources GPU=1``, in SLURM jobs asking ``--gres=gpu:1``).
    ``sampling`` chooses each member's training rows (:func:`member_rows`); ``data`` may instead be
    a function ``data(seed) -> (n, features)`` that draws each member's own independent sample (called
    where the member trains; recorded as ``sampling="independent"``). A member's rescaling, if not given,
    is that of its own data.
    """
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    if callable(data):
        if sampling != "shared" or context is not None:
            raise ValueError("a per-member data function draws its own sample: no sampling scheme or context")
        sampling = "independent"
    rows = {s: None if callable(data) else member_rows(len(data), seeds, s, sampling) for s in seeds}
    done = {} if retrain else {s: r for s in seeds if (r := finished_member(out_dir, s, cfg, sampling)) is not None}
    todo = [s for s in seeds if s not in done]
    if done:
        log.info("flow members %s already trained in %s; training %s", sorted(done), out_dir, todo)
    if not todo:
        new = []
    elif client is None:
        new = [_train_member(data, rows[s], cfg, s, out_dir, rescaling, context, progress, sampling) for s in todo]
    else:
        data_f = data if callable(data) else put(client, data)
        ctx_f = None if context is None else put(client, context)
        new = client.gather([client.submit(_train_member, data_f, rows[s], cfg, s, str(out_dir), rescaling, ctx_f, False,
                                           sampling, pure=False, resources=resources) for s in todo])
    results = done | dict(zip(todo, new))
    return [results[s] for s in seeds]


def finished_member(out_dir: str | Path, seed: int, cfg: FlowConfig, sampling: str = "shared") -> TrainResult | None:
    """The saved result of member ``seed`` if its training with ``cfg`` finished (its ``summary.json``, written
    last, exists and names ``cfg`` and ``sampling``); ``None`` for a member never started, killed part-way or
    trained otherwise."""
    out = Path(out_dir) / f"seed_{seed}"
    try:
        summary = json.loads((out / SUMMARY).read_text())
    except FileNotFoundError:
        return None
    if summary.get("config") != asdict(cfg) or summary.get("sampling", "shared") != sampling:
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


def load_nflows_ensemble(directory: str | Path, cfg: FlowConfig = FlowConfig(), seeds: Sequence[int] | None = None,
                         rescaling: tuple[np.ndarray, np.ndarray] | None = None,
                         dtype: torch.dtype = torch.float64) -> FlowEnsemble:
    """The ensemble of flows saved in the research-code layout (``<seed>_best.pth``; unless ``seeds`` are given, all
    seeds with both ``<seed>_best.pth`` and ``<seed>_losses.npy``).

    Reads the published HernquistFlows ensembles (Naik et al. 2021, arXiv:2112.07657; pass their
    ``rescaling``) and the copies popstore writes beside its own members (:func:`load_nflows`).
    """
    directory = Path(directory)
    if seeds is None:
        suffix = NFLOWS_BEST.format(seed="")
        found = [p.name[: -len(suffix)] for p in directory.glob(f"*{suffix}")]
        # a member whose <seed>_losses.npy is missing is still training (or was killed): not part of the ensemble
        seeds = sorted(int(s) for s in found if s.isdigit() and (directory / NFLOWS_LOSSES.format(seed=s)).exists())
    if not seeds:
        raise UserError(f"no <seed>_best.pth flows in {directory}")
    return FlowEnsemble([load_nflows(directory, s, cfg, rescaling, dtype)[0] for s in seeds]).eval()


def phase_space_log_df(model: ScaledFlow | FlowEnsemble):
    """``log_f(x, v)`` for :func:`~popstore.galaxy.dynamics.acceleration.cbe_acceleration` from a 6D flow over (x, v)."""
    return lambda x, v: model.log_prob(torch.cat([x, v], dim=-1))
