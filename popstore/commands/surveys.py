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
from pathlib import Path

import numpy as np
import xarray as xr


def _observed(args: argparse.Namespace) -> int:
    from popstore.catalog import check_compatible, observed_store, write_observed_store
    from popstore.store import open_store

    like = open_store(args.like)
    obs = observed_store(args.atnf, like, meerkat_path=args.meerkat)
    check_compatible(obs, like)
    write_observed_store(obs, args.output)
    n = dict(zip(obs["survey"].values.tolist(), obs["n_observed"].values.tolist()))
    nf = dict(zip(obs["survey"].values.tolist(), obs["n_observed_flux"].values.tolist()))
    print(f"{args.output}: observed pulsars per survey {n}; with flux {nf} ({obs.attrs['flux_source']})")
    return 0


def _edges(ds: xr.Dataset, name: str) -> np.ndarray:
    b = ds[ds[name].attrs["bounds"]].values
    return np.append(b[:, 0], b[-1, 1])


def compare_ppdot_figure(observed: xr.Dataset, simulated: xr.Dataset, sample: int, path: str | Path) -> Path:
    """Observed vs simulated ``ppdot_map`` and ``ppdot_map_fluxes`` per survey (rows), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    var = observed["ppdot_map"]
    ydim, xdim = var.dims[-2:]
    xe, ye = _edges(observed, xdim), _edges(observed, ydim)
    log = observed[xdim].attrs.get("scale") == "log"
    surveys = [str(s) for s in observed["survey"].values]
    cols = [("ppdot_map", observed, "observed"), ("ppdot_map", simulated, f"simulated #{sample}"),
            ("ppdot_map_fluxes", observed, "observed"), ("ppdot_map_fluxes", simulated, f"simulated #{sample}")]
    fig, axes = plt.subplots(len(surveys), 4, figsize=(16, 3.6 * len(surveys)), squeeze=False, constrained_layout=True)
    for i, s in enumerate(surveys):
        for j, (name, ds, who) in enumerate(cols):
            m = ds[name].isel(sample=0 if ds is observed else sample).sel(survey=s).values
            ax = axes[i, j]
            im = ax.pcolormesh(xe, ye, m, shading="flat", cmap="viridis" if name == "ppdot_map" else "magma")
            if log:
                ax.set_xscale("log")
                ax.set_yscale("log")
            what = f"density, N = {m.sum():.0f}" if name == "ppdot_map" else "mean log10 S1400"
            ax.set_title(f"{s}: {who}, {what}")
            ax.set_xlabel(f"{observed[xdim].attrs.get('long_name', xdim)} [{observed[xdim].attrs.get('units', '')}]")
            ax.set_ylabel(f"{observed[ydim].attrs.get('long_name', ydim)} [{observed[ydim].attrs.get('units', '')}]")
            fig.colorbar(im, ax=ax, label=f"{ds[name].attrs.get('units', '')} (smoothed)")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _compare(args: argparse.Namespace) -> int:
    from popstore.catalog import check_compatible
    from popstore.store import open_store

    obs, sim = open_store(args.observed), open_store(args.simulated)
    check_compatible(obs, sim)
    if not 0 <= args.sample < sim.sizes["sample"]:
        raise SystemExit(f"--sample {args.sample} is outside the store's {sim.sizes['sample']} samples")
    print(compare_ppdot_figure(obs, sim, args.sample, args.output))
    return 0


def _dm_grid(args: argparse.Namespace) -> int:
    from popstore.simulators.pulsar.dm import DMGrid, interpolation_error

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
    p.set_defaults(func=_observed)

    p = subparsers.add_parser("compare-ppdot", help="figure: observed vs simulated P-Pdot survey maps")
    p.add_argument("observed", help="observed store (popstore observed)")
    p.add_argument("simulated", help="simulated pulsar_surveys store")
    p.add_argument("--sample", type=int, default=0, help="simulated sample to show")
    p.add_argument("-o", "--output", default="compare_ppdot.png")
    p.set_defaults(func=_compare)

    p = subparsers.add_parser("dm-grid", help="compute/cache the YMW16 DM grid and report its interpolation error")
    p.add_argument("--preset", default="default", choices=("coarse", "default"))
    p.add_argument("--cache-dir", default=None, help="default $POPSTORE_CACHE or ~/.cache/popstore")
    p.add_argument("--n-check", type=int, default=2000, help="random points compared with direct YMW16 calls")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_dm_grid)
