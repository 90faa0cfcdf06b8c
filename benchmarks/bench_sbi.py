"""NPE on gaussian_fields maps: calibration, posterior widths against the moment network, and training speed
from the store against the same training from an in-memory tensor (measured in this run).

    python benchmarks/bench_sbi.py [--n-samples 5000] [--npix 32] [--epochs 150] [--members 3]
                                   [--embedding cnn] [--drop-worse-than 0.5] [--smoothing 1.0 | nuisance]
                                   [--data-seed 1] [--out out/bench_sbi]

The defaults are the best setting measured (README): 3 members at lr 1e-3, halved after 5 epochs without a
better validation loss, stopped after 15; members more than 0.5 nats of validation loss above the best dropped.

The labels inferred are ``amplitude`` and ``slope``. The beam ``smoothing`` is held at 1 pixel by default; with
``--smoothing nuisance`` it is drawn from its prior (0.5-2 px) with the other labels and marginalised (not
inferred), as a nuisance parameter of a real map would be.

Prints, for the test split (>= 500 maps with the defaults):
- how exactly a map's mean log density ties its amplitude to its slope (the k = 0 mode, which the
  power_spectrum embedding leaves out): exact (float32 rounding) with the smoothing held fixed, so every map
  pins (amplitude, slope) to one curve; loose with the smoothing a nuisance;
- expected coverage of the NPE posterior at 12 credibility levels and its largest deviation from nominal,
  the SBC KS p-value per parameter and TARP's area-to-curve;
- the mean posterior standard deviation per parameter beside the moment network's mean sigma (o3_err,
  trained on the same splits) and both networks' RMSE of the posterior mean;
- seconds per training epoch with batches streamed from the store (MapDataset + make_loader) and from an
  in-memory tensor (TensorDataset + DataLoader), interleaved, and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import popstore
from popstore.estimators.calibration import calibration_report, save_report
from popstore.checkpoints import load_checkpoint
from popstore.estimators.sbi import (
    NPEConfig, _build, _epoch_loss, load_ensemble, posterior_draws, select_members, train_ensemble,
)
from popstore.estimators.sbi_pipeline import held_out_pairs
from popstore.estimators.preprocess import fit_preprocessor
from popstore.simulators import get_simulator
from popstore.torchdata import MapDataset, make_loader


def epoch_seconds(store: Path, cfg: NPEConfig, space, repeats: int = 3) -> tuple[float, float]:
    """Median seconds of one training epoch with store batches and with in-memory batches (same estimator)."""
    train = MapDataset(store, "train", list(cfg.inputs), list(space.names), normalize="none")
    store_loader = make_loader(train, cfg.batch_size, shuffle=True, seed=0, drop_last=True)
    x, y = next(iter(make_loader(train, len(train), shuffle=False)))
    memory_loader = DataLoader(TensorDataset(x.clone(), y.clone()), batch_size=cfg.batch_size, shuffle=True,
                               drop_last=True)
    pre = fit_preprocessor([x], cfg.log10)
    est = _build(cfg, pre, space, space.to_inference(y[:2048].float()), x[:2048])
    opt = torch.optim.Adam(est.parameters(), lr=cfg.lr)
    times: dict[str, list[float]] = {"store": [], "memory": []}
    for _ in range(repeats):
        for name, loader in (("store", store_loader), ("memory", memory_loader)):
            t = time.perf_counter()
            _epoch_loss(est, loader, space, torch.device("cpu"), opt)
            times[name].append(time.perf_counter() - t)
    return float(np.median(times["store"])), float(np.median(times["memory"]))


def mean_log_density_residual(store: Path) -> tuple[float, int]:
    """Largest relative residual of ``-2 <ln density> / amplitude`` about a degree-10 polynomial in the slope, over
    the test maps, and their number.

    The simulator zeroes the Gaussian field's k = 0 mode and subtracts its analytic variance
    ``sigma_g^2 = amplitude c(slope)`` before exponentiating, so a map's mean ``<ln density> = -sigma_g^2 / 2`` is
    exact: a residual at float32 rounding (~1e-6) says that every map pins (amplitude, slope) to one curve.
    """
    ds = popstore.open_store(store)
    test = ds.split.values == "test"
    ratio = -2 * np.log(ds.density.values[test].astype(np.float64)).mean((1, 2)) / ds.amplitude.values[test]
    slope = ds.slope.values[test]
    residual = ratio - np.polyval(np.polyfit(slope, ratio, 10), slope)
    return float(np.abs(residual).max() / np.abs(ratio).mean()), int(test.sum())


def smoothing_choice(text: str) -> float | str:
    """``--smoothing``: a beam width in pixels, or ``nuisance``."""
    return text if text == "nuisance" else float(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=5000)
    ap.add_argument("--npix", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=150, help="most NPE epochs")
    ap.add_argument("--patience", type=int, default=15, help="NPE early stopping (sbi's default: 20 epochs)")
    ap.add_argument("--lr", type=float, default=1e-3, help="NPE learning rate (sbi's default: 5e-4)")
    ap.add_argument("--lr-patience", type=int, default=5,
                    help="halve the learning rate after this many epochs without improvement (0: fixed, sbi's way)")
    ap.add_argument("--model", default="maf", choices=["maf", "nsf", "mdn", "zuko_maf", "zuko_nsf"],
                    help="sbi density estimator")
    ap.add_argument("--z-score-theta", default="independent", choices=["independent", "transform_to_unconstrained"],
                    help="sbi's parameter scaling (transform_to_unconstrained: the prior box onto the real line; zuko only)")
    ap.add_argument("--embedding", default="cnn", choices=["cnn", "o3_err", "power_spectrum"],
                    help="embedding network of the maps (power_spectrum: log power in |k| shells, then an MLP)")
    ap.add_argument("--n-test", type=int, default=600, help="test maps (the split's test fraction is n-test / n-samples)")
    ap.add_argument("--drop-worse-than", type=float, default=0.5,
                    help="drop members whose best validation loss is this many nats above the best member's "
                         "(a large value keeps every member)")
    ap.add_argument("--moment-epochs", type=int, default=20)
    ap.add_argument("--n-draws", type=int, default=1000)
    ap.add_argument("--members", type=int, default=3, help="NPE ensemble members (seeds 0..N-1), trained in turn")
    ap.add_argument("--smoothing", type=smoothing_choice, default=1.0,
                    help="the beam's standard deviation in pixels, held fixed; or 'nuisance': drawn from its prior "
                         "(0.5-2 px) with the other labels and marginalised, i.e. not inferred")
    ap.add_argument("--data-seed", type=int, default=1,
                    help="seed of the Latin hypercube, of the maps (minus one) and of the split: another seed gives an "
                         "independent store")
    ap.add_argument("--out", default="out/bench_sbi")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    store = out / "fields.zarr"
    sim = get_simulator("gaussian_fields", npix=args.npix)
    table = sim.parameter_table(args.n_samples, seed=args.data_seed, design="latin_hypercube")
    if args.smoothing != "nuisance":
        table["smoothing"] = args.smoothing
        table.attrs["fixed"] = ["smoothing"]
    t = time.perf_counter()
    popstore.generate(sim, table, store, seed=args.data_seed - 1, progress=False)  # maps' master seed: 0 by default
    if "split" not in popstore.open_store(store).coords:
        popstore.split(store, test=args.n_test / args.n_samples, valid=0.1, seed=args.data_seed)
    print(f"store: {args.n_samples} maps of {args.npix}^2 ({time.perf_counter() - t:.0f} s)")
    residual, n_test = mean_log_density_residual(store)
    print(f"-2 <ln density> / amplitude as a function of the slope alone: max relative residual {residual:.1e} of a "
          f"degree-10 polynomial on {n_test} test maps (~1e-6: each map's mean pins amplitude and slope to one curve)")

    cfg = NPEConfig(inputs=("density",), labels=("amplitude", "slope"), model=args.model,
                    z_score_theta=args.z_score_theta, embedding=args.embedding, summary=32, max_epochs=args.epochs,
                    patience=args.patience, batch_size=128, lr=args.lr, lr_patience=args.lr_patience, threads=1)
    t = time.perf_counter()
    paths = train_ensemble(store, out, cfg, range(args.members), progress=False)
    print(f"NPE: {args.members} member(s) trained in {time.perf_counter() - t:.0f} s (finished members reused)")
    for p in paths:
        losses = load_checkpoint(p)
        print(f"  {p.name}: {len(losses['valid_loss'])} epochs, best {losses['best_epoch']} "
              f"(valid loss {min(losses['valid_loss']):.3f})")
    kept, dropped = select_members(paths, args.drop_worse_than)
    if dropped:
        print(f"  dropped (best valid loss > {args.drop_worse_than} nats above the best): "
              + ", ".join(p.name for p in dropped))
    posterior, space, inputs = load_ensemble(kept)
    theta, x = held_out_pairs(store, space, inputs)
    report = calibration_report(posterior, theta, x, space.names, args.n_draws)
    save_report(report, out / "calibration")
    what = f"the {len(kept)}-member ensemble" if len(kept) > 1 else "one NPE"
    print(f"\ncalibration of {what} on {report.attrs['n_test']} test maps ({args.n_draws} draws each):")
    print("  level    " + " ".join(f"{v:6.3f}" for v in report.level.values))
    print("  coverage " + " ".join(f"{v:6.3f}" for v in report.coverage.values))
    print(f"  max |coverage - level| = {report.attrs['max_coverage_error']:.3f}")
    mean_rank = report.sbc_rank.mean("test_sample").values / args.n_draws  # 0.5 when calibrated
    for name, p, r in zip(space.names, report.sbc_ks_pvalue.values, mean_rank):
        print(f"  SBC KS p-value {name}: {p:.3f} (mean normalised rank {r:.3f})")
    print(f"  TARP ATC {report.attrs['tarp_atc']:.3f}, KS p {report.attrs['tarp_ks_pvalue']:.3f}")

    draws = space.to_physical(torch.as_tensor(posterior_draws(posterior, x, 1000, seed=1))).numpy()
    truth = space.to_physical(theta).numpy()
    npe_sd, npe_rmse = draws.std(0).mean(0), np.sqrt(((draws.mean(0) - truth) ** 2).mean(0))

    from popstore.estimators.data import DataConfig, train_on_store
    from popstore.estimators.evaluate import predict
    from popstore.estimators.model import load_model
    from popstore.estimators.train import TrainConfig

    moment_dir = out / "moment"
    if not (moment_dir / "model.pt").exists():
        train_on_store(store, moment_dir, 8, 0.2, DataConfig(inputs=["density"], labels=list(space.names)),
                       TrainConfig(epochs=args.moment_epochs, threads=1, progress=False))
    pred = predict(load_model(moment_dir / "model.pt"), store, "test", orientations=8)
    mom_sd = pred.sigma.mean(("sample", "orientation")).values
    mom_rmse = np.sqrt(((pred["mean"].mean("orientation") - pred.truth) ** 2).mean("sample")).values
    print("\nposterior width on the test split (physical units):")
    print(f"  {'label':10s} {'NPE mean sd':>12s} {'moment sigma':>13s} {'NPE RMSE':>9s} {'moment RMSE':>12s}")
    for i, n in enumerate(space.names):
        print(f"  {n:10s} {npe_sd[i]:12.4f} {mom_sd[i]:13.4f} {npe_rmse[i]:9.4f} {mom_rmse[i]:12.4f}")

    s_store, s_memory = epoch_seconds(store, cfg, space)
    print(f"\ntraining epoch: store {s_store:.2f} s, in-memory tensor {s_memory:.2f} s; "
          f"store speed / in-memory speed = {s_memory / s_store:.2f}")


if __name__ == "__main__":
    main()
