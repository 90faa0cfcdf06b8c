"""``popstore sbi {train,rounds,calibrate,posterior,predictive} PIPELINE.toml``: neural posterior estimation on a store.

See :mod:`popstore.estimators.sbi_pipeline` for the ``[sbi]`` section and the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from popstore.cli import add_stage_commands


def _train(args: argparse.Namespace) -> int:
    from popstore.estimators.sbi_pipeline import train

    for p in train(args.pipeline, progress=not args.quiet):
        print(p)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from popstore.estimators.sbi_pipeline import calibrate

    print(calibrate(args.pipeline, progress=not args.quiet).to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


def _rounds(args: argparse.Namespace) -> int:
    from popstore.estimators.sbi_pipeline import rounds

    print(rounds(args.pipeline, progress=not args.quiet).to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def _posterior(args: argparse.Namespace) -> int:
    from popstore.estimators.sbi_pipeline import observed_posterior

    _, table = observed_posterior(args.pipeline, args.observed, args.n_draws, args.seed, args.sample, args.round)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def _predictive(args: argparse.Namespace) -> int:
    from popstore.estimators.sbi_pipeline import posterior_predictive

    table = posterior_predictive(args.pipeline, args.observed, args.n_sims, args.seed, args.sample, args.round,
                                 progress=not args.quiet)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_stage_commands(subparsers, "sbi", "neural posterior estimation (sbi): train an ensemble, calibrate, "
                             "apply to an observed store", "sbi_command", (
        ("train", _train, "generate and split the store if needed, then train the [sbi] ensemble"),
        ("rounds", _rounds, "truncated sequential NPE on the [sbi.rounds] observation: simulate from the truncated "
                            "prior, retrain; resumes"),
        ("calibrate", _calibrate, "expected coverage, SBC and TARP of every member and of the ensemble (test split)"),
    ))
    for name, func, text in (
        ("posterior", _posterior, "posterior of an observed store: draws (netCDF), corner plot, intervals"),
        ("predictive", _predictive, "posterior predictive check: simulate at posterior draws, compare maps and totals"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("pipeline", type=Path, help="pipeline TOML file with an [sbi] section")
        p.add_argument("observed", help="observed store on the same bins as the pipeline's store")
        p.add_argument("--sample", type=int, default=0, help="sample of the observed store")
        p.add_argument("--seed", type=int, default=0, help="seed of the draws (and of the simulations)")
        p.add_argument("--round", type=int, default=0, help="TSNPE round whose ensemble to use (0: 'sbi train')")
        p.set_defaults(func=func)
        if name == "posterior":
            p.add_argument("--n-draws", type=int, default=10_000, help="posterior draws")
        else:
            p.add_argument("--n-sims", type=int, default=100, help="simulations at posterior draws")
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
