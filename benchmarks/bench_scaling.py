"""Scaling of ``popstore.generate`` with the number of workers, measured and projected.

The simulator is ``tests/sleep_simulator.py``'s ``Sleep``: each sample costs a
fixed ``--delay`` seconds of sleep, so that up to 64 workers (threads, which
sleep without the GIL, in ``--processes`` worker processes) fit on 2 cores and
the ideal rate is exactly ``workers / delay`` samples/s. For each worker count
the store holds ``--waves`` blocks per worker (weak scaling) and the table
reports

- samples/s measured and ideal, and the efficiency (ideal time / wall time;
  the wall time includes writing the store template and every block);
- the cost of the machinery per task: lost worker time per task,
  ``(workers * wall - samples * delay) / tasks``;
- the scheduler's own cost per task: wall time of 2,000 empty tasks through
  the same cluster, divided by 2,000;
- the CPU time per task of the driver (client and scheduler) and the worker
  processes together: sleeping costs none, so this is all bookkeeping,
  result transfer and writing. Here every worker shares the machine's cores,
  and the tasks of a wave all end together, so that CPU time is paid in a
  burst at each wave's end: the lost time per task grows with the workers.
  On a cluster each worker has its own core and only the scheduler's share
  is serial.

Then, on the largest cluster: the store's write throughput (the same pipeline
with no sleep and ``--npix-write`` maps: bytes written / wall time, and the
write time per block), the driver's memory per submitted task (resident
memory of this process, which holds the client and, as on SLURM, the
scheduler, sampled while generating a store of 1-sample blocks), the metadata
(Zarr ``zarr.json`` files and per-sample labels, seeds and flags) per sample,
and a projection to 1,000 workers and 10^7 samples: the block duration ``T``
that keeps the overhead ``(workers * c_sched + c_block) / T`` below 5 %, the
samples per chunk that gives for simulations of 0.1 s, 1 s and 10 s, and the
tasks, chunk files, metadata and driver memory that follow.

    python benchmarks/bench_scaling.py [--workers 1 2 4 8 16 32 64] [--delay 1.0] [--samples-per-chunk 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from sleep_simulator import Sleep  # noqa: E402

import popstore  # noqa: E402
from popstore.cluster import cluster_client  # noqa: E402

TARGET_OVERHEAD = 0.05
PROJECT_WORKERS, PROJECT_SAMPLES = 1000, 10**7


def _noop(i: int) -> int:
    return i


def _warm() -> None:
    """Import what a generation task needs, so that the timing is not of worker start-up."""
    import xarray  # noqa: F401
    import zarr  # noqa: F401


@contextlib.contextmanager
def cluster(workers: int, processes: int):
    """popstore's LocalCluster of ``workers`` threads spread over at most ``processes`` processes, warmed up."""
    n_proc = min(workers, processes)
    cfg = {"kind": "local", "n_workers": n_proc, "threads_per_worker": workers // n_proc, "processes": True,
           "dashboard_address": None}
    with cluster_client(cfg) as client:
        client.run(_warm)
        yield client


def cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds of this process and of each of its children, by pid."""
    procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
    return {p.pid: sum(p.cpu_times()[:2]) for p in procs}


def run_generate(client, sim: Sleep, n_samples: int, chunk: int, path: Path) -> float:
    params = sim.parameter_table(n_samples, seed=1)
    t0 = time.perf_counter()
    report = popstore.generate(sim, params, path, client, seed=0, samples_per_chunk=chunk, progress=False)
    wall = time.perf_counter() - t0
    assert report.complete and report.n_written == n_samples, report
    return wall


def scheduler_cost(client, n: int = 2000) -> float:
    """Seconds per empty task through the scheduler (submit, run, gather)."""
    t0 = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return (time.perf_counter() - t0) / n


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def metadata_bytes(path: Path) -> tuple[int, int]:
    """(bytes of zarr.json files, bytes of the per-sample variables other than the simulator outputs)."""
    meta = sum(p.stat().st_size for p in path.rglob("zarr.json"))
    outputs = {"map"}
    small = sum(p.stat().st_size for d in path.iterdir() if d.is_dir() and d.name not in outputs
                for p in d.rglob("*") if p.is_file() and p.name != "zarr.json")
    return meta, small


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--delay", type=float, default=1.0, help="seconds of sleep per sample")
    ap.add_argument("--samples-per-chunk", type=int, default=8)
    ap.add_argument("--waves", type=int, default=3, help="blocks per worker")
    ap.add_argument("--processes", type=int, default=4, help="worker processes (the workers are their threads)")
    ap.add_argument("--npix", type=int, default=16, help="map side of the scaling runs")
    ap.add_argument("--npix-write", type=int, default=128, help="map side of the write-throughput run")
    ap.add_argument("--memory-tasks", type=int, default=3000, help="1-sample blocks of the driver-memory run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    chunk = args.samples_per_chunk
    rows = []
    try:
        # first, while this process has freed nothing it could reuse: driver memory per submitted task
        with cluster(max(args.workers), args.processes) as client, PeakRSS() as rss:
            m = args.memory_tasks
            run_generate(client, Sleep(npix=4, delay=0.0), m, 1, tmp / "memory.zarr")
        per_task = (rss.peak - rss.base) / m
        print(f"{psutil.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"sleep {args.delay} s/sample, {chunk} samples/block, {args.waves} blocks per worker, "
              f"workers = threads in <= {args.processes} processes\n")
        print(f"{'workers':>7} {'samples':>7} {'tasks':>6} {'wall s':>7} {'samples/s':>9} {'ideal':>7} "
              f"{'efficiency':>10} {'lost s/task':>11} {'sched ms/task':>13} {'cpu ms/task':>11}")
        for w in args.workers:
            with cluster(w, args.processes) as client:
                n = w * args.waves * chunk
                cpu0 = cpu_seconds()
                wall = run_generate(client, Sleep(npix=args.npix, delay=args.delay), n, chunk, tmp / f"w{w}.zarr")
                cpu1 = cpu_seconds()
                sched = scheduler_cost(client)
            tasks = n // chunk
            ideal = n * args.delay / w
            lost = (w * wall - n * args.delay) / tasks
            cpu = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1) / tasks  # sleeping costs none: all of it is overhead
            rows.append((w, wall, ideal, lost, sched))
            print(f"{w:>7} {n:>7} {tasks:>6} {wall:>7.2f} {n / wall:>9.2f} {w / args.delay:>7.2f} "
                  f"{ideal / wall:>10.3f} {lost:>11.3f} {sched * 1e3:>13.2f} {cpu * 1e3:>11.0f}")
            shutil.rmtree(tmp / f"w{w}.zarr")

        w = max(args.workers)
        with cluster(w, args.processes) as client:
            n = w * args.waves * chunk
            path = tmp / "write.zarr"
            wall = run_generate(client, Sleep(npix=args.npix_write, delay=0.0), n, chunk, path)
            data = sum(p.stat().st_size for p in (path / "map").rglob("*") if p.is_file())
            raw = n * args.npix_write**2 * 4
            block_write = wall * min(w, psutil.cpu_count()) / (n // chunk)
            meta, small = metadata_bytes(path)
            files_per_block = sum(1 for p in path.rglob("*") if p.is_file() and p.name != "zarr.json") / (n // chunk)
            shutil.rmtree(path)
            sched = scheduler_cost(client)
        print(f"\nwrite throughput ({w} workers, no sleep, {args.npix_write}x{args.npix_write} float32 maps): "
              f"{raw / wall / 2**20:.1f} MiB/s of maps ({data / wall / 2**20:.1f} MiB/s compressed), "
              f"{n / wall:.0f} samples/s; {block_write * 1e3:.0f} ms of a core per {chunk}-sample block")
        print(f"driver memory: {per_task / 1024:.1f} KiB per submitted task "
              f"(peak {rss.peak / 2**20:.0f} MiB over {rss.base / 2**20:.0f} MiB for {m} tasks)")
        print(f"metadata: {meta / 1024:.1f} KiB of zarr.json (independent of the sample count), "
              f"{small / n:.1f} B per sample of labels, seeds and flags; {files_per_block:.0f} chunk files per block")
        c_block = max(r[3] for r in rows)  # lost worker seconds per task, worst measured
        T = (PROJECT_WORKERS * sched + c_block) / TARGET_OVERHEAD
        print(f"\nprojection to {PROJECT_WORKERS} workers and {PROJECT_SAMPLES:.0e} samples "
              f"(scheduler {sched * 1e3:.2f} ms/task, {c_block:.3f} s lost per block): blocks must last "
              f">= {T:.0f} s for < {TARGET_OVERHEAD:.0%} overhead")
        print(f"{'s/sample':>8} {'samples/chunk':>13} {'tasks':>8} {'chunk files':>11} {'metadata MiB':>12} "
              f"{'driver MiB':>10} {'hours':>6}")
        for t_sample in (0.1, 1.0, 10.0):
            spc = int(np.ceil(T / t_sample))
            tasks = int(np.ceil(PROJECT_SAMPLES / spc))
            files = int(tasks * files_per_block)
            meta_mib = (meta + small / n * PROJECT_SAMPLES) / 2**20
            driver_mib = (rss.base + per_task * tasks) / 2**20
            hours = PROJECT_SAMPLES * t_sample / PROJECT_WORKERS / 3600 / (1 - TARGET_OVERHEAD)
            print(f"{t_sample:>8} {spc:>13} {tasks:>8} {files:>11} {meta_mib:>12.0f} {driver_mib:>10.0f} {hours:>6.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
