"""``popstore observed``, ``popstore compare-ppdot`` and ``popstore dm-grid``: the observed pulsar maps.

- ``popstore observed ATNF.csv --like STORE --meerkat Census_Table5.csv -o obs.zarr`` (or
  ``popstore observed --pipeline P.toml``, files from its ``[observed]`` section) builds the observed
  survey maps on the bins of a simulated ``pulsar_surveys`` store; the flux maps use the MeerKAT TPA
  census, the ATNF S1400 column only with ``--flux-fallback-atnf`` (labelled FALLBACK in the store).
- ``popstore observed-counts ATNF.csv --meerkat Census_Table5.csv`` prints the pulsars per survey
  after the filters and after the flux join (the numbers of catalogs/README.md).
- ``popstore compare-ppdot obs.zarr STORE [--sample 0] -o ppdot.png`` draws the observed
  and one simulated population's P-Pdot density (and flux) maps side by side per survey.
- ``popstore dm-grid [--preset default]`` computes (once) and caches the YMW16 DM grid and
  prints its interpolation error against direct YMW16 calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from popstore.cli import new_output
from popstore.errors import UserError


def _observed(args: argparse.Namespace) -> int:
    from popstore.pulsars.catalog import (
        ATNF_FALLBACK_FLUX_SOURCE, check_compatible, observed_store, pipeline_observed_store, write_observed_store,
    )
    from popstore.store import open_store

    if args.pipeline is not None:
        if args.atnf or args.like or args.meerkat or args.output or args.flux_fallback_atnf:
            raise UserError("--pipeline takes the ATNF, MeerKAT, store and output paths from its [observed] section; "
                            "give no other paths")
        obs, output = pipeline_observed_store(args.pipeline)
        out = new_output(str(output), args.overwrite)
    else:
        if not (args.atnf and args.like and args.output):
            raise UserError("give ATNF.csv, --like STORE and -o OUTPUT, or --pipeline P.toml")
        out = new_output(args.output, args.overwrite)
        obs = observed_store(args.atnf, open_store(args.like), meerkat_path=args.meerkat,
                             atnf_fallback=args.flux_fallback_atnf)
        check_compatible(obs, open_store(args.like))
    write_observed_store(obs, out)
    n = dict(zip(obs["survey"].values.tolist(), obs["n_observed"].values.tolist()))
    nf = dict(zip(obs["survey"].values.tolist(), obs["n_observed_flux"].values.tolist()))
    print(f"{out}: observed pulsars per survey {n}; with flux {nf} ({obs.attrs['flux_source']})")
    if obs.attrs["flux_source"] == ATNF_FALLBACK_FLUX_SOURCE:
        print(f"WARNING: {ATNF_FALLBACK_FLUX_SOURCE}", file=sys.stderr)
    return 0


def _observed_counts(args: argparse.Namespace) -> int:
    from popstore.pulsars.catalog import filter_atnf, read_atnf, subset_counts

    table = subset_counts(args.atnf, args.meerkat, args.flux_fallback_atnf)
    _, counts = filter_atnf(read_atnf(args.atnf))
    print("ATNF filters (rows left): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"flux source: {table.attrs['flux_source']}")
    print(table.to_string())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from popstore.pulsars.catalog import check_compatible
    from popstore.pulsars.figures import compare_ppdot_figure
    from popstore.store import open_store

    out = new_output(args.output, args.overwrite)
    obs, sim = open_store(args.observed), open_store(args.simulated)
    check_compatible(obs, sim)
    if not 0 <= args.sample < sim.sizes["sample"]:
        raise UserError(f"--sample {args.sample} is outside the store's {sim.sizes['sample']} samples")
    print(compare_ppdot_figure(obs, sim, args.sample, out))
    return 0


def _dm_grid(args: argparse.Namespace) -> int:
    import numpy as np

    from popstore.pulsars.dm import DMGrid, interpolation_error

    grid = DMGrid.load(args.preset, args.cache_dir)
    rng = np.random.default_rng(args.seed)
    print(f"grid {args.preset}: {grid.dm.shape} nodes (l, b, d); {grid.attrs.get('implementation')}")
    for label, kw in (("all sky, d < 35 kpc", {}), ("|b| < 5 deg, d < 15 kpc", {"b_max": 5.0, "d_max": 15.0})):
        e = interpolation_error(grid, args.n_check, rng, **kw)
        print(f"{label}: |dDM| median {e['abs_median']:.3g}, p95 {e['abs_p95']:.3g}, p99 {e['abs_p99']:.3g} pc cm^-3; "
              f"relative median {e['rel_median']:.3g}, p95 {e['rel_p95']:.3g}, p99 {e['rel_p99']:.3g}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("observed", help="observed ATNF + MeerKAT TPA survey maps on a simulated store's bins")
    p.add_argument("atnf", nargs="?", help="ATNF export (';'-delimited, two header rows; see catalogs/README.md)")
    p.add_argument("--like", help="simulated pulsar_surveys store giving bins and map settings")
    p.add_argument("--meerkat", default=None, help="MeerKAT TPA census table (Posselt et al. 2023; PSRJ, ch6flux in "
                                                   "mJy): the flux source of the flux maps")
    p.add_argument("--flux-fallback-atnf", action="store_true",
                   help="without --meerkat: flux maps from the ATNF S1400 column instead (a labelled FALLBACK, "
                        "not the papers' flux maps)")
    p.add_argument("--pipeline", type=Path, default=None,
                   help="take atnf, meerkat, output from the pipeline's [observed] section and bins from its store")
    p.add_argument("-o", "--output", help="output Zarr store")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_observed)

    p = subparsers.add_parser("observed-counts", help="observed pulsars per survey after the filters and the flux join")
    p.add_argument("atnf", help="ATNF export (';'-delimited, two header rows; see catalogs/README.md)")
    p.add_argument("--meerkat", default=None, help="MeerKAT TPA census table (Posselt et al. 2023)")
    p.add_argument("--flux-fallback-atnf", action="store_true", help="without --meerkat: count ATNF S1400 instead")
    p.set_defaults(func=_observed_counts)

    p = subparsers.add_parser("compare-ppdot", help="figure: observed vs simulated P-Pdot survey maps")
    p.add_argument("observed", help="observed store (popstore observed)")
    p.add_argument("simulated", help="simulated pulsar_surveys store")
    p.add_argument("--sample", type=int, default=0, help="simulated sample to show")
    p.add_argument("-o", "--output", default="compare_ppdot.png", help="PNG file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_compare)

    p = subparsers.add_parser("dm-grid", help="compute/cache the YMW16 DM grid and report its interpolation error")
    p.add_argument("--preset", default="default", choices=("coarse", "default"), help="grid resolution")
    p.add_argument("--cache-dir", default=None, help="default $POPSTORE_CACHE or ~/.cache/popstore")
    p.add_argument("--n-check", type=int, default=2000, help="random points compared with direct YMW16 calls")
    p.add_argument("--seed", type=int, default=0, help="seed of the check points")
    p.set_defaults(func=_dm_grid)
