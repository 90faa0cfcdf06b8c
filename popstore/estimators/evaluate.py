"""Testing a moment network: predictions over a split, calibration metrics, plots.

Metrics per label (CMD benchmark, Villaescusa-Navarro et al. 2022, plus the
calibration checks of a moment network):

- ``rmse``: sqrt(<(mu - y)^2>) in label units, and ``rmse_norm`` in units of
  the label's training range;
- ``rel_error``: sqrt(<(y - mu)^2 / y^2>) (CMD's relative error);
- ``r2``: 1 - sum (y - mu)^2 / sum (y - <y>)^2; 0 for predicting the mean;
- ``chi2``: <((mu - y) / sigma)^2>, 1 for calibrated Gaussian errors;
- ``coverage_1sigma``: fraction of truths with |mu - y| < sigma, 0.683 for
  calibrated Gaussian errors;
- ``mean_sigma``: <sigma> in label units.

With ``orientations=8`` every test map is evaluated in all 8 symmetries of the
square (as CMD does) and each orientation counts as one prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from popstore.estimators.model import MomentModel, load_model
from popstore.estimators.preprocess import N_ORIENTATIONS, orient
from popstore.estimators.train import default_device
from popstore.plotting import figure
from popstore.store import open_store, text_array
from popstore.torchdata import MapDataset, make_loader

METRICS = ("rmse", "rmse_norm", "rel_error", "r2", "chi2", "coverage_1sigma", "mean_sigma")


def predict(
    model: MomentModel,
    store: str | Path,
    split: str | None = "test",
    orientations: int = 1,
    batch_size: int = 256,
    device: str | None = None,
) -> xr.Dataset:
    """Truth, posterior mean and sigma (label units) of every sample of ``split``.

    Returns a dataset with ``truth(sample, label)`` and
    ``mean, sigma(sample, orientation, label)``.
    """
    if orientations not in (1, N_ORIENTATIONS):
        raise ValueError(f"orientations must be 1 or {N_ORIENTATIONS}, got {orientations}")
    data = MapDataset(store, split, model.inputs, model.labels, normalize="none")
    if len(data) == 0:
        raise ValueError(f"{store}: split {split!r} is empty")
    h, w = model.network.config.shape
    if tuple(data.map_shape) != (h, w):
        raise ValueError(f"{store}: maps are {data.map_shape}, the model was trained on {h}x{w}")
    dev = default_device(device)
    model = model.to(dev).eval()
    means, sigmas, truths = [], [], []
    with torch.no_grad():
        for x, y in make_loader(data, batch_size, shuffle=False):
            x = x.to(dev)
            outs = [model.to_physical(*model(orient(x, k))) for k in range(orientations)]
            means.append(torch.stack([m for m, _ in outs], dim=1).cpu())
            sigmas.append(torch.stack([s for _, s in outs], dim=1).cpu())
            truths.append(y)
    coords = {"sample": data.indices, "orientation": np.arange(orientations), "label": text_array(model.labels)}
    units = text_array(_label_units(store, model.labels))
    return xr.Dataset(
        {
            "truth": (("sample", "label"), torch.cat(truths).numpy().astype(np.float64)),
            "mean": (("sample", "orientation", "label"), torch.cat(means).numpy().astype(np.float64),
                     {"long_name": "posterior mean"}),
            "sigma": (("sample", "orientation", "label"), torch.cat(sigmas).numpy().astype(np.float64),
                      {"long_name": "posterior standard deviation"}),
        },
        coords=coords | {"units": ("label", units)},
        attrs={"store": str(store), "split": split or "all", "inputs": ",".join(model.inputs)},
    )


def _label_units(store: str | Path, labels: list[str]) -> list[str]:
    ds = open_store(store)
    return [str(ds[n].attrs.get("units", "1")) for n in labels]


def metrics(pred: xr.Dataset, label_scale: np.ndarray | None = None) -> pd.DataFrame:
    """Summary metrics per label (see module docstring) of a :func:`predict` result."""
    t = pred["truth"].broadcast_like(pred["mean"]).values.reshape(-1, pred.sizes["label"])
    mu = pred["mean"].values.reshape(t.shape)
    sig = pred["sigma"].values.reshape(t.shape)
    err = mu - t
    rmse = np.sqrt(np.mean(err**2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        table = {
            "rmse": rmse,
            "rmse_norm": rmse / label_scale if label_scale is not None else np.full_like(rmse, np.nan),
            "rel_error": np.sqrt(np.mean(err**2 / t**2, axis=0)),
            "r2": 1.0 - np.sum(err**2, axis=0) / np.sum((t - t.mean(axis=0)) ** 2, axis=0),
            "chi2": np.mean((err / sig) ** 2, axis=0),
            "coverage_1sigma": np.mean(np.abs(err) < sig, axis=0),
            "mean_sigma": sig.mean(axis=0),
        }
    df = pd.DataFrame(table, index=pd.Index(pred["label"].values, name="label"))
    df.insert(0, "n", len(t))
    return df


def plot_truth_vs_prediction(pred: xr.Dataset, path: str | Path, max_points: int = 400) -> Path:
    """Posterior mean with 1-sigma error bars against the truth, one panel per label."""
    labels = list(pred["label"].values)
    fig, axes = figure(1, len(labels), figsize=(4.2 * len(labels), 4.0), squeeze=False)
    first = pred.isel(orientation=0, sample=slice(0, max_points))
    for ax, name in zip(axes[0], labels):
        t = first["truth"].sel(label=name).values
        m = first["mean"].sel(label=name).values
        s = first["sigma"].sel(label=name).values
        unit = str(pred["units"].sel(label=name).values)
        ax.errorbar(t, m, yerr=s, fmt="o", ms=2.5, lw=0.6, alpha=0.6, color="C0")
        lo, hi = float(min(t.min(), (m - s).min())), float(max(t.max(), (m + s).max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        suffix = " (dimensionless)" if unit == "1" else f" [{unit}]"
        ax.set_xlabel(f"true {name}{suffix}")
        ax.set_ylabel(f"predicted {name}{suffix}")
        ax.set_title(name)
    fig.suptitle(f"{Path(pred.attrs['store']).name}, {pred.attrs['split']} split: posterior mean with 1-sigma bars "
                 f"({first.sizes['sample']} shown)")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def make_test_report(
    model_path: str | Path,
    store: str | Path,
    split: str | None = "test",
    orientations: int | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Test a saved model on ``store``; write predictions, metrics and a plot; return the metrics.

    Files go to ``out_dir`` (default: the model's folder), prefixed ``name``
    (default: ``test_<store name>``): ``.zarr`` (truth, mean, sigma with label units),
    ``.csv`` (one row per sample and orientation), ``_metrics.csv`` and ``.png``.
    ``orientations`` defaults to 8 when the model was trained with rotations, else 1.
    """
    model = load_model(model_path)
    n_orient = orientations or (N_ORIENTATIONS if model.augment else 1)
    pred = predict(model, store, split, n_orient)
    table = metrics(pred, model.label_scale.numpy())
    out = Path(out_dir) if out_dir is not None else Path(model_path).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"test_{Path(store).name.removesuffix('.zarr')}"
    pred.to_zarr(out / f"{stem}.zarr", mode="w", zarr_format=3, consolidated=False)
    rows = pred[["mean", "sigma"]].to_dataframe().unstack("label")
    rows.columns = [f"{var}_{label}" for var, label in rows.columns]
    truth = pred["truth"].to_dataframe().unstack("label")["truth"].add_prefix("truth_")
    rows.join(truth, on="sample").to_csv(out / f"{stem}.csv")
    table.to_csv(out / f"{stem}_metrics.csv")
    plot_truth_vs_prediction(pred, out / f"{stem}.png")
    return table


def cross_suite(
    model_path: str | Path,
    stores: Mapping[str, str | Path],
    split: str | None = "test",
    out_dir: str | Path | None = None,
) -> pd.DataFrame:
    """The CMD robustness check: test one model on several stores with the same variables.

    ``stores`` maps a short name (e.g. ``"trained-on"``, ``"other simulator"``)
    to a store path; returns the metrics of every store stacked with a
    ``store`` index level. Inputs are preprocessed with the *training* store's
    statistics, which travel with the model.
    """
    tables = {name: make_test_report(model_path, path, split, out_dir=out_dir, name=f"cross_{name}")
              for name, path in stores.items()}
    return pd.concat(tables, names=["store"])
