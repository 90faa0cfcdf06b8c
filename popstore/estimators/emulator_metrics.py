"""Accuracy of a curve emulator against the simulator on held-out samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def abs_error_stats(
    predicted: np.ndarray,
    true: np.ndarray,
    channels: Sequence[str],
    mask: np.ndarray | None = None,
    quantiles: Sequence[float] = (0.5, 0.9),
) -> pd.DataFrame:
    """Quantiles of ``|predicted - true|`` per channel (axis 1), over samples and times.

    ``predicted`` and ``true`` have shape (n, n_channel, n_time); ``mask`` (same
    shape) selects the points that count (e.g. where the model was defined).
    Returns one row per channel with columns ``q50, q90, ...`` and ``n_points``.
    """
    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    if predicted.shape != true.shape or predicted.ndim != 3 or predicted.shape[1] != len(channels):
        raise ValueError(f"shape mismatch: predicted {predicted.shape}, true {true.shape}, {len(channels)} channels")
    mask = np.ones(true.shape, bool) if mask is None else np.asarray(mask, bool)
    err = np.abs(predicted - true)
    rows = []
    for c, name in enumerate(channels):  # a handful of bands
        e = err[:, c][mask[:, c]]
        rows.append({"channel": name, **{f"q{round(q * 100)}": np.quantile(e, q) if e.size else np.nan for q in quantiles},
                     "n_points": e.size})
    return pd.DataFrame(rows).set_index("channel")


def binned_abs_error(
    predicted: np.ndarray,
    true: np.ndarray,
    channels: Sequence[str],
    time: np.ndarray,
    time_bins: Sequence[float],
    mask: np.ndarray | None = None,
    quantile: float = 0.5,
) -> pd.DataFrame:
    """The ``quantile`` of ``|predicted - true|`` per channel (rows) and time bin (columns ``[lo, hi)``).

    Arrays are (n, n_channel, n_time); ``time`` (n_time,) in the units of ``time_bins``.
    Empty cells are NaN.
    """
    err = np.abs(np.asarray(predicted, float) - np.asarray(true, float))
    mask = np.ones(err.shape, bool) if mask is None else np.asarray(mask, bool)
    edges = np.asarray(time_bins, float)
    which = np.digitize(np.asarray(time, float), edges) - 1  # bin of each time, -1 / len-1 outside
    cols = {}
    for k in range(len(edges) - 1):
        sel = mask & (which == k)[None, None, :]
        cols[f"[{edges[k]:g}, {edges[k + 1]:g})"] = [
            np.quantile(err[:, c][sel[:, c]], quantile) if sel[:, c].any() else np.nan for c in range(len(channels))]
    return pd.DataFrame(cols, index=pd.Index(list(channels), name="channel"))


def grouped_abs_error(
    predicted: np.ndarray,
    true: np.ndarray,
    groups: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Median, 90th percentile and fraction above ``threshold`` of ``|predicted - true|`` per sample group.

    ``groups`` (n,) labels each sample (e.g. its quartile of a parameter); rows are sorted group labels.
    """
    err = np.abs(np.asarray(predicted, float) - np.asarray(true, float))
    mask = np.ones(err.shape, bool) if mask is None else np.asarray(mask, bool)
    groups = np.asarray(groups)
    rows = []
    for g in np.unique(groups):
        e = err[groups == g][mask[groups == g]]
        rows.append({"group": g, "q50": np.median(e), "q90": np.quantile(e, 0.9),
                     f"frac>{threshold:g}": float((e > threshold).mean()), "n_points": e.size})
    return pd.DataFrame(rows).set_index("group")
