"""Dask clusters from a ``[cluster]`` table: a LocalCluster, or SLURM/PBS through dask-jobqueue."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def cluster_client(cfg: dict[str, Any] | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster described by a ``[cluster]`` table."""
    from distributed import Client, LocalCluster

    cfg = dict(cfg or {})
    kind = cfg.pop("kind", "local")
    if kind == "local":
        cfg.setdefault("threads_per_worker", 1)
        cfg.setdefault("dashboard_address", ":0")
        cfg.setdefault("silence_logs", logging.ERROR)
        cluster = LocalCluster(**cfg)
    elif kind in ("slurm", "pbs"):
        try:
            import dask_jobqueue
        except ImportError as e:
            raise ImportError("cluster kind 'slurm'/'pbs' needs dask-jobqueue: pip install 'popstore[hpc]'") from e
        max_jobs = cfg.pop("max_jobs", 10)
        cfg = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in cfg.items()}
        cluster = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind](**cfg)
        cluster.adapt(minimum_jobs=0, maximum_jobs=max_jobs)
    else:
        raise ValueError(f"unknown cluster kind {kind!r}; use 'local', 'slurm' or 'pbs'")
    with cluster, Client(cluster) as client:
        yield client
