"""``popstore cmd-import``: CAMELS Multifield Dataset ``.npy`` maps into a store."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_import(args: argparse.Namespace) -> int:
    from popstore.camels.importer import read_cmd
    from popstore.cli import new_output

    path = read_cmd(args.folder, new_output(args.output, args.overwrite), args.fields, args.suite, args.set, smoothing=args.smoothing,
                    samples_per_chunk=args.samples_per_chunk, split=(args.test, args.valid, args.seed))
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cmd-import", help="turn CAMELS Multifield Dataset .npy maps into a store")
    p.add_argument("folder", type=Path, help="folder with Maps_{field}_{suite}_{set}_z=0.00.npy and params_{set}_{suite}.txt")
    p.add_argument("-o", "--output", type=Path, required=True, help="Zarr store to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--fields", nargs="+", required=True, help="e.g. Mgas T Mtot")
    p.add_argument("--suite", required=True, help="e.g. IllustrisTNG, SIMBA")
    p.add_argument("--set", default="LH", help="CMD set (LH: Latin hypercube, CV, 1P, ...)")
    p.add_argument("--smoothing", type=float, default=0.0, help="Gaussian smoothing sigma in pixels (0: none)")
    p.add_argument("--samples-per-chunk", type=int, default=15, help="maps per chunk (15 = one simulation)")
    p.add_argument("--test", type=float, default=0.05, help="fraction of simulations for testing")
    p.add_argument("--valid", type=float, default=0.05, help="fraction of the remaining simulations for validation")
    p.add_argument("--seed", type=int, default=1, help="seed of the split")
    p.set_defaults(func=_cmd_import)
