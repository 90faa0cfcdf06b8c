"""Testing a moment network: predictions over a split, calibration metrics, plots.

Metrics per label (CMD benchmark, Villaescusa-Navarro et al. 2022, plus the
calibration checks of a moment network):

- ``rmse``: sqrt(<(mu - y)^2>) in label units, and ``rmse_norm`` in units of
  the label's training range;
- ``rel_error``: sqrt(<(y - mu)^2 / y^2>) (CMD's relative error);
- ``r2``: 1 - sum (y - mu)^2 / sum (y - <y>)^2; 0 for predicting the mean;
- ``chi2``: <((mu - y) / sigma)^2>, 1 for calibrated Gaussian errors;
- ``coverage_1sigma``, ``coverage_2sigma``, ``coverage_3sigma``: fraction of
  truths with |mu - y| < k sigma, 0.683, 0.954 and 0.997 for calibrated
  Gaussian errors;
- ``mean_sigma``: <sigma> in label units.

:func:`coverage_by_truth` gives the same coverages (and RMSE, mean sigma) in
equal-width bins of each true label: a network that pulls its means towards
the centre of the prior is over-confident at the edges of the prior range and
under-confident in the middle, which the global numbers average away.

With ``orientations=8`` every test map is evaluated in all 8 symmetries of the
square (as CMD does) and each orientation counts as one prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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

METRICS = ("rmse", "rmse_norm", "rel_error", "r2", "chi2", "coverage_1sigma", "coverage_2sigma", "coverage_3sigma",
           "mean_sigma")
#: Coverage of k-sigma intervals for Gaussian errors, erf(k / sqrt 2).
GAUSSIAN_COVERAGE = {1: 0.6826894921370859, 2: 0.9544997361036416, 3: 0.9973002039367398}


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


def _flat(pred: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """truth, mean, sigma as ``[sample * orientation, label]`` (each orientation one prediction)."""
    t = pred["truth"].broadcast_like(pred["mean"]).transpose("sample", "orientation", "label").values
    t = t.reshape(-1, pred.sizes["label"])
    mu = pred["mean"].transpose("sample", "orientation", "label").values.reshape(t.shape)
    sig = pred["sigma"].transpose("sample", "orientation", "label").values.reshape(t.shape)
    return t, mu, sig


def metrics(pred: xr.Dataset, label_scale: np.ndarray | None = None) -> pd.DataFrame:
    """Summary metrics per label (see module docstring) of a :func:`predict` result."""
    t, mu, sig = _flat(pred)
    err = mu - t
    rmse = np.sqrt(np.mean(err**2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        table = {
            "rmse": rmse,
            "rmse_norm": rmse / label_scale if label_scale is not None else np.full_like(rmse, np.nan),
            "rel_error": np.sqrt(np.mean(err**2 / t**2, axis=0)),
            "r2": 1.0 - np.sum(err**2, axis=0) / np.sum((t - t.mean(axis=0)) ** 2, axis=0),
            "chi2": np.mean((err / sig) ** 2, axis=0),
            **{f"coverage_{k}sigma": np.mean(np.abs(err) < k * sig, axis=0) for k in GAUSSIAN_COVERAGE},
            "mean_sigma": sig.mean(axis=0),
        }
    df = pd.DataFrame(table, index=pd.Index(pred["label"].values, name="label"))
    df.insert(0, "n", len(t))
    return df


def coverage_by_truth(pred: xr.Dataset, n_bins: int = 5) -> pd.DataFrame:
    """Coverage at 1, 2, 3 sigma, RMSE and mean sigma in ``n_bins`` equal-width bins of each true label.

    Rows are indexed by ``(label, bin)``; ``truth_lo``/``truth_hi`` are the bin
    edges (the last bin includes its upper edge), ``n`` counts predictions
    (every orientation) and ``n_maps`` distinct samples.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    t, mu, sig = _flat(pred)
    n_orient = pred.sizes["orientation"]
    err = np.abs(mu - t)
    rows = []
    for j, name in enumerate(pred["label"].values):
        edges = np.linspace(t[:, j].min(), t[:, j].max(), n_bins + 1)
        idx = np.clip(np.searchsorted(edges, t[:, j], side="right") - 1, 0, n_bins - 1)
        n = np.bincount(idx, minlength=n_bins)
        with np.errstate(divide="ignore", invalid="ignore"):
            cols = {f"coverage_{k}sigma": np.bincount(idx, err[:, j] < k * sig[:, j], n_bins) / n
                    for k in GAUSSIAN_COVERAGE}
            cols["rmse"] = np.sqrt(np.bincount(idx, err[:, j] ** 2, n_bins) / n)
            cols["mean_sigma"] = np.bincount(idx, sig[:, j], n_bins) / n
        rows.append(pd.DataFrame({"label": name, "bin": np.arange(n_bins), "truth_lo": edges[:-1],
                                  "truth_hi": edges[1:], "n": n, "n_maps": n // n_orient} | cols))
    return pd.concat(rows, ignore_index=True).set_index(["label", "bin"])


def plot_coverage_by_truth(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Coverage at 1, 2, 3 sigma against the true label (a :func:`coverage_by_truth` table), one panel per
    label, with the Gaussian expectation as dashed lines and binomial errors from the number of maps."""
    labels = list(dict.fromkeys(table.index.get_level_values("label")))
    fig, axes = figure(1, len(labels), figsize=(4.2 * len(labels), 3.8), squeeze=False)
    for ax, name in zip(axes[0], labels):
        rows = table.loc[name]
        centre = 0.5 * (rows["truth_lo"] + rows["truth_hi"])
        for k, expected in GAUSSIAN_COVERAGE.items():
            p = rows[f"coverage_{k}sigma"]
            err = np.sqrt(p * (1 - p) / rows["n_maps"].clip(lower=1))
            ax.errorbar(centre, p, yerr=err, fmt="o-", ms=3, color=f"C{k - 1}", label=f"{k} sigma")
            ax.axhline(expected, color=f"C{k - 1}", ls="--", lw=0.8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"true {name} (bin centre)")
        ax.set_ylabel("coverage")
        ax.set_title(name)
    axes[0][0].legend(loc="lower center", fontsize=8)
    fig.suptitle(title or "coverage by true value (dashed: Gaussian expectation)", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


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


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`make_test_report` measured and where it wrote it."""

    metrics: pd.DataFrame
    coverage: pd.DataFrame
    files: dict[str, Path]

    def __str__(self) -> str:
        fmt = {"float_format": lambda v: f"{v:.4g}"}
        return (f"{self.metrics.to_string(**fmt)}\n\ncoverage by bin of the true value "
                f"(Gaussian: 0.683, 0.954, 0.997):\n{self.coverage.to_string(**fmt)}")


def make_test_report(
    model_path: str | Path,
    store: str | Path,
    split: str | None = "test",
    orientations: int | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
    n_bins: int = 5,
) -> EvaluationReport:
    """Test a saved model on ``store``; write predictions, metrics, coverage by truth bin and plots.

    Files go to ``out_dir`` (default: the model's folder), prefixed ``name``
    (default: ``test_<store name>``): ``.zarr`` (truth, mean, sigma with label units),
    ``.csv`` (one row per sample and orientation), ``_metrics.csv``,
    ``_coverage.csv`` (:func:`coverage_by_truth` with ``n_bins`` bins), ``.png``
    (truth vs prediction) and ``_coverage.png``.
    ``orientations`` defaults to 8 when the model was trained with rotations, else 1.
    """
    model = load_model(model_path)
    n_orient = orientations or (N_ORIENTATIONS if model.augment else 1)
    pred = predict(model, store, split, n_orient)
    table = metrics(pred, model.label_scale.numpy())
    bins = coverage_by_truth(pred, n_bins)
    out = Path(out_dir) if out_dir is not None else Path(model_path).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"test_{Path(store).name.removesuffix('.zarr')}"
    files = {k: out / f"{stem}{suffix}" for k, suffix in
             [("predictions", ".zarr"), ("table", ".csv"), ("metrics", "_metrics.csv"), ("coverage", "_coverage.csv"),
              ("figure", ".png"), ("coverage_figure", "_coverage.png")]}
    pred.to_zarr(files["predictions"], mode="w", zarr_format=3, consolidated=False)
    rows = pred[["mean", "sigma"]].to_dataframe().unstack("label")
    rows.columns = [f"{var}_{label}" for var, label in rows.columns]
    truth = pred["truth"].to_dataframe().unstack("label")["truth"].add_prefix("truth_")
    rows.join(truth, on="sample").to_csv(files["table"])
    table.to_csv(files["metrics"])
    bins.to_csv(files["coverage"])
    plot_truth_vs_prediction(pred, files["figure"])
    plot_coverage_by_truth(bins, files["coverage_figure"],
                           f"{Path(store).name}, {pred.attrs['split']} split: coverage by true value\n"
                           f"({pred.sizes['sample']} maps x {n_orient} orientations; dashed: Gaussian)")
    return EvaluationReport(table, bins, files)


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
    tables = {name: make_test_report(model_path, path, split, out_dir=out_dir, name=f"cross_{name}").metrics
              for name, path in stores.items()}
    return pd.concat(tables, names=["store"])
