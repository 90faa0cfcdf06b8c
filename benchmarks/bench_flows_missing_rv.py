"""Missing line-of-sight velocities vs full 6D: CBE acceleration accuracy of flows on the same mock.

One in-memory solar-neighbourhood mock (:class:`~popstore.galaxy.dynamics.quasi_isothermal.QuasiIsothermalMixture`,
Staeckel-action qDFs by default) in ``7 < R < 9`` kpc, ``|z| < 1.5`` kpc,
``|phi| < 0.15``. Two DFs are learnt from it with the same flow settings:

- ``full_6d``: a 6D flow on every star within 1 kpc of the Sun (Naik et al.
  2021, arXiv:2112.07657, Sect. 3);
- ``missing_rv``: the factorised DF ``n(x) p(v | x)``
  (:mod:`popstore.galaxy.missing_rv`) on the missing-v_los subset
  of the whole annulus (:func:`~popstore.galaxy.dynamics.catalogue.missing_rv_subset`,
  half the stars without v_los).

CBE accelerations at ``--n-positions`` points from R = 7.6 to 8.4 kpc (z = 0)
with ``--n-velocities`` exact mock velocities each are compared with the
potential's force and with the CBE acceleration of the exact generating DF
(which isolates the flows' own error). Prints median / p90 / max relative errors.

Run:  nice -n 10 .venv/bin/python benchmarks/bench_flows_missing_rv.py --stars 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from popstore.galaxy.dynamics.acceleration import cbe_acceleration
from popstore.galaxy.dynamics.catalogue import missing_rv_subset
from popstore.galaxy.dynamics.quasi_isothermal import QuasiIsothermalMixture, Selection
from popstore.estimators.flows import FlowConfig
from popstore.estimators.flows_ensemble import (
    load_ensemble,
    phase_space_log_df,
    train_ensemble,
)
from popstore.galaxy.missing_rv import load_missing_rv, train_missing_rv
from popstore.galaxy.workflow import relative_errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stars", type=int, default=20_000, help="mock stars in the annulus")
    ap.add_argument("--actions", choices=["staeckel", "epicyclic"], default="staeckel")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--patience", type=int, default=8, help="early-stopping patience [epochs] (lr patience: a third)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-positions", type=int, default=9)
    ap.add_argument("--n-velocities", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    mix = QuasiIsothermalMixture(actions=args.actions)
    t = time.perf_counter()
    x, v, _ = mix.sample(args.stars, rng, Selection(7.0, 9.0, 1.5, 0.15))
    print(f"mock: {args.stars} stars ({args.actions} qDF) in {time.perf_counter() - t:.0f} s")
    sun = np.array([8.0, 0.0, 0.0])
    sphere = np.linalg.norm(x - sun, axis=1) < 1.0
    sub = missing_rv_subset(x, v, rng)
    cfg = FlowConfig(n_layers=args.layers, hidden_features=args.hidden, batch_size=args.batch, max_epochs=args.epochs,
                     lr_patience=max(1, args.patience // 3), valid_fraction=0.1, early_stopping_patience=args.patience)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        train_ensemble(np.hstack([x[sphere], v[sphere]]), cfg, args.seeds, Path(tmp) / "full", progress=False)
        t_full = time.perf_counter() - t
        t = time.perf_counter()
        train_missing_rv(sub, cfg, args.seeds, Path(tmp) / "mrv", progress=False)
        t_mrv = time.perf_counter() - t
        print(f"full_6d: {sphere.sum()} stars within 1 kpc, trained in {t_full:.0f} s; missing_rv: {sub.sizes['star']} positions, "
              f"{int(sub.has_vlos.sum())} with v_los, trained in {t_mrv:.0f} s ({len(args.seeds)} seed(s), 1 torch thread)")
        logdfs = {"exact_df": mix.log_df, "full_6d": phase_space_log_df(load_ensemble(Path(tmp) / "full", args.seeds)),
                  "missing_rv": phase_space_log_df(load_missing_rv(Path(tmp) / "mrv", args.seeds))}
        pos = np.c_[np.linspace(7.6, 8.4, args.n_positions), np.zeros((args.n_positions, 2))]
        local = v[np.linalg.norm(x - sun, axis=1) < 0.5]
        vel = torch.tensor(local[np.random.default_rng(1).integers(len(local), size=(len(pos), args.n_velocities))])
        accs = {k: cbe_acceleration(f, torch.tensor(pos), vel).detach().numpy() for k, f in logdfs.items()}
    truth = mix.potential.acceleration(torch.tensor(pos)).numpy()
    ds = xr.Dataset({"truth": (("r", "component"), truth)} | {f"acc_{k}": (("r", "component"), a) for k, a in accs.items()})
    print(f"\nCBE accelerations at R = 7.6..8.4 kpc, z = 0 ({args.n_positions} positions x {args.n_velocities} velocities)")
    print("relative to the true acceleration (potential):")
    print((100 * relative_errors(ds)).to_string(float_format="%.2f", header=["median %", "p90 %", "max %"]))
    print("relative to the CBE acceleration of the exact generating DF (the flows' own error):")
    print((100 * relative_errors(ds, "acc_exact_df")).to_string(float_format="%.2f", header=["median %", "p90 %", "max %"]))


if __name__ == "__main__":
    main()
