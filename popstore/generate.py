"""Dask-distributed, resumable filling of a store from a simulator.

:func:`generate` writes the store template once (labels, seeds, coordinates;
maps as unwritten placeholders), then submits one task per *block* of samples
(a chunk, or a shard in sharded stores). Each task simulates its samples and
writes its region of every output, then its region of ``done``: no two tasks
ever touch the same chunk or shard, and ``done`` is only set once the maps it
vouches for are on disk. A rerun skips blocks whose samples are all done, so a
killed job resumes where it stopped; since every sample's random numbers come
from its stored seed, the resumed store is bit-identical to an uninterrupted
one.

A sample whose simulation raises is left ``done=False`` (its maps hold the
fill value) and reported by index and seed; the rest of its block is written.
Tasks whose worker dies are retried by Dask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from tqdm.auto import tqdm

from popstore.cluster import cluster_client, put
from popstore.simulator import Simulator
from popstore.store import (
    DEFAULT_COMPRESSION,
    Layout,
    StoreMismatchError,
    choose_layout,
    create_store,
    fingerprint,
    layout_of,
    open_store,
    sample_seeds,
)

log = logging.getLogger(__name__)


@dataclass
class GenerationReport:
    """What a :func:`generate` call did.

    ``failed`` has one row per sample that is still not done after this call:
    ``sample`` (index), ``seed`` and ``error``.
    """

    store: Path
    n_samples: int
    n_skipped: int
    n_written: int
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["sample", "seed", "error"]))

    @property
    def complete(self) -> bool:
        return self.failed.empty

    def __str__(self) -> str:
        s = (f"{self.store}: {self.n_samples} samples, {self.n_skipped} already done, "
             f"{self.n_written} written, {len(self.failed)} failed")
        if not self.failed.empty:
            s += "\n" + self.failed.to_string(index=False)
        return s


def _fill(dtype: np.dtype) -> Any:
    return np.nan if dtype.kind == "f" else 0


def simulate_block(simulator: Simulator, params: pd.DataFrame, seeds: np.ndarray, start: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict]]:
    """Simulate consecutive samples; return stacked outputs, per-sample success and failures.

    Uses ``simulator.simulate_batch`` when it exists; if that raises, or for
    simulators without it, calls ``simulate`` per sample so that a failing
    sample gets the fill value (NaN for floats, 0 otherwise) and a failure
    record while the others are unaffected.
    """
    n = len(seeds)
    batch = getattr(simulator, "simulate_batch", None)
    if batch is not None:
        try:
            stacked = batch(params, seeds)
            sizes = simulator.dim_sizes()
            out = {}
            for o in simulator.outputs:
                out[o.name] = np.asarray(stacked[o.name]).astype(o.dtype, copy=False)
                if out[o.name].shape != (n, *(sizes[d] for d in o.dims)):
                    raise ValueError(f"simulate_batch: {o.name} has shape {out[o.name].shape}")
            return out, np.ones(n, dtype=bool), []
        except Exception:
            log.debug("batch of samples %d-%d failed; retrying one by one", start, start + n - 1, exc_info=True)
    sizes = simulator.dim_sizes()
    stacks = {
        o.name: np.full((n, *(sizes[d] for d in o.dims)), _fill(np.dtype(o.dtype)), dtype=o.dtype)
        for o in simulator.outputs
    }
    ok = np.zeros(n, dtype=bool)
    failures = []
    for j, (row, seed) in enumerate(zip(params.to_dict("records"), seeds)):
        try:
            sample = simulator.check_sample(simulator.simulate(row, int(seed)))
        except Exception as exc:  # reported by index and seed, never fatal for the block
            failures.append({"sample": start + j, "seed": int(seed), "error": f"{type(exc).__name__}: {exc}"})
            log.debug("sample %d failed:\n%s", start + j, traceback.format_exc())
            continue
        for name, arr in sample.items():
            stacks[name][j] = arr
        ok[j] = True
    return stacks, ok, failures


def _write_block(simulator: Simulator, path: str, block: slice, params: pd.DataFrame, seeds: np.ndarray) -> list[dict]:
    """One Dask task: simulate ``block`` and write its region (maps first, ``done`` last)."""
    stacks, ok, failures = simulate_block(simulator, params, seeds, block.start)
    # straight into the arrays the template made (same dims, dtypes, no encoding): opening the store through
    # xarray reads every array's metadata, which made writes the bottleneck of many workers (bench_scaling.py)
    for o in simulator.outputs:
        zarr.open_array(f"{path}/{o.name}", mode="r+")[block] = stacks[o.name]
    zarr.open_array(f"{path}/done", mode="r+")[block] = ok
    return failures


def _client(client: Any, n_tasks: int) -> contextlib.AbstractContextManager:
    if client is not None:
        return contextlib.nullcontext(client)
    return cluster_client({"kind": "local", "n_workers": max(1, min(os.cpu_count() or 1, n_tasks))})


def _clean_partial_files(path: Path) -> None:
    """Remove the temp files a killed LocalStore writer leaves behind (never torn chunks)."""
    for p in path.rglob("*.partial"):
        p.unlink(missing_ok=True)


def prepare_store(
    simulator: Simulator,
    params: pd.DataFrame,
    store: str | Path,
    seed: int = 0,
    samples_per_chunk: int | None = None,
    samples_per_shard: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
) -> tuple[pd.DataFrame, Layout, np.ndarray, np.ndarray]:
    """Create ``store``'s template, or check that an existing one was made by the same run.

    Returns the parameter table in simulator order, the layout, the
    per-sample seeds and the ``done`` flags.
    """
    path = Path(store)
    params = params.reset_index(drop=True)
    missing = [p for p in simulator.parameter_names if p not in params.columns]
    if missing:
        raise ValueError(f"parameter table lacks columns {missing} needed by simulator {simulator.name!r}")
    params = params[list(simulator.parameter_names)]
    seeds = sample_seeds(seed, len(params))
    layout = choose_layout(simulator, len(params), samples_per_chunk, samples_per_shard)
    if not path.exists():
        create_store(path, simulator, params, seeds, layout, compression)
        return params, layout, seeds, np.zeros(len(params), dtype=bool)
    ds = open_store(path)
    layout = layout_of(ds) if samples_per_chunk is None and samples_per_shard is None else layout
    if ds.attrs.get("config_fingerprint") != fingerprint(simulator, params, seeds, layout):
        raise StoreMismatchError(
            f"{path} was made by a different simulator config, parameter table, seed or chunking; "
            "refusing to resume into it (use a new path or delete it)"
        )
    _clean_partial_files(path)
    return params, layout, seeds, ds["done"].values


def generate(
    simulator: Simulator,
    params: pd.DataFrame,
    store: str | Path,
    client: Any = None,
    *,
    seed: int = 0,
    samples_per_chunk: int | None = None,
    samples_per_shard: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    retries: int = 3,
    progress: bool = True,
) -> GenerationReport:
    """Fill ``store`` with one simulated sample per row of ``params``.

    Parameters
    ----------
    simulator
        Any :class:`~popstore.Simulator`.
    params
        One row per sample, one column per simulator parameter
        (see :func:`popstore.priors.sample_table`).
    store
        Path of the Zarr store. A new path is created; an existing store made
        by the same simulator, config, table, seed and chunking is resumed.
    client
        A ``distributed.Client`` (e.g. on a dask-jobqueue SLURM/PBS cluster);
        ``None`` starts a ``LocalCluster`` with one single-threaded worker
        process per core for the duration of the call.
    seed
        Master seed; sample ``i`` is simulated with ``seed(sample=i)``
        derived from it, whatever worker runs it.
    samples_per_chunk, samples_per_shard
        Override the automatic layout (see :func:`popstore.store.choose_layout`).
    compression
        Codec of the outputs: ``"lz4"`` (default), ``"zstd"`` or ``"none"``
        (see :data:`popstore.store.COMPRESSION`).
    retries
        Times Dask reruns a task whose worker died.
    progress
        Show a progress bar of samples done.
    """
    path = Path(store)
    params, layout, seeds, done = prepare_store(simulator, params, path, seed, samples_per_chunk, samples_per_shard,
                                                compression)
    todo = [b for b in layout.blocks() if not done[b].all()]
    n_skipped = int(done.sum())
    report = GenerationReport(path, layout.n_samples, n_skipped, 0)
    if not todo:
        return report
    failures: list[dict] = []
    bar = tqdm(total=layout.n_samples, initial=n_skipped, unit="sample", desc=simulator.name, disable=not progress)
    with _client(client, len(todo)) as c:
        from distributed import as_completed

        sim_future = put(c, simulator)
        futures = {
            c.submit(_write_block, sim_future, str(path), b, params.iloc[b], seeds[b], retries=retries, pure=False): b
            for b in todo
        }
        for fut in as_completed(futures):
            b = futures.pop(fut)  # forget it: a result kept on a worker that leaves would be recomputed
            try:
                block_failures = fut.result()
            except Exception as exc:  # the task died for good (e.g. KilledWorker): nothing of it is done
                block_failures = [
                    {"sample": i, "seed": int(seeds[i]), "error": f"task failed: {type(exc).__name__}: {exc}"}
                    for i in range(b.start, b.stop) if not done[i]
                ]
            failures.extend(block_failures)
            n_new = (b.stop - b.start) - len(block_failures) - int(done[b].sum())
            report.n_written += n_new
            bar.update(n_new)
    bar.close()
    if failures:
        report.failed = pd.DataFrame(failures).sort_values("sample", ignore_index=True)
        log.warning("%d samples failed; see GenerationReport.failed:\n%s", len(failures), report.failed.to_string(index=False))
    return report
