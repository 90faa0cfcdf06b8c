"""``popstore inference ...``: moment-network training, optuna searches and test reports on any store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _data(args: argparse.Namespace):
    from popstore.estimators.data import DataConfig

    augment = {"auto": "auto", "yes": True, "no": False}[args.augment]
    per_var = dict(t.split("=", 1) for t in args.transform if "=" in t)
    default = [t for t in args.transform if "=" not in t]
    return DataConfig(args.inputs, args.labels, per_var, default[-1] if default else "auto", augment,
                      args.batch_size, args.num_workers)


def _train_config(args: argparse.Namespace, **kw):
    from popstore.estimators.train import TrainConfig

    return TrainConfig(epochs=args.epochs, cycle=args.cycle, device=args.device, amp=not args.no_amp,
                       seed=args.seed, progress=not args.quiet, threads=args.threads,
                       valid_orientations=args.valid_orientations, **kw)


def _show(table: pd.DataFrame) -> None:
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


def _train(args: argparse.Namespace) -> int:
    from popstore.estimators.data import train_on_store

    res = train_on_store(args.store, args.output, args.hidden, args.dropout, _data(args),
                         _train_config(args, lr=args.lr, weight_decay=args.weight_decay), {"positive": args.positive})
    print(f"best epoch {res.best_epoch}: valid loss {res.best_valid_loss:.4f}, {res.samples_per_s:.0f} samples/s; "
          f"checkpoint {res.checkpoint}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from popstore.estimators.search import SearchSpace, best_trial, search, summary

    space = SearchSpace(tuple(args.lr_range), tuple(args.wd_range), tuple(args.dropout_range), tuple(args.hidden_range),
                        names=args.param_names)
    study = search(args.store, args.output, args.n_trials, _data(args), _train_config(args), space,
                   study_name=args.study_name, storage=args.storage, n_startup_trials=args.n_startup_trials,
                   prune=args.prune, seed=args.seed, max_trials=args.max_trials, network={"positive": args.positive},
                   heartbeat=args.heartbeat)
    print(f"{summary(study)}; {best_trial(study).user_attrs['checkpoint']}")
    return 0


def _best(args: argparse.Namespace) -> int:
    import optuna

    from popstore.estimators.search import best_trial, storage_url

    print(best_trial(optuna.load_study(study_name=args.study_name, storage=storage_url(args.storage))).user_attrs["checkpoint"])
    return 0


def _test(args: argparse.Namespace) -> int:
    from popstore.estimators.evaluate import make_test_report

    print(make_test_report(args.model, args.store, args.split, args.orientations, args.output, n_bins=args.bins))
    return 0


def _cross(args: argparse.Namespace) -> int:
    from popstore.estimators.evaluate import cross_suite

    stores = dict(item.split("=", 1) for item in args.store)
    _show(cross_suite(args.model, stores, args.split, args.output))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from popstore.estimators.pipeline import run

    run(args.pipeline, progress=not args.quiet)
    return 0


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="split popstore store (path or fsspec URL)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for checkpoints and losses")
    p.add_argument("--inputs", nargs="+", help="input variables (channels); default all role=input")
    p.add_argument("--labels", nargs="+", help="labels to infer; default all role=label")
    p.add_argument("--transform", action="append", default=[], metavar="[VARIABLE=]SPEC",
                   help="input transform: log10, 'log10(x + OFFSET)', standardise, none or auto; with VARIABLE= for "
                        "one input (repeat), without for every input not named and without a stored default "
                        "(CMD stores: log10, log10(x + 1) for Mstar) (default: auto)")
    p.add_argument("--augment", choices=["auto", "yes", "no"], default="auto",
                   help="random rotations/flips (auto: only when both map axes are the same coordinate)")
    p.add_argument("--batch-size", type=int, default=128, help="samples per batch")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (0: read in-process)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--cycle", type=int, default=500, help="batches per half cycle of the cyclic learning rate")
    p.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--valid-orientations", type=int, choices=[1, 8],
                   help="symmetries of the square each validation map is evaluated in (default: 8 with augmentation "
                        "as for testing, else 1)")
    p.add_argument("--positive", choices=["softplus", "square"], default="softplus",
                   help="how the network makes sigma positive (square: CMD's o3_err)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentation")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("inference", help="moment-network CNN: train, optuna search, test, cross-suite")
    sub = top.add_subparsers(dest="inference_command", required=True)

    p = sub.add_parser("train", help="train one o3_err network on a store")
    _add_data_args(p)
    p.add_argument("--hidden", type=int, default=8, help="o3_err width: channels of the first layer / 2")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout rate of the fully connected layers")
    p.add_argument("--lr", type=float, default=1e-3, help="maximum learning rate of the cyclic schedule")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay")
    p.set_defaults(func=_train)

    p = sub.add_parser("search", help="optuna search (run several at once on one storage to parallelise)")
    _add_data_args(p)
    p.add_argument("--n-trials", type=int, default=10, help="trials this process runs")
    p.add_argument("--study-name", default="wd_dr_hidden_lr_o3", help="optuna study name")
    p.add_argument("--storage", help="database URL or sqlite file (default OUTPUT/optuna.db)")
    p.add_argument("--n-startup-trials", type=int, default=20, help="random trials before TPE takes over")
    p.add_argument("--prune", action="store_true", help="median pruning of bad trials")
    p.add_argument("--max-trials", type=int, help="stop once the study holds this many finished trials")
    p.add_argument("--param-names", choices=["popstore", "cmd"], default="popstore",
                   help="optuna parameter names: popstore (lr, weight_decay, dropout, hidden) or cmd (lr, wd, dr, "
                        "hidden), to continue a study of CMD's scripts or leave one they can continue")
    p.add_argument("--heartbeat", type=int, metavar="SECONDS",
                   help="optuna heartbeat: fail trials of processes on other hosts silent for two beats")
    p.add_argument("--lr-range", type=float, nargs=2, default=[1e-5, 5e-3], metavar=("LO", "HI"),
                   help="learning-rate range (log-uniform)")
    p.add_argument("--wd-range", type=float, nargs=2, default=[1e-8, 1e-1], metavar=("LO", "HI"),
                   help="weight-decay range (log-uniform)")
    p.add_argument("--dropout-range", type=float, nargs=2, default=[0.0, 0.9], metavar=("LO", "HI"),
                   help="dropout range")
    p.add_argument("--hidden-range", type=int, nargs=2, default=[6, 12], metavar=("LO", "HI"),
                   help="o3_err width range")
    p.set_defaults(func=_search)

    p = sub.add_parser("best", help="print the checkpoint of the best trial of a study")
    p.add_argument("storage", help="database URL or sqlite file of the study")
    p.add_argument("--study-name", default="wd_dr_hidden_lr_o3", help="optuna study name")
    p.set_defaults(func=_best)

    p = sub.add_parser("test", help="test report of a model on a store split")
    p.add_argument("model", type=Path, help="checkpoint (.pt) of a trained model")
    p.add_argument("store", help="store to test on")
    p.add_argument("--split", default="test", help="split to test on")
    p.add_argument("--orientations", type=int, choices=[1, 8],
                   help="average over 1 or all 8 rotations/flips (default: 8 where the model augments)")
    p.add_argument("-o", "--output", type=Path, help="folder for the report (default: the model's)")
    p.add_argument("--bins", type=int, default=5, help="bins of each true label for the coverage table and figure")
    p.set_defaults(func=_test)

    p = sub.add_parser("cross-suite", help="test one model on several stores (CMD robustness check)")
    p.add_argument("model", type=Path, help="checkpoint (.pt) of a trained model")
    p.add_argument("--store", action="append", required=True, metavar="NAME=PATH", help="a store to test on (repeat)")
    p.add_argument("--split", default="test", help="split to test on")
    p.add_argument("-o", "--output", type=Path, help="folder for the reports (default: the model's)")
    p.set_defaults(func=_cross)

    p = sub.add_parser("pipeline", help="generate -> split -> optuna search -> test from a pipeline TOML file")
    p.add_argument("pipeline", type=Path, help="pipeline TOML file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_pipeline)
