"""``popstore observed``, ``popstore compare-ppdot`` and ``popstore dm-grid``: the observed pulsar maps.

- ``popstore observed ATNF.csv --like STORE [--meerkat Census_Table5.csv] -o obs.zarr``
  builds the observed survey maps on the bins of a simulated ``pulsar_surveys`` store.
- ``popstore compare-ppdot obs.zarr STORE [--sample 0] -o ppdot.png`` draws the observed
  and one simulated population's P-Pdot density (and flux) maps side by side per survey.
- ``popstore dm-grid [--preset default]`` computes (once) and caches the YMW16 DM grid and
  prints its interpolation error against direct YMW16 calls.
"""

from __future__ import annotations

import argparse

from popstore.cli import new_output
from popstore.errors import UserError


def _observed(args: argparse.Namespace) -> int:
    from popstore.pulsars.catalog import check_compatible, observed_store, write_observed_store
    from popstore.store import open_store

    out = new_output(args.output, args.overwrite)
    like = open_store(args.like)
    obs = observed_store(args.atnf, like, meerkat_path=args.meerkat)
    check_compatible(obs, like)
    write_observed_store(obs, out)
    n = dict(zip(obs["survey"].values.tolist(), obs["n_observed"].values.tolist()))
    nf = dict(zip(obs["survey"].values.tolist(), obs["n_observed_flux"].values.tolist()))
    print(f"{args.output}: observed pulsars per survey {n}; with flux {nf} ({obs.attrs['flux_source']})")
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
    p = subparsers.add_parser("observed", help="observed ATNF (+MeerKAT) survey maps on a simulated store's bins")
    p.add_argument("atnf", help="ATNF export (';'-delimited, two header rows; see catalogs/README.md)")
    p.add_argument("--like", required=True, help="simulated pulsar_surveys store giving bins and map settings")
    p.add_argument("--meerkat", default=None, help="MeerKAT TPA Census_Table5.csv (PSRJ, ch6flux in mJy); "
                                                   "default: ATNF S1400 fallback")
    p.add_argument("-o", "--output", required=True, help="output Zarr store")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_observed)

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
