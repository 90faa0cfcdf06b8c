"""Figures of stored maps, generic over any store's 2D input variables.

:func:`plot_maps` draws one sample's maps as a grid of ``pcolormesh`` panels on
the stored bin edges (``<dim>_bnds`` via the coordinate's ``bounds`` attr, or
midpoints between centres), with logarithmic axes where the coordinate has
``scale = "log"``, axis labels from ``long_name`` and ``units``, and a colour
bar in the variable's units. A variable with more than two non-``sample`` dims
(e.g. ``(survey, dec, ra)``) gets one panel per value of its leading dims; the
last two dims are (y, x). Panels are titled with the variable's ``long_name``; positive
maps that span more than two decades get a logarithmic colour scale (``log="auto"``).

Figures are made with :func:`figure` (a bare :class:`matplotlib.figure.Figure`, not pyplot),
so popstore never changes matplotlib's global backend, e.g. a Jupyter session's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from popstore.store import input_names, label_names

LOG_DECADES = 2.0  # log="auto": a positive map spanning more decades than this gets a log colour scale


def figure(*args: int, figsize: tuple[float, float] | None = None, layout: str | None = "constrained", **kw):
    """A new figure and its axes: ``fig.subplots(*args, **kw)`` on a :class:`~matplotlib.figure.Figure`.

    Unlike ``pyplot.subplots`` it registers nothing with pyplot and needs no backend; save
    it with ``fig.savefig``. ``layout`` as in :class:`~matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kw)


def use_log_scale(values: np.ndarray, log: bool | str = "auto") -> bool:
    """Whether to draw ``values`` with a logarithmic colour scale: ``log`` itself, or for ``"auto"`` whether
    the positive values span more than :data:`LOG_DECADES` decades (zeros and NaNs, e.g. empty bins, aside)."""
    if log != "auto":
        return bool(log)
    v = values[np.isfinite(values)]
    if v.size == 0 or (v < 0).any():
        return False
    pos = v[v > 0]
    return pos.size > 0 and np.log10(pos.max() / pos.min()) > LOG_DECADES


def map_variables(ds: xr.Dataset) -> list[str]:
    """Names of the ``role = "input"`` variables with at least two dims besides ``sample``, in simulator order."""
    return [k for k in input_names(ds) if len([d for d in ds[k].dims if d != "sample"]) >= 2]


def coordinate_edges(ds: xr.Dataset, dim: str) -> np.ndarray:
    """Bin edges of ``dim``: from its bounds variable, else midpoints of the centres (or 0..n)."""
    if dim not in ds.coords:
        return np.arange(ds.sizes[dim] + 1, dtype=float)
    c = ds[dim]
    bnds = c.attrs.get("bounds")
    if bnds and bnds in ds:
        b = np.asarray(ds[bnds].values, dtype=float)
        return np.append(b[:, 0], b[-1, 1])
    v = np.asarray(c.values, dtype=float)
    if v.size < 2:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if v.size else np.array([0.0, 1.0])
    log = c.attrs.get("scale") == "log"
    u = np.log(v) if log else v
    mid = 0.5 * (u[1:] + u[:-1])
    e = np.concatenate([[2 * u[0] - mid[0]], mid, [2 * u[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _label(ds: xr.Dataset, dim: str) -> str:
    if dim not in ds.coords:
        return dim
    a = ds[dim].attrs
    return f"{a.get('long_name', dim)} [{a.get('units', '1')}]"


def _panels(ds: xr.Dataset, sample: int | None, variables: Sequence[str]) -> list[tuple[str, str, xr.DataArray]]:
    """``(variable, title, map)`` per 2D panel of ``variables`` at ``sample`` (``None``: every sample,
    ``sample`` kept as the first dim of each map)."""
    out = []
    for name in variables:
        if name not in ds.data_vars:
            raise KeyError(f"variable {name!r} is not in the store; maps available: {map_variables(ds)}")
        da = ds[name]
        if "sample" in da.dims:
            da = da.isel(sample=sample) if sample is not None else da.transpose("sample", ...)
        if da.ndim - ("sample" in da.dims) < 2:
            raise ValueError(f"variable {name!r} has dims {da.dims}: a map needs at least two")
        lead = [d for d in da.dims[:-2] if d != "sample"]
        for idx in itertools.product(*(range(da.sizes[d]) for d in lead)):
            sel = dict(zip(lead, idx))
            sub = da.isel(sel)
            tag = ", ".join(f"{d}={ds[d].values[i] if d in ds.coords else i}" for d, i in sel.items())
            title = ds[name].attrs.get("long_name") or name
            out.append((name, title + (f" ({tag})" if tag else ""), sub))
    return out


def plot_maps(ds: xr.Dataset, sample: int = 0, variables: Sequence[str] | None = None, path: str | Path | None = None,
              ncols: int = 4, panel_size: float = 3.6, dpi: int = 110, log: bool | str = "auto"):
    """One sample's maps as a PNG grid (returns the path, or the figure when ``path`` is None).

    ``variables`` defaults to :func:`map_variables`; ``sample`` is a position along ``sample``;
    ``log``: logarithmic colour scale for every panel (True/False) or per panel (``"auto"``,
    see :func:`use_log_scale`).
    """
    from matplotlib.colors import LogNorm

    if "sample" in ds.dims and not 0 <= sample < ds.sizes["sample"]:
        raise IndexError(f"sample {sample} is outside the store's {ds.sizes['sample']} samples")
    names = list(variables) if variables is not None else map_variables(ds)
    if not names:
        raise ValueError("the store has no 2D input variables to plot")
    panels = _panels(ds, sample, names)
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = figure(nrows, ncols, figsize=(panel_size * 1.25 * ncols, panel_size * nrows), squeeze=False)
    for ax, (name, title, da) in zip(axes.flat, panels):
        ydim, xdim = da.dims
        values = np.asarray(da.values, dtype=float)
        norm = None
        if use_log_scale(values, log):
            pos = values[values > 0]
            norm = LogNorm(pos.min(), pos.max()) if pos.size else None
            values = np.where(values > 0, values, np.nan)  # empty bins stay blank
        im = ax.pcolormesh(coordinate_edges(ds, xdim), coordinate_edges(ds, ydim), values, shading="flat",
                           cmap="viridis", norm=norm)
        for d, set_scale in ((xdim, ax.set_xscale), (ydim, ax.set_yscale)):
            if d in ds.coords and ds[d].attrs.get("scale") == "log":
                set_scale("log")
        ax.set_xlabel(_label(ds, xdim))
        ax.set_ylabel(_label(ds, ydim))
        ax.set_title(title, fontsize=9)
        units = ds[name].attrs.get("units", "")
        fig.colorbar(im, ax=ax, label=f"{name}" + (f" [{units}]" if units else ""))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    label = f"sample {sample}" if "sample" in ds.dims else ""
    if "sample" in ds.dims:
        labels = [k for k in label_names(ds) if ds[k].dims == ("sample",)]
        if labels:
            label += ": " + ", ".join(f"{k}={float(ds[k].values[sample]):.3g}" for k in labels)
    fig.suptitle(label, fontsize=10)
    if path is None:
        return fig
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def predictive_totals(observed: xr.Dataset, predicted: xr.Dataset, variables: Sequence[str],
                      sample: int = 0) -> "pd.DataFrame":
    """A posterior predictive check on each panel's total (the sum over the map, e.g. the number of
    pulsars a survey detects): the observed total, the predictive median and 5-95% interval, and the
    predictive p-value P(T_pred >= T_obs) (Gelman, Meng & Stern 1996; near 0 or 1: the model misses it)."""
    import pandas as pd

    rows = {}
    for (_, title, obs), (_, _, pred) in zip(_panels(observed, sample, variables),
                                             _panels(predicted, None, variables)):
        t_obs = float(np.nansum(obs.values))
        t_pred = np.nansum(np.asarray(pred.values, dtype=float), axis=(-2, -1))
        q = np.quantile(t_pred, [0.05, 0.5, 0.95])
        rows[title] = {"observed": t_obs, "predictive 5%": q[0], "predictive median": q[1], "predictive 95%": q[2],
                       "p-value": float(np.mean(t_pred >= t_obs))}
    return pd.DataFrame(rows).T


def plot_predictive(observed: xr.Dataset, predicted: xr.Dataset, variables: Sequence[str], sample: int = 0,
                    path: str | Path | None = None, panel_size: float = 3.2, dpi: int = 110, log: bool | str = "auto"):
    """Posterior predictive check as a figure: for each map panel, the observed map, the mean of the maps
    simulated at posterior draws (``predicted``, one sample per draw) on the same colour scale, the
    standardised residual (observed - mean) / sd, and the predictive distribution of the map's total
    with the observed total marked (see :func:`predictive_totals`)."""
    from matplotlib.colors import LogNorm

    obs_panels = _panels(observed, sample, variables)
    pred_panels = _panels(predicted, None, variables)
    fig, axes = figure(len(obs_panels), 4, figsize=(panel_size * 4.6, panel_size * len(obs_panels)), squeeze=False)
    for row, ((name, title, obs), (_, _, pred)) in zip(axes, zip(obs_panels, pred_panels)):
        ydim, xdim = obs.dims[-2:]
        xe, ye = coordinate_edges(observed, xdim), coordinate_edges(observed, ydim)
        o = np.asarray(obs.values, dtype=float)
        p = np.asarray(pred.values, dtype=float)
        mean, sd = p.mean(0), p.std(0)
        both = np.concatenate([o.ravel(), mean.ravel()])
        norm = None
        if use_log_scale(both, log) and (both > 0).any():
            norm = LogNorm(both[both > 0].min(), both[both > 0].max())
            o, mean = np.where(o > 0, o, np.nan), np.where(mean > 0, mean, np.nan)
        else:
            from matplotlib.colors import Normalize

            norm = Normalize(np.nanmin(both), np.nanmax(both))
        units = observed[name].attrs.get("units", "")
        for ax, values, what in ((row[0], o, "observed"), (row[1], mean, "predictive mean")):
            im = ax.pcolormesh(xe, ye, values, shading="flat", cmap="viridis", norm=norm)
            ax.set_title(f"{title}: {what}", fontsize=8)
        fig.colorbar(im, ax=row[1], label=name + (f" [{units}]" if units else ""))
        z = np.where(sd > 0, (np.asarray(obs.values, dtype=float) - p.mean(0)) / np.where(sd > 0, sd, 1), np.nan)
        im = row[2].pcolormesh(xe, ye, z, shading="flat", cmap="RdBu_r", vmin=-4, vmax=4)
        row[2].set_title("(observed - mean) / sd", fontsize=8)
        fig.colorbar(im, ax=row[2])
        for ax in row[:3]:
            for d, set_scale in ((xdim, ax.set_xscale), (ydim, ax.set_yscale)):
                if d in observed.coords and observed[d].attrs.get("scale") == "log":
                    set_scale("log")
            ax.set_xlabel(_label(observed, xdim), fontsize=8)
            ax.set_ylabel(_label(observed, ydim), fontsize=8)
        totals = np.nansum(p, axis=(-2, -1))
        row[3].hist(totals, bins=30, color="C0", histtype="stepfilled", alpha=0.6, label="predictive")
        row[3].axvline(float(np.nansum(obs.values)), color="k", lw=2, label="observed")
        row[3].set_xlabel(f"total of the map{f' [{units}]' if units else ''}", fontsize=8)
        row[3].set_title(f"p = {np.mean(totals >= np.nansum(obs.values)):.2f}", fontsize=8)
        row[3].legend(fontsize=7)
    fig.suptitle(f"posterior predictive check: {predicted.sizes['sample']} simulations at posterior draws", fontsize=10)
    if path is None:
        return fig
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
