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
