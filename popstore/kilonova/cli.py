"""``popstore kilonova {train,calibrate,evaluate} PIPELINE.toml``: the DU17 light-curve emulator;
``popstore kilonova fit PHOTOMETRY``: the posterior of a binary from an observed light curve.

See :mod:`popstore.kilonova.workflow` for the pipeline sections
(``pipelines/kilonova.toml`` is an example) and :mod:`popstore.kilonova.inference`
for the likelihood.
"""

from __future__ import annotations

import argparse

from popstore.cli import add_stage_commands, new_output


def _train(args: argparse.Namespace) -> int:
    import torch

    from popstore.kilonova.workflow import emulator_config, train_from_store
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    sec = pipe.section("emulator")
    torch.set_num_threads(int(sec.get("threads", 1)))
    snaps = pipe.path_of("emulator", "snapshots") if "snapshots" in sec else None
    emu, hist = train_from_store(pipe.store_path, emulator_config(sec), sec.get("labels", ["m1", "m2", "lambda1", "lambda2"]),
                                 int(sec.get("factor", 120)), snaps, int(sec.get("snapshot_every", 10)),
                                 progress=not args.quiet, times=sec.get("times"), coverage=sec.get("coverage", 0.90))
    out = pipe.path_of("emulator", "output")
    out.parent.mkdir(parents=True, exist_ok=True)
    emu.save(out)
    print(f"{out}: best epoch {hist.best_epoch + 1}/{len(hist.valid_loss)}, "
          f"valid NLL {hist.valid_loss[hist.best_epoch]:.3f}, sampling temperature {emu.temperature:.3f}"
          + (f"; snapshots in {snaps}" if snaps else ""))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import torch

    from popstore.estimators.emulator import CurveEmulator
    from popstore.kilonova.dataset import load_curves
    from popstore.kilonova.workflow import calibrate
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    sec = pipe.section("emulator")
    torch.set_num_threads(int(sec.get("threads", 1)))
    path = pipe.path_of("emulator", "output")
    emu = CurveEmulator.load(path)
    valid = load_curves(pipe.store_path, "valid", emu.label_names, times=emu.coords["time"])
    res = calibrate(emu, valid, float(sec.get("coverage", 0.90)), seed=int(sec.get("seed", 0)))
    emu.save(path)
    print(f"{path}: temperature {res['temperature']:.3f} (valid coverage {res['coverage']:.3f}); spread per band "
          + ", ".join(f"{b} {v:.2f}" for b, v in res["spread"].items()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from popstore.estimators.emulator import CurveEmulator
    from popstore.kilonova.dataset import load_curves
    from popstore.kilonova.params import LABELS
    from popstore.kilonova.workflow import evaluate, example_figure, heldout_report, speed_table
    from popstore.pipeline import Pipeline
    from popstore.store import open_store

    pipe = Pipeline.load(args.pipeline)
    sec, ev = pipe.section("emulator"), pipe.section("evaluate")
    torch.set_num_threads(int(sec.get("threads", 1)))
    emu = CurveEmulator.load(pipe.path_of("emulator", "output"))
    test = load_curves(pipe.store_path, "test", emu.label_names, times=emu.coords["time"])
    print(f"held-out: {len(test)} binaries ({test.n_dropped} dropped: no valid point in a band); "
          f"sampling temperature {emu.temperature:.3f}, spread per band {emu.spread}")
    n_draws, seed = int(ev.get("n_draws", 100)), int(ev.get("seed", 0))
    for name, table in evaluate(emu, test, n_draws, seed).items():
        print(f"|emulator - DU17| [mag], {name}:\n{table.to_string(float_format='%.4f')}")
    mass = open_store(pipe.store_path)["ejecta_mass"].values[test.sample]
    for name, table in heldout_report(emu, test, mass, n_draws, seed).items():
        print(f"{name}:\n{table.to_string(float_format='%.3f')}")
    if "figure" in ev:
        print(example_figure(emu, test, pipe.path_of("evaluate", "figure")))
    ds = open_store(pipe.store_path)
    n = min(int(ev.get("n_timing", 1000)), ds.sizes["sample"])
    table = pd.DataFrame({c: ds[c].values[:n] for c in LABELS})
    print(f"seconds per light curve ({len(emu.coords['band'])} bands x {len(emu.coords['time'])} times), one core:")
    print(speed_table(emu, table, pipe.simulator().settings, n_draws).to_string(float_format=lambda v: f"{v:.3e}"))
    return 0


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    from popstore.kilonova.inference import (DU17Photometry, EmulatorPhotometry, LikelihoodSettings, Prior,
                                             SamplerSettings, fit)
    from popstore.kilonova.photometry import Observer, read_photometry, select

    out = new_output(args.output, args.overwrite)
    observer = Observer(args.distance, args.ebv)
    data = select(read_photometry(args.photometry), args.bands, args.t_min, args.t_max)
    lik = LikelihoodSettings(args.floor, args.miss)
    if args.emulator is not None:
        import torch

        from popstore.estimators.emulator import CurveEmulator

        torch.set_num_threads(1)
        model, name = EmulatorPhotometry(data, CurveEmulator.load(args.emulator), observer), f"emulator {args.emulator}"
    else:
        model, name = DU17Photometry(data, observer), "DU17"
    sampler = SamplerSettings(args.walkers, args.steps, args.burn, args.thin, args.seed)
    post = fit(model, data, Prior(), lik, sampler, attrs={"model": name, "distance_mpc": args.distance,
                                                         "ebv": args.ebv})
    post.to_netcdf(out)
    print(f"{out}: {post.sizes['draw']} samples ({name}, {data.sizes['obs']} points), acceptance "
          f"{post.attrs['acceptance']:.2f}, autocorrelation {post.attrs['autocorr_steps']:.0f} steps")
    for k in ("chirp_mass", "mass_ratio", "lambda_tilde", "ejecta_mass", "ejecta_velocity"):
        lo, med, hi = np.percentile(post[k].values, [16, 50, 84])
        print(f"  {k:16s} {med:.4g}  [{lo:.4g}, {hi:.4g}] (68%)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_stage_commands(subparsers, "kilonova", "DU17 kilonova emulator: train the flow on a store (made by "
                       "'popstore generate'), evaluate", "kilonova_command", (
        ("train", _train, "train the conditional-flow emulator on the store's train split (snapshots per [emulator])"),
        ("calibrate", _calibrate, "recalibrate a trained emulator's 5-95% band on the valid split (no training)"),
        ("evaluate", _evaluate, "held-out magnitude errors per band and timing against DU17"),
    ))
    f = sub.add_parser("fit", help="MCMC posterior of (m1, m2, Lambda1, Lambda2) from observed photometry "
                       "(DU17, or an emulator in its place)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("photometry", help="'ISO-time filter AB-mag error' file (error inf: upper limit)")
    f.add_argument("-o", "--output", required=True, help="posterior samples (netCDF)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing output")
    f.add_argument("--emulator", help="a trained emulator (.pt) in place of DU17")
    f.add_argument("--distance", type=float, default=40.0, help="luminosity distance [Mpc]")
    f.add_argument("--ebv", type=float, default=0.0, help="Galactic E(B-V) [mag] (0: data already corrected)")
    f.add_argument("--floor", type=float, default=0.5, help="error floor added in quadrature [mag]")
    f.add_argument("--miss", type=float, default=2.0, help="residual charged where DU17 is undefined [mag]")
    f.add_argument("--bands", nargs="+", help="fit only these bands (default: all)")
    f.add_argument("--t-min", type=float, default=0.0, help="first day fitted")
    f.add_argument("--t-max", type=float, default=float("inf"), help="last day fitted")
    f.add_argument("--walkers", type=int, default=32, help="emcee walkers")
    f.add_argument("--steps", type=int, default=4000, help="steps per walker")
    f.add_argument("--burn", type=int, default=1000, help="first steps dropped")
    f.add_argument("--thin", type=int, default=10, help="keep every n-th step")
    f.add_argument("--seed", type=int, default=0, help="seed of the initial walkers and the sampler")
    f.set_defaults(func=_fit)
