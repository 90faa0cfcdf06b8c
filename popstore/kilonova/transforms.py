"""NaN handling of DU17 light curves before they are fed to a network.

DU17 magnitudes are undefined (NaN) before ``t = 2 (100 Mej)^(1/3.2)`` days,
after the end of the bolometric-correction fits, and everywhere for binaries
without ejecta. :func:`downsample_fill` is the transform used for emulator
training:

1. keep every ``factor``-th time (``t[::factor]``; KilonovaML: 1101 -> 10 points
   with factor 120);
2. replace each NaN by the value at the *nearest valid time* of the same
   (sample, band) curve; at equal distance the earlier time wins;
3. a curve with no valid point at all is left NaN and *flagged* in ``empty``;
   it is never silently filled (KilonovaML wrote 0 mag there, a physically
   absurd value that the network then had to learn).

Callers drop (or mask) flagged samples: :func:`valid_samples`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class FilledCurves:
    """Result of :func:`downsample_fill`.

    values : (..., n_time') magnitudes, NaN only where ``empty``;
    time_index : indices of the kept times in the input grid;
    empty : (...) True for curves that had no valid point after downsampling;
    filled : (..., n_time') True where a value was copied from a neighbour.
    """

    values: np.ndarray
    time_index: np.ndarray
    empty: np.ndarray
    filled: np.ndarray


def fill_nearest(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaNs along the last axis from the nearest finite entry (ties: the earlier one).

    Returns ``(filled, empty)``; all-NaN rows stay NaN and are flagged in ``empty``.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    valid = np.isfinite(x)
    idx = np.arange(n)
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, n), axis=-1), axis=-1), axis=-1)
    use_prev = (prev >= 0) & ((nxt >= n) | (idx - prev <= nxt - idx))
    src = np.where(use_prev, prev, nxt)
    empty = ~valid.any(axis=-1)
    src = np.where(empty[..., None], idx, src)  # all-NaN rows: keep their NaN
    return np.take_along_axis(x, src, axis=-1), empty


def downsample_fill(mag: ArrayLike, factor: int = 120, index: ArrayLike | None = None) -> FilledCurves:
    """Keep every ``factor``-th time of ``mag`` (..., n_time), or the times at ``index``, then :func:`fill_nearest`."""
    mag = np.asarray(mag, dtype=float)
    if index is not None:
        keep = np.asarray(index, dtype=int)
        if keep.ndim != 1 or keep.size < 2 or np.any(np.diff(keep) <= 0) or keep[0] < 0 or keep[-1] >= mag.shape[-1]:
            raise ValueError("time indices must be >= 2 increasing indices into the time grid")
    elif int(factor) != factor or factor < 1:
        raise ValueError(f"downsampling factor must be a positive integer, got {factor}")
    else:
        keep = np.arange(0, mag.shape[-1], int(factor))
    sub = mag[..., keep]
    values, empty = fill_nearest(sub)
    return FilledCurves(values=values, time_index=keep, empty=empty, filled=~np.isfinite(sub) & ~empty[..., None])


def valid_samples(empty: ArrayLike) -> np.ndarray:
    """Samples (first axis) none of whose curves is empty; ``empty`` has shape (n_sample, n_band)."""
    empty = np.asarray(empty, dtype=bool)
    return ~empty.reshape(empty.shape[0], -1).any(axis=1)
