"""YMW16 DM: cached grid + trilinear interpolation vs direct YMW16 calls (speed ratio and error).

    python benchmarks/bench_dm_grid.py [--preset default] [--n 2000] [--cache-dir DIR]

Prints the time per star of direct ``ymw16.dmdtau`` calls and of the grid, their ratio
(measured in the same run), and the interpolation error on random lines of sight:
all sky (d < 35 kpc) and the plane (|b| < 5 deg, d < 15 kpc) where most detected pulsars lie.
The first run computes the grid (default preset: ~7e5 YMW16 calls, a few minutes) and caches it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from popstore.pulsars.dm import DMGrid, interpolation_error, ymw16_dm_direct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=("coarse", "default"))
    ap.add_argument("--n", type=int, default=2000, help="random points compared with direct calls")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    grid = DMGrid.load(args.preset, args.cache_dir)
    rng = np.random.default_rng(0)
    l, b, d = rng.uniform(-180, 180, args.n), rng.uniform(-90, 90, args.n), rng.uniform(0.05, 35, args.n)
    t0 = time.perf_counter()
    ymw16_dm_direct(l, b, d)
    t_direct = (time.perf_counter() - t0) / args.n
    big = 200_000
    lb, bb, db = rng.uniform(-180, 180, big), rng.uniform(-90, 90, big), rng.uniform(0.05, 35, big)
    t0 = time.perf_counter()
    grid(lb, bb, db)
    t_grid = (time.perf_counter() - t0) / big
    print(f"grid '{args.preset}' {grid.dm.shape} (l, b, d) nodes; {grid.attrs.get('implementation')}")
    print(f"direct YMW16: {t_direct * 1e6:.1f} us/star; grid: {t_grid * 1e6:.3f} us/star; speed-up x{t_direct / t_grid:.0f}")
    for label, kw in (("all sky, d < 35 kpc", {}), ("plane |b| < 5 deg, d < 15 kpc", {"b_max": 5.0, "d_max": 15.0})):
        e = interpolation_error(grid, args.n, rng, **kw)
        print(f"{label}: |dDM| median {e['abs_median']:.3g}, p95 {e['abs_p95']:.3g}, p99 {e['abs_p99']:.3g} pc cm^-3; "
              f"relative median {e['rel_median']:.2%}, p95 {e['rel_p95']:.2%}, p99 {e['rel_p99']:.2%}")


if __name__ == "__main__":
    main()
