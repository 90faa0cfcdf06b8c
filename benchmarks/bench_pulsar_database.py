"""Cost of one detection-driven pulsar population: simulated dynamics vs the dynamics database.

Builds a ``pulsar_dynamics`` database (:mod:`popstore.pulsars.dynamics_db`) with
:func:`popstore.generate` on one single-threaded worker, large enough for the birth-rate cap
(``max_birth_rate x age_max_yr / 100`` stars: 1.5e6 at the defaults), then simulates
``--n-populations`` ``pulsar_surveys`` populations at the Graber et al. (2024) posterior
medians with the paper targets, alternately by the direct path (every batch's dynamics
simulated) and by the database path, in the same process, and prints the CPU seconds
(``time.process_time``, one thread: seconds on one core) and wall seconds of each. The
research code's cost of one magneto-rotational + detection simulation (~1300-1840 s of
CPU, reference/pulsars.md; not run here) is printed beside them.

    OMP_NUM_THREADS=1 python benchmarks/bench_pulsar_database.py --n-populations 3
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import popstore  # noqa: E402
from popstore.pulsars.dm import DMGrid  # noqa: E402
from popstore.pulsars.dynamics_db import PulsarDynamics  # noqa: E402
from popstore.simulators import get_simulator  # noqa: E402

GRABER = {"mu_logB": 13.10, "sigma_logB": 0.45, "mu_logP": -1.00, "sigma_logP": 0.38, "a_late": -1.80,
          "L_radio_log10_mean": 26.17, "epsilon_L": 0.68}
RESEARCH_CODE_S = (1300.0, 1840.0)  # CPU s per magneto-rotational + detection simulation (reference/pulsars.md)


def timed(func, *args):
    t0, c0 = time.perf_counter(), time.process_time()
    out = func(*args)
    return out, time.process_time() - c0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-populations", type=int, default=3, help="populations per path")
    ap.add_argument("--stars-per-block", type=int, default=100_000)
    ap.add_argument("--max-birth-rate", type=float, default=5.0, help="per century; sets the database size")
    ap.add_argument("--database", default=None, help="database path (kept, and reused when complete); "
                                                     "default: a temporary directory")
    ap.add_argument("--dm-grid", default="default", choices=("coarse", "default"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    DMGrid.load(args.dm_grid, progress=False)  # cached once, outside the timings
    tmp = tempfile.TemporaryDirectory(prefix="bench-pulsar-db-")
    path = Path(args.database or Path(tmp.name) / "dynamics.zarr")
    dyn = PulsarDynamics(stars_per_block=args.stars_per_block)
    n_blocks = math.ceil(args.max_birth_rate * dyn.pulsar.age_max_yr / 100.0 / args.stars_per_block)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        report, cpu, wall = timed(lambda: popstore.generate(dyn, dyn.parameter_table(n_blocks), path, client,
                                                            seed=args.seed, samples_per_chunk=1, progress=False))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"dynamics database: {n_blocks} blocks x {args.stars_per_block:,} stars, {report.n_written} built now "
          f"({report.n_skipped} reused) in {cpu:.1f} s CPU / {wall:.1f} s wall; {size / 2**20:.0f} MiB on disk")
    if report.n_written:
        per_block = cpu / report.n_written
        print(f"  build cost {per_block * 1e5 / args.stars_per_block:.2f} s CPU per 100,000 stars "
              f"-> {per_block * 1e7 / args.stars_per_block / 60:.0f} min CPU for the papers' 1e7 stars, once")

    common = dict(dm_grid=args.dm_grid, max_birth_rate=args.max_birth_rate, on_birth_rate_exceeded="flag")
    sims = {"direct": get_simulator("pulsar_surveys", **common),
            "database": get_simulator("pulsar_surveys", dynamics_database=str(path), **common)}
    rows: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sims}
    print(f"\n{'population':>10s} {'path':>9s} {'CPU s':>8s} {'wall s':>8s} {'stars drawn':>12s} {'detected':>22s}")
    for i in range(args.n_populations):
        for name, sim in sims.items():  # alternate, so both paths see the same machine load
            out, cpu, wall = timed(sim.simulate, GRABER, args.seed + 1000 + i)
            rows[name].append((cpu, wall, int(out["n_created"])))
            print(f"{i:>10d} {name:>9s} {cpu:8.2f} {wall:8.2f} {int(out['n_created']):>12,} "
                  f"{str(out['n_detected'].tolist()):>22s}", flush=True)
    med = {k: np.median(np.array(v), axis=0) for k, v in rows.items()}
    print(f"\nmedian per population, one core: direct {med['direct'][0]:.2f} s CPU ({med['direct'][1]:.2f} s wall), "
          f"database {med['database'][0]:.2f} s CPU ({med['database'][1]:.2f} s wall): "
          f"{med['direct'][0] / med['database'][0]:.1f}x faster (target <= 5 s)")
    lo, hi = RESEARCH_CODE_S
    print(f"research code (ML-Poppyns-Open), quoted: {lo:.0f}-{hi:.0f} s CPU per simulation -> database path "
          f"{lo / med['database'][0]:,.0f}-{hi / med['database'][0]:,.0f}x faster, direct path "
          f"{lo / med['direct'][0]:,.0f}-{hi / med['direct'][0]:,.0f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
