"""Dask clusters from a ``[cluster]`` table: a LocalCluster, or SLURM/PBS through dask-jobqueue.

Only the user who started a cluster can use it:

- ``kind = "local"``: scheduler, workers, nannies and the dashboard listen on
  127.0.0.1 (the dashboard on a free port; ``dashboard_address`` overrides it).
  ``security = true`` adds TLS with per-run certificates as on HPC.
- ``kind = "slurm"`` / ``"pbs"``: the scheduler must be reachable from the
  compute nodes, so it speaks TLS with mutual authentication. By default the
  certificates are made for this run (``Security.temporary()``), written for
  the worker jobs as owner-only (0600) files in ``shared_temp_directory``
  (default ``~/.popstore``, which must be on a filesystem the compute nodes
  see); ``[cluster.security]`` with ``ca_file``, ``cert`` and ``key`` uses
  your own files instead; ``security = false`` turns TLS off. The dashboard
  listens on the driver's 127.0.0.1:8787 (reach it with an ssh tunnel).

String settings have ``$VARS`` expanded from the environment; a value with a
newline or other control character is refused, so that nothing but the
setting itself reaches the job script.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from popstore.errors import UserError

LOOPBACK = "127.0.0.1"
HPC_DASHBOARD = f"{LOOPBACK}:8787"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VAR = re.compile(r"\$(\w+)|\$\{([^}]*)\}")


def expand_vars(value: str, where: str) -> str:
    """``value`` with ``$VAR`` / ``${VAR}`` expanded (``os.path.expandvars``), refusing control characters.

    ``where`` names the setting in the error, e.g. ``"[cluster] account"``.
    Raises :class:`~popstore.errors.UserError` naming the variable whose value
    contains a newline or another control character, or the setting if the
    literal text does.
    """
    for m in _VAR.finditer(value):
        name = m.group(1) or m.group(2)
        if _CONTROL.search(os.environ.get(name, "")):
            raise UserError(f"{where}: ${name} contains a newline or control character; refusing to expand it")
    if _CONTROL.search(value):
        raise UserError(f"{where} contains a newline or control character")
    return os.path.expandvars(value)


def _checked(key: str, value: Any) -> Any:
    """A jobqueue setting: strings expanded, lists (left for the job's shell to expand) checked."""
    if isinstance(value, str):
        return expand_vars(value, f"[cluster] {key}")
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and _CONTROL.search(item):
                raise UserError(f"[cluster] {key} has an item with a newline or control character: {item!r}")
    return value


def security_of(setting: bool | dict[str, str]) -> Any:
    """The ``distributed.security.Security`` of a ``security`` setting (``None`` for ``false``).

    ``true``: certificates made for this run (needs ``cryptography``); a table
    with ``ca_file``, ``cert``, ``key``: those files for scheduler, workers and
    client, with encryption required.
    """
    from distributed.security import Security

    if setting is False:
        return None
    if setting is True:
        return Security.temporary()
    if not isinstance(setting, dict) or set(setting) != {"ca_file", "cert", "key"}:
        raise UserError("[cluster] security must be true, false or a table with ca_file, cert and key")
    ca, cert, key = (str(Path(expand_vars(setting[k], f"[cluster.security] {k}")).expanduser())
                     for k in ("ca_file", "cert", "key"))
    for k, p in (("ca_file", ca), ("cert", cert), ("key", key)):
        if not Path(p).is_file():
            raise UserError(f"[cluster.security] {k}: no file {p}")
    return Security(tls_ca_file=ca, require_encryption=True,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key,
                    tls_client_cert=cert, tls_client_key=key)


def _local(cfg: dict[str, Any]) -> Any:
    from distributed import LocalCluster

    security = security_of(cfg.pop("security", False))
    if cfg.get("processes", True) or security is not None:
        cfg.setdefault("host", LOOPBACK)
    else:  # threads only: in-process comms, but the worker's HTTP server would listen on every interface
        cfg.setdefault("worker_dashboard_address", f"{LOOPBACK}:0")
    cfg.setdefault("threads_per_worker", 1)
    cfg.setdefault("dashboard_address", f"{LOOPBACK}:0")
    cfg.setdefault("silence_logs", logging.ERROR)
    if security is not None:
        cfg.update(security=security, protocol="tls://")
    return LocalCluster(**cfg)


def _jobqueue(kind: str, cfg: dict[str, Any]) -> Any:
    try:
        import dask_jobqueue
    except ImportError as e:
        raise ImportError("cluster kind 'slurm'/'pbs' needs dask-jobqueue: pip install 'popstore[hpc]'") from e
    max_jobs = cfg.pop("max_jobs", 10)
    security = security_of(cfg.pop("security", True))
    cfg = {k: _checked(k, v) for k, v in cfg.items()} | {"security": security}
    if security is None:
        logging.getLogger(__name__).warning("[cluster] security = false: anyone who can reach the scheduler can "
                                            "run code as you on your workers")
    else:
        shared = Path(cfg.setdefault("shared_temp_directory", "~/.popstore")).expanduser()
        shared.mkdir(mode=0o700, parents=True, exist_ok=True)
    cfg["scheduler_options"] = {"dashboard_address": HPC_DASHBOARD, **cfg.get("scheduler_options", {})}
    cluster = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind](**cfg)
    cluster.adapt(minimum_jobs=0, maximum_jobs=max_jobs)
    return cluster


def _identity(x: Any) -> Any:
    return x


def put(client: Any, obj: Any) -> Any:
    """A future of ``obj`` for tasks to depend on, made by a task rather than ``client.scatter``.

    An adaptive (SLURM/PBS) cluster starts with no worker to scatter to, and scattered data is lost for good
    when the workers holding it leave (a cancelled job, ``--lifetime``); a task's result is recomputed.
    """
    return client.submit(_identity, obj, pure=False)


@contextlib.contextmanager
def cluster_client(cfg: dict[str, Any] | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster described by a ``[cluster]`` table (see module docstring)."""
    from distributed import Client

    cfg = dict(cfg or {})
    kind = cfg.pop("kind", "local")
    if kind == "local":
        cluster = _local(cfg)
    elif kind in ("slurm", "pbs"):
        cluster = _jobqueue(kind, cfg)
    else:
        raise UserError(f"unknown cluster kind {kind!r}; use 'local', 'slurm' or 'pbs'")
    with cluster, Client(cluster, security=cluster.security) as client:
        yield client
