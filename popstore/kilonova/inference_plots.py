"""Figures of a kilonova posterior: a corner plot against published values, and posterior-predictive curves."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from popstore.kilonova.lightcurve import BAND_WAVELENGTH
from popstore.plotting import figure

_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _values(ds: xr.Dataset, name: str, log: bool) -> np.ndarray:
    v = ds[name].values
    return np.log10(v) if log else v


def plot_corner(
    posteriors: Mapping[str, xr.Dataset],
    names: Sequence[str],
    path: str | Path,
    published: Mapping[str, tuple[float, float, float]] | None = None,
    log: Sequence[str] = ("lambda_tilde", "ejecta_mass"),
    bins: int = 40,
) -> Path:
    """Corner plot of several posteriors (histograms and 2D contours of 68/95% mass) over the same ``names``.

    ``published`` maps a name to ``(low, value, high)``: a line at the value (none
    when it is None) and a shaded interval on the diagonal panels.
    """
    n = len(names)
    fig, axes = figure(n, n, figsize=(2.2 * n, 2.2 * n), squeeze=False)
    pub = {k: (np.log10 if k in log else np.asarray)(np.array([np.nan if v is None else v for v in p], float))
           for k, p in (published or {}).items()}
    cols = {name: {k: _values(ds, name, name in log) for k, ds in posteriors.items()} for name in names}
    ranges = {}
    for name in names:
        allv = np.concatenate([v for v in cols[name].values()])
        lo, hi = np.percentile(allv, [0.5, 99.5])
        if name in pub:
            lo, hi = min(lo, pub[name][0]), max(hi, pub[name][2])
        pad = 0.05 * (hi - lo) if hi > lo else 0.05
        ranges[name] = (lo - pad, hi + pad)
    for i, yi in enumerate(names):
        for j, xj in enumerate(names):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            for c, key in enumerate(posteriors):
                if i == j:
                    ax.hist(cols[xj][key], bins=bins, range=ranges[xj], density=True, histtype="step",
                            color=_COLOURS[c % 3], label=key)
                else:
                    h, xe, ye = np.histogram2d(cols[xj][key], cols[yi][key], bins=bins // 2,
                                               range=[ranges[xj], ranges[yi]])
                    levels = _mass_levels(h, (0.95, 0.68))
                    if levels is not None:
                        ax.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), h.T, levels=levels,
                                   colors=_COLOURS[c % 3], linewidths=1)
            for name, axis in ((xj, "x"), (yi, "y")):
                if name in pub and not (i == j and axis == "y"):
                    p = pub[name]
                    if np.isfinite(p[1]):
                        (ax.axvline if axis == "x" else ax.axhline)(p[1], color="k", ls="--", lw=0.8)
                    if i == j:
                        ax.axvspan(p[0], p[2], color="k", alpha=0.1, lw=0)
            ax.set_xlim(ranges[xj])
            if i != j:
                ax.set_ylim(ranges[yi])
            if i == n - 1:
                ax.set_xlabel(("log10 " if xj in log else "") + xj)
            if j == 0 and i > 0:
                ax.set_ylabel(("log10 " if yi in log else "") + yi)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    fig.suptitle("AT2017gfo posterior (lines: 68/95%); dashed, grey: published (see README)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _mass_levels(h: np.ndarray, masses: Sequence[float]) -> list[float] | None:
    """Histogram heights enclosing the given probability masses (increasing, as contour() needs)."""
    flat = np.sort(h.ravel())[::-1]
    if flat.sum() <= 0:
        return None
    cum = np.cumsum(flat) / flat.sum()
    levels = sorted({float(flat[min(np.searchsorted(cum, m), flat.size - 1)]) for m in masses})
    return levels if len(levels) == len(masses) and levels[0] > 0 else None


def predictive_grid(data: xr.Dataset, n_time: int = 100) -> xr.Dataset:
    """Every (band, time) pair of ``data``'s bands (by wavelength) and ``n_time`` times over its span, as
    observations (band-major), for a forward model to be evaluated on."""
    bands = sorted(set(str(b) for b in data["band"].values), key=BAND_WAVELENGTH.get)
    t = np.linspace(float(data["time"].min()), float(data["time"].max()), n_time)
    nan = np.full(len(bands) * n_time, np.nan)
    return xr.Dataset({"mag": ("obs", nan), "mag_err": ("obs", nan), "upper_limit": ("obs", nan > 0)},
                      coords={"time": ("obs", np.tile(t, len(bands))), "band": ("obs", np.repeat(bands, n_time))})


def plot_predictive(
    data: xr.Dataset,
    models: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    posteriors: Mapping[str, xr.Dataset],
    path: str | Path,
    n_draws: int = 200,
    seed: int = 0,
) -> Path:
    """Data (points; triangles: upper limits) with the 5-50-95% posterior-predictive curves per band.

    ``models[key](params (n, 4)) -> (n, n_obs)`` are forward models built on
    :func:`predictive_grid` ``(data)``; one per posterior key.
    """
    grid = predictive_grid(data)
    bands = list(dict.fromkeys(str(b) for b in grid["band"].values))
    t = grid["time"].values[: grid.sizes["obs"] // len(bands)]
    n = len(bands)
    ncol = 3
    nrow = -(-n // ncol)
    fig, axes = figure(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow), squeeze=False, sharex=True)
    rng = np.random.default_rng(seed)
    bands_t = data["band"].values.astype(str)
    for c, (key, post) in enumerate(posteriors.items()):
        params = np.stack([post[k].values for k in ("m1", "m2", "lambda1", "lambda2")], axis=1)
        pick = rng.choice(len(params), size=min(n_draws, len(params)), replace=False)
        mags = models[key](params[pick]).reshape(len(pick), n, t.size)
        with warnings.catch_warnings():  # all-NaN columns (where DU17 is undefined) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, med, hi = np.nanpercentile(mags, [5, 50, 95], axis=0)
        for b, band in enumerate(bands):
            ax = axes.flat[b]
            ax.fill_between(t, lo[b], hi[b], color=_COLOURS[c % 3], alpha=0.25, lw=0)
            ax.plot(t, med[b], color=_COLOURS[c % 3], lw=1.2, label=key)
    for b, band in enumerate(bands):
        ax = axes.flat[b]
        sel = bands_t == band
        det = sel & ~data["upper_limit"].values
        lim = sel & data["upper_limit"].values
        ax.errorbar(data["time"].values[det], data["mag"].values[det], data["mag_err"].values[det], fmt="o",
                    color="k", ms=3, lw=0.8)
        ax.scatter(data["time"].values[lim], data["mag"].values[lim], marker="v", color="k", s=18)
        ax.set_title(f"{band} band", fontsize=9)
        ax.invert_yaxis()
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("days since merger")
    axes[0, 0].set_ylabel("apparent AB mag")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("AT2017gfo (points; triangles: upper limits) and posterior-predictive 5-95% bands", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path

