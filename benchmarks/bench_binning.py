"""Speed of map binning: ``popstore.maps.binned_map`` (fast-histogram, exact near edges) vs the previous
``bin_index`` + ``bincount`` path and ``numpy.histogram2d``, all measured in the same run on the same points.

Two maps like the pulsar ones: a linear x-y map (kpc, 256 x 256 bins) and a log P-Pdot map (64 x 64
bins), ``--n`` points each (default 1e6); the median of ``--reps`` timings of each method is printed
with the ratios, after checking that every method gives identical counts. The methods take turns in
each round, so the load of a shared machine falls on all of them alike.

    OMP_NUM_THREADS=1 python benchmarks/bench_binning.py --n 1000000 --reps 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fast_histogram import histogram2d as fast_histogram2d

from popstore.maps import bin_index, binned_map
from popstore.simulator import Axis


def bincount_map(x: np.ndarray, y: np.ndarray, xa: Axis, ya: Axis) -> np.ndarray:
    """The previous implementation: exact bin indices per axis, then one ``bincount``."""
    ix, iy = bin_index(x, xa), bin_index(y, ya)
    ok = (ix >= 0) & (iy >= 0)
    return np.bincount(iy[ok] * len(xa) + ix[ok], minlength=len(xa) * len(ya)).astype(float).reshape(len(ya), len(xa))


def median_times(methods: dict, reps: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Median time of each method over ``reps`` rounds; the methods take turns within a round, so load
    from other processes on a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in methods}
    out = {}
    for _ in range(reps):
        for name, f in methods.items():
            t0 = time.perf_counter()
            out[name] = f()
            times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = {
        "x-y map, linear 256x256": (rng.normal(0, 6, args.n), rng.normal(0, 6, args.n),
                                    Axis.linear("x", -20, 20, 256), Axis.linear("y", -20, 20, 256)),
        "P-Pdot map, log 64x64": (10 ** rng.normal(-0.5, 0.5, args.n), 10 ** rng.normal(-15, 1.5, args.n),
                                  Axis("p", edges=np.geomspace(1e-3, 30, 65), log=True),
                                  Axis("pdot", edges=np.geomspace(1e-21, 1e-9, 65), log=True)),
    }
    for name, (x, y, xa, ya) in cases.items():
        ux, uy = (np.log(x), np.log(y)) if xa.log else (x, y)
        lim = [(np.log(a.bin_edges[0]), np.log(a.bin_edges[-1])) if a.log else (a.bin_edges[0], a.bin_edges[-1])
               for a in (ya, xa)]
        t, out = median_times({
            "new": lambda: binned_map(x, y, xa, ya, smooth_sigma=0),
            "old": lambda: bincount_map(x, y, xa, ya),
            "np": lambda: np.histogram2d(x, y, bins=[xa.bin_edges, ya.bin_edges])[0].T,
            "raw": lambda: fast_histogram2d(uy, ux, bins=(len(ya), len(xa)), range=lim),
        }, args.reps)
        t_new, t_old, t_np, t_raw = t["new"], t["old"], t["np"], t["raw"]
        new, old, ref = out["new"], out["old"], out["np"]
        if not (np.array_equal(new, ref) and np.array_equal(old, ref)):
            raise SystemExit(f"{name}: counts differ between methods")
        print(f"{name}, {args.n:,} points (median of {args.reps}): binned_map {t_new * 1e3:.1f} ms, "
              f"bin_index+bincount {t_old * 1e3:.1f} ms, np.histogram2d {t_np * 1e3:.1f} ms, "
              f"raw fast_histogram (no edge correction{', log precomputed' if xa.log else ''}) {t_raw * 1e3:.1f} ms")
        print(f"  binned_map is {t_old / t_new:.1f}x faster than bincount, {t_np / t_new:.1f}x faster than "
              f"np.histogram2d; identical counts")


if __name__ == "__main__":
    main()
