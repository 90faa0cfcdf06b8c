"""The ``popstore`` command.

The core subcommands live here. Science domains and estimators add theirs through
entry points of the ``popstore.commands`` group (each a ``register(subparsers)``
function; see ``pyproject.toml``), and a user's package can do the same. Every
module imported while the parser is built imports only the standard library at
its top, so ``popstore --help`` stays fast: the work's imports happen inside the
handler of the command that runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from importlib.metadata import entry_points
from collections.abc import Callable
from pathlib import Path

from popstore import __version__
from popstore.errors import UserError

COMMANDS_GROUP = "popstore.commands"


def new_output(path: str, overwrite: bool) -> str:
    """``path`` (a path or fsspec URL) as an output: something existing there is a user error unless ``overwrite``."""
    from popstore.store import check_new_output

    check_new_output(path, overwrite)
    return path


def add_stage_commands(subparsers: argparse._SubParsersAction, command: str, help: str, dest: str,
                       stages: tuple[tuple[str, Callable[[argparse.Namespace], int], str], ...],
                       ) -> argparse._SubParsersAction:
    """``popstore COMMAND STAGE PIPELINE.toml [-q]`` for each ``(stage, handler, help)``; returns the stages'
    subparsers, so that a caller can add its own options or commands."""
    top = subparsers.add_parser(command, help=help)
    sub = top.add_subparsers(dest=dest, required=True)
    for name, func, text in stages:
        q = sub.add_parser(name, help=text)
        q.add_argument("pipeline", type=Path, help="pipeline TOML file")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        q.set_defaults(func=func)
    return sub


def _generate(args: argparse.Namespace) -> int:
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    report = pipe.generate(progress=not args.quiet)
    print(report)
    if report.complete and "split" in pipe.sections and not args.no_split:
        pipe.split()
        print(f"split written to {pipe.store_path}")
    return 0 if report.complete else 1


def _check(args: argparse.Namespace) -> int:
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    sim = pipe.simulator()
    n = len(pipe.parameter_table(sim))
    print(f"{args.pipeline}: valid; {sim.name} with {n} samples -> {pipe.store_path}; "
          f"sections {', '.join(sorted(pipe.sections))}")
    return 0


def _split(args: argparse.Namespace) -> int:
    import numpy as np

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


def _upgrade(args: argparse.Namespace) -> int:
    from popstore.store import upgrade_store

    upgrade_store(args.store)
    print(f"{args.store}: split listed as a coordinate, metadata consolidated")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from popstore.verify import verify

    report = verify(args.store, repair=args.repair)
    print(report)
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    from popstore import export

    if args.format == "hdf5":
        print(export.to_hdf5(args.store, args.output, progress=not args.quiet, overwrite=args.overwrite))
    else:
        print(export.to_legacy(args.store, args.output, progress=not args.quiet, overwrite=args.overwrite))
    return 0


def _import(args: argparse.Namespace) -> int:
    from popstore import export
    from popstore.info import describe

    export.from_legacy(args.folder, args.output, samples_per_chunk=args.samples_per_chunk, progress=not args.quiet,
                       allow_outside=args.allow_outside)
    print(describe(args.output))
    return 0


def _plot_maps(args: argparse.Namespace) -> int:
    from popstore.plotting import plot_maps
    from popstore.store import open_store

    out = new_output(args.output, args.overwrite)
    ds = open_store(args.store)
    log = {"auto": "auto", "yes": True, "no": False}[args.log]
    print(plot_maps(ds, args.sample, args.vars, out, ncols=args.ncols, log=log))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from popstore.demo import run_demo

    run_demo(Path(args.output), n_samples=args.n_samples, npix=args.npix, n_workers=args.workers, epochs=args.epochs)
    return 0


def _add_core_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate (or resume) the store of a pipeline TOML file, then split it")
    p.add_argument("pipeline", type=Path, help="pipeline TOML file")
    p.add_argument("--no-split", action="store_true", help="skip the [split] stage")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)

    p = sub.add_parser("check", help="validate a pipeline TOML file (every section) without running anything")
    p.add_argument("pipeline", type=Path, help="pipeline TOML file")
    p.set_defaults(func=_check)

    p = sub.add_parser("split", help="write train/valid/test splits and label statistics into a store")
    p.add_argument("store", help="popstore Zarr store (path or fsspec URL: s3://, gs://, memory://, file://)")
    p.add_argument("--test", type=float, default=0.1, help="fraction of the whole set")
    p.add_argument("--valid", type=float, default=0.1, help="fraction of the remainder")
    p.add_argument("--seed", type=int, default=0, help="seed of the random assignment")
    p.add_argument("--groups", help="variable along sample whose equal values stay in one subset")
    p.add_argument("--allow-incomplete", action="store_true", help="exclude samples that are not done")
    p.add_argument("--exclude", help="variable along sample whose non-zero values exclude a sample (e.g. aborted)")
    p.set_defaults(func=_split)

    p = sub.add_parser("info", help="a readable summary of a store")
    p.add_argument("store", help="popstore Zarr store (path or fsspec URL)")
    p.set_defaults(func=_info)

    p = sub.add_parser("upgrade", help="make a store written by an older popstore open quietly in plain xarray")
    p.add_argument("store", help="popstore Zarr store (path or fsspec URL)")
    p.set_defaults(func=_upgrade)

    p = sub.add_parser("plot-maps", help="PNG grid of one sample's 2D input maps (any store)")
    p.add_argument("store", help="Zarr store")
    p.add_argument("--sample", type=int, default=0, help="sample position along the sample dim")
    p.add_argument("--vars", nargs="+", default=None, help="variables to draw (default: every 2D input map)")
    p.add_argument("--log", choices=["auto", "yes", "no"], default="auto",
                   help="logarithmic colour scale (auto: for positive maps spanning more than two decades)")
    p.add_argument("--ncols", type=int, default=4, help="panels per row")
    p.add_argument("-o", "--output", default="maps.png", help="PNG file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_plot_maps)

    p = sub.add_parser("verify", help="read every chunk of a store: checksums, missing chunks, non-finite done "
                                      "samples; exit 1 if anything is wrong")
    p.add_argument("store", help="popstore Zarr store (path or fsspec URL)")
    p.add_argument("--repair", action="store_true",
                   help="clear 'done' of the damaged blocks so that 'popstore generate' remakes exactly those")
    p.set_defaults(func=_verify)

    p = sub.add_parser("export", help="export a store to HDF5 or to the legacy .npy + CSV layout")
    p.add_argument("store", help="popstore Zarr store (path or fsspec URL: s3://, gs://, memory://, file://)")
    p.add_argument("-o", "--output", required=True, help="HDF5 file, or folder for --format legacy (path or fsspec URL)")
    p.add_argument("--format", choices=["hdf5", "legacy"], default="hdf5", help="output format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="turn a legacy .npy + CSV folder into a store")
    p.add_argument("folder", help="legacy folder (dataset_full.csv, maps/), path or fsspec URL")
    p.add_argument("-o", "--output", required=True, help="new Zarr store to write (path or fsspec URL)")
    p.add_argument("--samples-per-chunk", type=int, help="samples per chunk (default: chosen for ~1-16 MiB chunks)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-outside", action="store_true",
                   help="read map paths of the CSV that resolve outside the folder (refused by default)")
    p.set_defaults(func=_import)

    p = sub.add_parser("demo", help="the main job: gaussian_fields store on a LocalCluster, split, PNG, small CNN")
    p.add_argument("-o", "--output", default="out/demo", help="output folder")
    p.add_argument("--n-samples", type=int, default=2048, help="samples to generate")
    p.add_argument("--npix", type=int, default=32, help="map side in pixels")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--epochs", type=int, default=15, help="CNN training epochs (0: skip training)")
    p.set_defaults(func=_demo)


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except Exception as e:  # a broken plugin must not take the whole command down
            warnings.warn(f"popstore command plugin {ep.name!r} ({ep.value}) failed to load: {e}", RuntimeWarning,
                          stacklevel=2)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)parser shows each option's default in its help."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popstore", description="popstore: simulation-based inference datasets in labelled, chunked Zarr stores")
    parser.add_argument("--version", action="version", version=f"popstore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a user error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_core_commands(sub)
    _add_plugin_commands(sub)
    _show_defaults(parser)
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
    except (UserError, FileNotFoundError) as err:  # bad input, or a file the user named that is not there
        if args.debug:
            raise
        print(f"popstore {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`popstore info store | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the broken pipe


if __name__ == "__main__":
    sys.exit(main())
