"""Figures of observed and simulated pulsar survey maps."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from popstore.plotting import coordinate_edges, figure


def compare_ppdot_figure(observed: xr.Dataset, simulated: xr.Dataset, sample: int, path: str | Path) -> Path:
    """Observed vs simulated ``ppdot_map`` and ``ppdot_map_fluxes`` per survey (rows), saved as a PNG."""
    var = observed["ppdot_map"]
    ydim, xdim = var.dims[-2:]
    xe, ye = coordinate_edges(observed, xdim), coordinate_edges(observed, ydim)
    log = observed[xdim].attrs.get("scale") == "log"
    surveys = [str(s) for s in observed["survey"].values]
    cols = [("ppdot_map", observed, "observed"), ("ppdot_map", simulated, f"simulated #{sample}"),
            ("ppdot_map_fluxes", observed, "observed"), ("ppdot_map_fluxes", simulated, f"simulated #{sample}")]
    fig, axes = figure(len(surveys), 4, figsize=(16, 3.6 * len(surveys)), squeeze=False)
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
    return path
