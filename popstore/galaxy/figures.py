"""Figures of the flow/acceleration workflow, each drawn from cached figure data.

Every figure has its data in a netCDF file next to the PNG (same stem,
``.nc``). :func:`cached_figure` computes and writes the data only when the
cache is missing (or ``recompute``), then draws from the cache, so a figure
can be restyled without retraining or re-evaluating anything.
Figures: accelerations against the truth (An et al. 2021, Fig. 4-5 style),
training losses per ensemble member, and 2D slices of the learned log-DF.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from popstore.estimators.flows import LOSSES
from popstore.galaxy.dynamics.metrics import vector_error, x_component_error
from popstore.plotting import figure

PHASE_SPACE = ("x", "y", "z", "vx", "vy", "vz")
UNITS = {"x": "kpc", "y": "kpc", "z": "kpc", "vx": "km/s", "vy": "km/s", "vz": "km/s"}


def cached_figure(png: str | Path, compute: Callable[[], xr.Dataset], draw: Callable[[xr.Dataset, Path], None],
                  recompute: bool = False) -> Path:
    """Draw ``png`` from ``png.with_suffix('.nc')``, computing and caching that data first if needed."""
    png = Path(png)
    cache = png.with_suffix(".nc")
    png.parent.mkdir(parents=True, exist_ok=True)
    if recompute or not cache.exists():
        compute().to_netcdf(cache, engine="h5netcdf")
    with xr.open_dataset(cache, engine="h5netcdf") as ds:
        draw(ds.load(), png)
    return png


def loss_data(out_dir: str | Path, seeds: Sequence[int]) -> xr.Dataset:
    """Per-epoch train/valid losses of every member as (seed, epoch) arrays (NaN past a member's last epoch)."""
    tables = {s: pd.read_csv(Path(out_dir) / f"seed_{s}" / LOSSES) for s in seeds}
    n = max(len(t) for t in tables.values())
    arr = {k: np.full((len(seeds), n), np.nan) for k in ("train", "valid", "lr")}
    for i, t in enumerate(tables.values()):
        for k, a in arr.items():
            a[i, : len(t)] = t[k].values
    attrs = {"units": "1", "long_name": "mean negative log-likelihood per star (rescaled variables)"}
    return xr.Dataset({"train": (("seed", "epoch"), arr["train"], attrs), "valid": (("seed", "epoch"), arr["valid"], attrs),
                       "lr": (("seed", "epoch"), arr["lr"], {"long_name": "learning rate"})},
                      coords={"seed": list(seeds), "epoch": np.arange(n)})


def draw_losses(ds: xr.Dataset, png: Path) -> None:
    """Train (solid) and validation (dashed) losses; the limits show every epoch of a short run."""
    fig, ax = figure(figsize=(6, 4))
    short = ds.sizes["epoch"] <= 20
    for i, s in enumerate(ds.seed.values):
        ax.plot(ds.epoch, ds.train[i], color=f"C{i}", lw=1, marker="o" if short else None, ms=3, label=f"seed {s} train")
        if np.isfinite(ds.valid[i]).any():
            ax.plot(ds.epoch, ds.valid[i], color=f"C{i}", lw=1, ls="--", marker="s" if short else None, ms=3, label=f"seed {s} valid")
    values = np.concatenate([ds.train.values.ravel(), ds.valid.values.ravel()])
    values = values[np.isfinite(values)]
    lo, hi = values.min(), values.max()
    if not short:  # long runs: the first epochs would flatten the converged part
        hi = min(hi, lo + max(0.6, np.nanmax(ds.train.isel(epoch=slice(5, None)).values) - lo))
    pad = 0.05 * max(hi - lo, 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(-0.5, ds.sizes["epoch"] - 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL per star [nats]")
    ax.set_title("training losses (rescaled variables)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(png, dpi=120)


LABELS = {"ensemble": "ensemble", "ensemble_f_weighted": "ensemble, f-weighted rows (papers')", "exact_df": "exact DF",
          "missing_rv": "factorised DF n(x) p(v|x) (missing v_los)", "seed_0": "ensemble members"}
STYLES = {"ensemble": {"color": "C3", "lw": 2}, "ensemble_f_weighted": {"color": "C1", "lw": 1.2, "ls": "--"},
          "exact_df": {"color": "C0", "ls": "", "marker": "o", "ms": 3}, "missing_rv": {"color": "C2", "lw": 1.5, "ls": "-."}}


def draw_accelerations(ds: xr.Dataset, png: Path) -> None:
    """|a| against position with the truth, and the relative errors of every model in percent.

    Both metrics: the 3D vector error |a - a_true| / |a_true| of every model
    and, for positions on the x axis, the papers' x-component error
    |a_x / a_x,true - 1| of the ensemble (dotted).
    """
    dim = next(d for d in ds.truth.dims if d != "component")
    coord = ds[dim]
    truth = np.linalg.norm(ds.truth.values, axis=1)
    fig, (top, bot) = figure(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(coord, truth, "k-", lw=2, label="truth")
    for k in ds.data_vars:
        if not k.startswith("acc_"):
            continue
        name = k[4:]
        style = STYLES.get(name, {"color": "0.6", "lw": 0.8})
        top.plot(coord, np.linalg.norm(ds[k].values, axis=1), label=LABELS.get(name), **style)
        bot.plot(coord, 100 * vector_error(ds[k].values, ds.truth.values), **style)
    if "acc_ensemble" in ds and np.allclose(ds.position.values[:, 1:], 0):
        bot.plot(coord, 100 * x_component_error(ds.acc_ensemble.values, ds.truth.values), color="C3", lw=1, ls=":",
                 label="ensemble, x-component |a$_x$/a$_{x,true}$ - 1|")
        bot.legend(fontsize=7)
    if dim == "r":
        top.set_xscale("log"), top.set_yscale("log")
    top.set_ylabel("|a| [km$^2$ s$^{-2}$ kpc$^{-1}$]")
    top.legend(fontsize=8)
    bot.set_ylabel("3D: |a - a$_{true}$| / |a$_{true}$| [%]")
    bot.set_xlabel(f"{coord.attrs.get('long_name', dim)} [{coord.attrs.get('units', '')}]")
    fig.savefig(png, dpi=120)


def df_slice_data(log_dfs: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], axes: Sequence[str],
                  ranges: Sequence[Sequence[float]], fixed: Mapping[str, float], n: int = 120) -> xr.Dataset:
    """log f on an ``n x n`` grid over two phase-space ``axes`` (ranges), the other four coordinates ``fixed``.

    ``log_dfs`` maps a name to a function of (m, 6) phase-space points (x, y, z, vx, vy, vz).
    """
    if len(axes) != 2 or set(axes) - set(PHASE_SPACE):
        raise ValueError(f"axes must be two of {PHASE_SPACE}, got {axes}")
    missing = set(PHASE_SPACE) - set(axes) - set(fixed)
    if missing:
        raise ValueError(f"fix the coordinates {sorted(missing)}")
    g0, g1 = (np.linspace(*map(float, r), n) for r in ranges)
    m0, m1 = np.meshgrid(g0, g1, indexing="ij")
    pts = np.empty((n * n, 6))
    for j, name in enumerate(PHASE_SPACE):
        pts[:, j] = m0.ravel() if name == axes[0] else m1.ravel() if name == axes[1] else float(fixed[name])
    with torch.no_grad():
        data = {f"logf_{k}": (tuple(axes), f(torch.tensor(pts)).numpy().reshape(n, n), {"long_name": f"log f, {k}"}) for k, f in log_dfs.items()}
    coords = {a: (a, g, {"units": UNITS[a]}) for a, g in zip(axes, (g0, g1))}
    return xr.Dataset(data, coords=coords, attrs={f"fixed_{k}": float(v) for k, v in fixed.items()})


def draw_df_slice(ds: xr.Dataset, png: Path) -> None:
    """log f of every model on the slice; with an exact DF, only within its support (bound orbits, |v| < v_esc)."""
    names = list(ds.data_vars)
    a0, a1 = ds[names[0]].dims
    fig, axs = figure(1, len(names), figsize=(4.8 * len(names) + 1, 4.2), squeeze=False)
    support = np.isfinite(ds["logf_exact"].values) if "logf_exact" in ds else np.ones(ds[names[0]].shape, dtype=bool)
    finite = np.concatenate([ds[k].values[support & np.isfinite(ds[k].values)] for k in names])
    vmax = finite.max()
    for ax, k in zip(axs[0], names):
        im = ax.pcolormesh(ds[a0], ds[a1], np.where(support, ds[k].values, np.nan).T, vmin=vmax - 12, vmax=vmax, shading="auto")
        if not support.all():
            ax.contour(ds[a0], ds[a1], support.T.astype(float), levels=[0.5], colors="k", linewidths=0.8)
        ax.set_title(k[5:])
        ax.set_xlabel(f"{a0} [{UNITS[a0]}]")
        ax.set_ylabel(f"{a1} [{UNITS[a1]}]")
    fig.colorbar(im, ax=axs[0].tolist(), label="ln f, f in (kpc km/s)$^{-3}$, unit total")
    fixed = ", ".join(f"{k[6:]}={v:g}" for k, v in ds.attrs.items() if k.startswith("fixed_"))
    edge = "; black line: escape speed (edge of the exact DF's support)" if not support.all() else ""
    fig.suptitle(f"DF slice at {fixed}{edge}", fontsize=9)
    fig.savefig(png, dpi=120)
