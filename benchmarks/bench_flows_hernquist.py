"""Hernquist benchmark of the CBE acceleration method (An et al. 2021, arXiv:2106.05981).

Prints, for the isotropic Hernquist sphere (M = 1e10 Msun, a = 5 kpc):
1. the relative acceleration error with the *exact* DF (tests the method);
2. the same with each flow of an ensemble trained on a noiseless mock, and with
   the ensemble-averaged DF (median, 90th percentile, max over 50 positions
   from 0.4 a to 20 a on the x axis, 1,000 velocities each, the paper's scheme);
3. timings (sampling, training per member, accelerations).

Run:  nice -n 10 .venv/bin/python benchmarks/bench_flows_hernquist.py --n-stars 100000 --members 3 --epochs 40
Trained flows go to --out (reused on a rerun unless --retrain).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from popstore.galaxy.dynamics.acceleration import cbe_acceleration, evaluation_velocities
from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.estimators.flows import FlowConfig, load_flow
from popstore.estimators.flows_ensemble import (
    FlowEnsemble,
    phase_space_log_df,
    train_ensemble,
)


def errors(acc: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(acc - truth, axis=1) / np.linalg.norm(truth, axis=1)


def summary(name: str, err: np.ndarray) -> str:
    return f"{name:<28s} median {100 * np.median(err):6.2f}%  p90 {100 * np.percentile(err, 90):6.2f}%  max {100 * err.max():6.2f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-stars", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--lr-patience", type=int, default=5)
    ap.add_argument("--transform", choices=["affine", "spline"], default="affine")
    ap.add_argument("--out", default="out/flows_hernquist")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h = Hernquist(1e10, 5.0)
    a = h.scale_radius

    pos = np.zeros((50, 3))
    pos[:, 0] = np.geomspace(0.4, 20, 50) * a
    vel = evaluation_velocities(pos, h.escape_speed(pos[:, 0]), 1000, np.random.default_rng(42))
    xt, vt = torch.tensor(pos), torch.tensor(vel)
    truth = h.acceleration(pos)

    t = time.perf_counter()
    exact = cbe_acceleration(lambda x, v: h.log_df(x, v, "isotropic"), xt, vt).numpy()
    t_exact = time.perf_counter() - t
    print(summary("exact DF", errors(exact, truth)), f"  ({t_exact:.2f} s for 50 x 1000)")

    t = time.perf_counter()
    x, v = h.sample(args.n_stars, np.random.default_rng(0), "isotropic", r_max=200 * a)
    print(f"sampling {args.n_stars} stars: {time.perf_counter() - t:.2f} s")
    r = np.linalg.norm(x, axis=1)
    ks = stats.kstest(r, lambda rr: h.mass_fraction(rr) / h.mass_fraction(200 * a))
    print(f"KS test of radii against M(<r) = M r^2/(r+a)^2 (truncated at 200 a): D = {ks.statistic:.4f}, p = {ks.pvalue:.3f}")

    cfg = FlowConfig(transform=args.transform, batch_size=args.batch_size, max_epochs=args.epochs,
                     valid_fraction=0.1, early_stopping_patience=10, lr_patience=args.lr_patience)
    out = Path(args.out) / f"{args.transform}_n{args.n_stars}_e{args.epochs}_p{args.lr_patience}"
    seeds = list(range(args.members))
    scale = np.r_[[10 * a] * 3, [np.sqrt(2 * h.gm / a)] * 3]  # the papers' rescaling
    todo = [s for s in seeds if args.retrain or not (out / f"seed_{s}" / "checkpoint.pt").exists() or not (out / f"seed_{s}" / "losses.csv").exists()]
    if todo:
        t = time.perf_counter()
        res = train_ensemble(np.hstack([x, v]), cfg, todo, out, rescaling=(np.zeros(6), scale), progress=False)
        dt = time.perf_counter() - t
        for r in res:
            print(f"trained seed {r.seed}: {len(r.losses)} epochs, best epoch {r.best_epoch}, best valid NLL {r.losses.valid.min():.4f}")
        print(f"training {len(todo)} flows: {dt:.1f} s ({dt / len(todo):.1f} s per flow, {args.threads} thread(s))")

    members = [load_flow(out / f"seed_{s}") for s in seeds]
    t = time.perf_counter()
    for s, m in zip(seeds, members):
        print(summary(f"flow seed {s}", errors(cbe_acceleration(phase_space_log_df(m), xt, vt).detach().numpy(), truth)))
    for k in range(2, len(members) + 1):
        ens = FlowEnsemble(members[:k])
        print(summary(f"ensemble of {k}", errors(cbe_acceleration(phase_space_log_df(ens), xt, vt).detach().numpy(), truth)))
    print(f"flow accelerations: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
