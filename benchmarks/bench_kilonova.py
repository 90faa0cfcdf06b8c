"""DU17 kilonova emulator benchmark: held-out accuracy and speed-up against the model.

Runs the whole kilonova pipeline in one go on a fresh store:

1. ``n`` ordered binaries -> DU17 g, r, i, z light curves (0-11 d, 0.01 d) into a Zarr
   store with ``popstore.generate`` on a LocalCluster, split 80/10/10;
2. train the joint conditional RealNVP emulator on the 10-point downsampled,
   NaN-filled curves (model-evolution snapshots in ``OUT/snapshots``);
3. print the median and 90th-percentile absolute magnitude error per band on the
   held-out test split, at the times where DU17 is defined;
4. time the emulator and DU17 on the same binaries and print speed-ups:
   vs our vectorised DU17 (full grid and emulator times only), vs DU17 called
   once per binary, and, with ``--gwem-src``, vs the gwemlightcurves
   per-time-step loop the research code ran (KilonovaML: ~0.15 s per curve).

    nice -n 10 .venv/bin/python benchmarks/bench_kilonova.py [--n 6000] [--epochs 150] [--gwem-src DIR]

All timings are single-threaded (torch and numpy on one core) in the same process.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from popstore.generation import generate
from popstore.estimators.emulator import EmulatorConfig
from popstore.kilonova.dataset import load_curves
from popstore.kilonova.params import LABELS, binary_table
from popstore.kilonova.reference import gwemlightcurves_curve, load_gwemlightcurves_du17
from popstore.kilonova.workflow import evaluate, example_figure, label_log_flags, time_models, train_from_store
from popstore.simulators import get_simulator
from popstore.splits import split
from popstore.store import open_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000, help="binaries in the store")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--n-draws", type=int, default=100, help="emulator draws per binary (KilonovaML timed 100)")
    ap.add_argument("--n-timing", type=int, default=1000, help="binaries timed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gwem-src", type=Path, help="unpacked gwemlightcurves sdist, for the research-loop timing")
    ap.add_argument("--out", type=Path, default=Path("out/bench_kilonova"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    store = args.out / "kilonova.zarr"
    shutil.rmtree(store, ignore_errors=True)
    sim = get_simulator("kilonova_du17")
    table = binary_table(args.n, seed=1, design="latin_hypercube")
    t0 = time.perf_counter()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        report = generate(sim, table, store, c, seed=0, samples_per_chunk=250, progress=False)
    print(f"generate: {report} in {time.perf_counter() - t0:.1f} s")
    split(store, test=0.1, valid=0.1, seed=1)

    cfg = EmulatorConfig(epochs=args.epochs, hidden=args.hidden, lr_step=max(1, args.epochs // 3))
    t0 = time.perf_counter()
    emu, hist = train_from_store(store, cfg, LABELS, 120, args.out / "snapshots", max(1, args.epochs // 6),
                                 progress=False, coverage=None)  # the KilonovaML-like baseline: T = 1
    print(f"train: {time.perf_counter() - t0:.1f} s, best epoch {hist.best_epoch + 1}/{args.epochs}, "
          f"valid NLL {hist.valid_loss[hist.best_epoch]:.2f}; log labels {label_log_flags(store, LABELS)}")
    emu.save(args.out / "emulator.pt")

    test = load_curves(store, "test", LABELS)
    print(f"\nheld-out test split: {len(test)} binaries ({test.n_dropped} dropped: a band without any valid point)")
    results = evaluate(emu, test, n_draws=args.n_draws)
    for name, stats in results.items():
        print(f"|emulator - DU17| [mag] at defined times, {name}:")
        print(stats.rename(columns={"q50": "median", "q90": "p90"}).to_string(float_format="%.4f"))
    print(f"example figure: {example_figure(emu, test, args.out / 'heldout.png')}")

    ds = open_store(store)
    timing = pd.DataFrame({c: ds[c].values[: args.n_timing] for c in LABELS})
    loop_ref = None
    if args.gwem_src is not None:
        curve = gwemlightcurves_curve(*load_gwemlightcurves_du17(args.gwem_src))
        loop_ref = lambda r: curve(r.m1, r.m2, r.lambda1, r.lambda2)  # noqa: E731
    times = time_models(emu, sim, timing, n_draws=args.n_draws, loop_reference=loop_ref, n_loop=30)
    print(f"\ntiming on {len(timing)} binaries, one core; seconds per light curve (4 bands):")
    emu_t = times["emulator"]
    for k, v in times.items():
        print(f"  {k:32s} {v:.3e} s   speed-up of the emulator ({args.n_draws} draws/binary) vs this: {v / emu_t:9.2f}x")
    print(f"  speed-up with 1 draw per binary vs vectorised DU17: {times['du17_vectorised'] / times['emulator_1draw']:.2f}x")
    errs = results["single draw"]
    print("\nSUMMARY  single draw: " + "  ".join(f"{b}: med {errs.loc[b, 'q50']:.3f} p90 {errs.loc[b, 'q90']:.3f} mag"
                                    for b in errs.index))
    print("SUMMARY  speed-up vs vectorised DU17 %.2fx, vs per-curve DU17 %.1fx%s" % (
        times["du17_vectorised"] / emu_t, times["du17_per_curve_loop"] / emu_t,
        f", vs gwemlightcurves loop {times['research_loop'] / emu_t:.0f}x" if "research_loop" in times else ""))


if __name__ == "__main__":
    main()
