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

A sample whose simulation raises, or returns NaN/inf in an output declared
finite (:attr:`popstore.Output.finite`), is left ``done=False`` (its maps
hold the fill value) and reported by index and seed; the rest of its block is
written. A task whose worker dies (a segfaulting simulator) is retried by
Dask; only that block is lost if it keeps killing workers (the simulator
reaches the workers as a task result, which the scheduler recomputes, never
as scattered data that a dead worker takes with it), and its samples are
reported by index and seed.

Safety: the parameter table is checked against the priors before anything
runs (:func:`popstore.priors.check_table`); one writer at a time holds
``<store>.lock`` (:class:`popstore.lock.StoreLock`); the template is created
atomically (:func:`popstore.store.create_store`); on resume, blocks marked
done whose chunk files are missing are remade (the cheap part of
:func:`popstore.verify.verify`).
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
from popstore.codecs import CorruptChunkError
from popstore.lock import DEFAULT_STALE_AFTER, NoLock, StoreLock
from popstore.priors import check_table
from popstore.simulator import Simulator
from popstore.store import (
    DEFAULT_COMPRESSION,
    Layout,
    auto_compression,
    check_compression,
    StoreMismatchError,
    choose_layout,
    create_store,
    fingerprint,
    layout_of,
    open_store,
    sample_seeds,
    store_exists,
    store_location,
)
from popstore.verify import blocks_missing_chunks, clear_done

log = logging.getLogger(__name__)


@dataclass
class GenerationReport:
    """What a :func:`generate` call did.

    ``failed`` has one row per sample that is still not done after this call:
    ``sample`` (index), ``seed`` and ``error``.
    """

    store: str | Path
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
            finite = simulator.finite_rows(out, batched=True)
            ok = np.logical_and.reduce([np.ones(n, dtype=bool), *finite.values()])
            failures = [
                {"sample": start + j, "seed": int(seeds[j]),
                 "error": f"ValueError: {simulator.name}: non-finite values (NaN or inf) in outputs "
                          f"{[k for k, v in finite.items() if not v[j]]} declared finite"}
                for j in np.flatnonzero(~ok)
            ]
            for o in simulator.outputs:  # failed rows hold the fill value, as in the per-sample path
                out[o.name][~ok] = _fill(np.dtype(o.dtype))
            return out, ok, failures
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
    values = {o.name: stacks[o.name] for o in simulator.outputs}
    # labels and seeds too, so that a block whose label chunk was damaged is remade whole (popstore.verify)
    values.update({name: params[name].to_numpy(dtype=np.float64) for name in params.columns})
    values["seed"] = np.asarray(seeds, dtype=np.int64)
    # straight into the arrays the template made (one read of the consolidated metadata): writing through
    # xarray re-read every array's metadata twice per block, the bottleneck of many workers (bench_scaling.py);
    # empty chunks are written too, so that a missing chunk file always means damage (popstore.verify)
    with zarr.config.set({"array.write_empty_chunks": True}):
        group = zarr.open_group(store_location(path), mode="r+", zarr_format=3)
        for name, v in values.items():
            group[name][block] = v
        group["done"][block] = ok  # last: it vouches for the maps above
    return failures


def _probe_compression(simulator: Simulator, params: pd.DataFrame, seeds: np.ndarray) -> dict[str, str]:
    """One Dask task: simulate the first sample and pick each output's codec (:func:`popstore.store.auto_compression`)."""
    stacks, ok, _ = simulate_block(simulator, params.iloc[:1], seeds[:1], 0)
    if not ok[0]:
        raise ValueError("the first sample failed")
    return {o.name: auto_compression(stacks[o.name][0]) for o in simulator.outputs}


def resolve_compression(client: Any, simulator: Any, params: pd.DataFrame, seeds: np.ndarray) -> dict[str, str]:
    """What ``compression="auto"`` stores each output as: judged on the first sample, simulated once more
    on the cluster (a simulator that crashes takes down a worker, never the caller). If that sample
    fails, every output gets lz4 (what popstore wrote before ``"auto"``)."""
    try:
        return client.submit(_probe_compression, simulator, params, seeds, pure=False).result()
    except Exception as err:  # the probe is advisory: the blocks report the sample's failure properly
        log.warning("compression='auto': the first sample failed (%s: %s); storing every output with lz4",
                    type(err).__name__, err)
        return {}


def _client(client: Any, n_tasks: int) -> contextlib.AbstractContextManager:
    if client is not None:
        return contextlib.nullcontext(client)
    return cluster_client({"kind": "local", "n_workers": max(1, min(os.cpu_count() or 1, n_tasks))})


def _clean_partial_files(store: str | Path) -> None:
    """Remove the temp files a killed LocalStore writer leaves behind (never torn chunks)."""
    loc = store_location(store)
    if "://" in loc:  # object stores write whole objects
        return
    for p in Path(loc).rglob("*.partial"):
        p.unlink(missing_ok=True)


def checked_table(simulator: Simulator, params: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The parameter table in simulator order, checked against the priors, and the per-sample seeds."""
    params = params.reset_index(drop=True)
    missing = [p for p in simulator.parameter_names if p not in params.columns]
    if missing:
        raise ValueError(f"parameter table lacks columns {missing} needed by simulator {simulator.name!r}")
    params = params[list(simulator.parameter_names)]
    check_table(simulator.parameters, params)
    return params, sample_seeds(seed, len(params))


def prepare_store(
    simulator: Simulator,
    params: pd.DataFrame,
    seeds: np.ndarray,
    layout: Layout,
    store: str | Path,
    compression: str | dict[str, str] = "lz4",
    layout_given: bool = False,
) -> tuple[Layout, np.ndarray]:
    """Create ``store``'s template, or check that an existing one was made by the same run.

    ``params`` and ``seeds``: the checked table and its seeds (:func:`checked_table`); ``layout``: the
    layout of a new store, and of an existing one only if ``layout_given`` (else the store's own).
    ``compression``: a codec of :data:`popstore.store.COMPRESSION`, or one per output
    (:func:`resolve_compression`); it applies to a new store only. Returns the layout and the ``done`` flags.
    """
    path = store
    if not store_exists(path):
        create_store(path, simulator, params, seeds, layout, compression)
        return layout, np.zeros(len(params), dtype=bool)
    ds = open_store(path)
    layout = layout if layout_given else layout_of(ds)
    if ds.attrs.get("config_fingerprint") != fingerprint(simulator, params, seeds, layout):
        raise StoreMismatchError(
            f"{path} was made by a different simulator config, parameter table, seed or chunking; "
            "refusing to resume into it (use a new path or delete it)"
        )
    _clean_partial_files(path)
    try:
        done = ds["done"].values
    except CorruptChunkError as err:
        raise CorruptChunkError(f"{err}; run `popstore verify {path} --repair` first") from None
    if ds.attrs.get("chunks_always_written"):
        outputs = [o.name for o in simulator.outputs]
        missing = blocks_missing_chunks(path, outputs, layout, done)
        if missing:
            log.warning("%s: blocks %s are marked done but have missing chunks; remaking them", path, missing)
            clear_done(path, layout, missing)
            for b in missing:
                done[layout.blocks()[b]] = False
    return layout, done


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
    stale_lock_after: float = DEFAULT_STALE_AFTER,
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
        Path or fsspec URL (``s3://...``, ``memory://...``) of the Zarr store. A new
        store is created; an existing one made by the same simulator, config,
        table, seed and chunking is resumed. Every Dask worker must reach the
        location (``memory://`` only with a threaded client, ``Client(processes=False)``).
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
        Codec of the outputs of a new store: ``"auto"`` (default: per output, lz4 if it stores the
        first sample at least :data:`popstore.store.AUTO_MIN_RATIO` times smaller, else raw; that
        sample is simulated once more to decide, see :func:`resolve_compression`), ``"lz4"``,
        ``"zstd"`` or ``"none"`` (see :data:`popstore.store.COMPRESSION`). Every chunk ends in a
        ``crc32c`` checksum whatever the codec.
    retries
        Times Dask reruns a task whose worker died.
    progress
        Show a progress bar of samples done.
    stale_lock_after
        Seconds after which the lock of a writer on another host that stopped
        refreshing it is taken over (see :class:`popstore.lock.StoreLock`).

    Raises
    ------
    popstore.lock.StoreLockedError
        Another live process is writing ``store``.
    popstore.errors.UserError
        A parameter value is not finite or lies outside its prior.
    """
    loc = store_location(store)
    path = loc if "://" in loc else Path(loc)
    # object stores have no lock files (one writer per URL store is the user's to keep)
    with (StoreLock(path, stale_after=stale_lock_after) if isinstance(path, Path) else NoLock()) as lock:
        return _generate(simulator, params, path, client, lock, seed, samples_per_chunk, samples_per_shard,
                         compression, retries, progress)


def _generate(simulator: Simulator, params: pd.DataFrame, path: Path | str, client: Any, lock: StoreLock | NoLock,
              seed: int, samples_per_chunk: int | None, samples_per_shard: int | None, compression: str, retries: int,
              progress: bool) -> GenerationReport:
    check_compression(compression)
    params, seeds = checked_table(simulator, params, seed)  # refused before anything runs
    layout = choose_layout(simulator, len(params), samples_per_chunk, samples_per_shard)
    with contextlib.ExitStack() as stack:
        c = None
        if compression == "auto" and not store_exists(path):  # a resumed store keeps its codecs
            c = stack.enter_context(_client(client, len(layout.blocks())))
            compression = resolve_compression(c, simulator, params, seeds)
        layout, done = prepare_store(simulator, params, seeds, layout, path, compression,
                                     layout_given=samples_per_chunk is not None or samples_per_shard is not None)
        todo = [b for b in layout.blocks() if not done[b].all()]
        n_skipped = int(done.sum())
        report = GenerationReport(path, layout.n_samples, n_skipped, 0)
        if not todo:
            return report
        c = c or stack.enter_context(_client(client, len(todo)))
        return _run_blocks(c, simulator, path, lock, params, layout, seeds, done, todo, report, retries, progress)


def _run_blocks(c: Any, simulator: Simulator, path: Path | str, lock: StoreLock | NoLock, params: pd.DataFrame,
                layout: Layout, seeds: np.ndarray, done: np.ndarray, todo: list[slice], report: GenerationReport,
                retries: int, progress: bool) -> GenerationReport:
    """Simulate and write the blocks ``todo`` on client ``c``; failures go into ``report``."""
    failures: list[dict] = []
    bar = tqdm(total=layout.n_samples, initial=report.n_skipped, unit="sample", desc=simulator.name,
               disable=not progress)
    from distributed import KilledWorker, as_completed

    # the simulator as the result of a task, not scattered (popstore.cluster.put): a scattered copy dies with
    # its workers and cancels every task depending on it (one crashing sample cost 70 of 100 samples)
    sim = put(c, simulator)

    def submit(b: slice):
        return c.submit(_write_block, sim, str(path), b, params.iloc[b], seeds[b], retries=retries, pure=False)

    def finish(fut, b: slice) -> None:
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

    futures = {submit(b): b for b in todo}
    suspects = []
    for fut in as_completed(futures):
        lock.refresh()
        b = futures.pop(fut)  # forget it: a result kept on a worker that leaves would be recomputed
        if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
            suspects.append(b)
        else:
            finish(fut, b)
    # a dying worker takes down the blocks queued beside the one that killed it: each block whose workers all
    # died runs again alone, so that only a block that kills every worker it runs on fails
    for b in suspects:
        lock.refresh()
        fut = submit(b)
        finish(fut, b)
    bar.close()
    if failures:
        report.failed = pd.DataFrame(failures).sort_values("sample", ignore_index=True)
        log.warning("%d samples failed; see GenerationReport.failed:\n%s", len(failures), report.failed.to_string(index=False))
    return report
