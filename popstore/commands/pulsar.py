"""``popstore plot-maps``: one sample's maps of any store as a PNG grid.

    popstore plot-maps out/pulsar_full.zarr --sample 0 -o maps.png [--vars ppdot_map ppdot_map_fluxes]
"""

from __future__ import annotations

import argparse


def _plot_maps(args: argparse.Namespace) -> int:
    from popstore.plotting import plot_maps
    from popstore.store import open_store

    ds = open_store(args.store)
    print(plot_maps(ds, args.sample, args.vars, args.output, ncols=args.ncols))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot-maps", help="PNG grid of one sample's 2D input maps (any store)")
    p.add_argument("store", help="Zarr store")
    p.add_argument("--sample", type=int, default=0, help="sample position along the sample dim")
    p.add_argument("--vars", nargs="+", default=None, help="variables to draw (default: every 2D input map)")
    p.add_argument("--ncols", type=int, default=4)
    p.add_argument("-o", "--output", default="maps.png")
    p.set_defaults(func=_plot_maps)
