"""The ``popstore`` command.

Core subcommands live here; every module in :mod:`popstore.commands` that
defines ``register(subparsers)`` adds its own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from pathlib import Path

import numpy as np

import popstore
import popstore.commands
from popstore.errors import UserError


def _generate(args: argparse.Namespace) -> int:
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    report = pipe.generate(progress=not args.quiet)
    print(report)
    if report.complete and "split" in pipe.sections and not args.no_split:
        pipe.split()
        print(f"split written to {pipe.store_path}")
    return 0 if report.complete else 1


def _split(args: argparse.Namespace) -> int:
    from popstore.splits import split

    s = split(args.store, test=args.test, valid=args.valid, seed=args.seed, groups=args.groups,
              allow_incomplete=args.allow_incomplete, exclude=args.exclude)
    values, counts = np.unique(s.values, return_counts=True)
    print(", ".join(f"{v}: {c}" for v, c in zip(values, counts)))
    return 0


def _info(args: argparse.Namespace) -> int:
    from popstore.info import describe

    print(describe(args.store))
    return 0


def _export(args: argparse.Namespace) -> int:
    from popstore import export

    if args.format == "hdf5":
        print(export.to_hdf5(args.store, args.output))
    else:
        print(export.to_legacy(args.store, args.output))
    return 0


def _import(args: argparse.Namespace) -> int:
    from popstore import export
    from popstore.info import describe

    export.from_legacy(args.folder, args.store, samples_per_chunk=args.samples_per_chunk,
                       allow_outside=args.allow_outside)
    print(describe(args.store))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from popstore.demo import run_demo

    run_demo(Path(args.output), n_samples=args.n_samples, npix=args.npix, n_workers=args.workers, epochs=args.epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="popstore", description=popstore.__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a user error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="generate (or resume) the store of a pipeline TOML file, then split it")
    p.add_argument("pipeline", type=Path)
    p.add_argument("--no-split", action="store_true", help="skip the [split] stage")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)

    p = sub.add_parser("split", help="write train/valid/test splits and label statistics into a store")
    p.add_argument("store", type=Path)
    p.add_argument("--test", type=float, default=0.1, help="fraction of the whole set (default 0.1)")
    p.add_argument("--valid", type=float, default=0.1, help="fraction of the remainder (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", help="variable whose equal values stay in one subset")
    p.add_argument("--allow-incomplete", action="store_true", help="exclude samples that are not done")
    p.add_argument("--exclude", help="variable along sample whose non-zero values exclude a sample (e.g. aborted)")
    p.set_defaults(func=_split)

    p = sub.add_parser("info", help="a readable summary of a store")
    p.add_argument("store", type=Path)
    p.set_defaults(func=_info)

    p = sub.add_parser("export", help="export a store to HDF5 or to the legacy .npy + CSV layout")
    p.add_argument("store", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--format", choices=["hdf5", "legacy"], default="hdf5")
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="turn a legacy .npy + CSV folder into a store")
    p.add_argument("folder", type=Path)
    p.add_argument("store", type=Path)
    p.add_argument("--samples-per-chunk", type=int)
    p.add_argument("--allow-outside", action="store_true",
                   help="read map paths of the CSV that resolve outside the folder (refused by default)")
    p.set_defaults(func=_import)

    p = sub.add_parser("demo", help="the main job: gaussian_fields store on a LocalCluster, split, PNG, small CNN")
    p.add_argument("-o", "--output", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--n-samples", type=int, default=2048)
    p.add_argument("--npix", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=15, help="CNN training epochs (0: skip training)")
    p.set_defaults(func=_demo)

    for mod in pkgutil.iter_modules(popstore.commands.__path__, prefix="popstore.commands."):
        module = importlib.import_module(mod.name)
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import distributed  # noqa: F401  (creates its loggers, which we quieten below)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(level)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        if args.debug:
            raise
        print(f"popstore {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
