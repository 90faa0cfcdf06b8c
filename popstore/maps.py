"""Binned density and weighted-mean maps on labelled axes, vectorised.

:func:`binned_map` puts points ``(x, y)`` into the bins of two
:class:`~popstore.simulator.Axis` objects with one :func:`bin_index` per axis and
one ``bincount`` (no Python loop over points or pixels), then optionally smooths
the map with a Gaussian filter of ``smooth_sigma`` bins
(``scipy.ndimage.gaussian_filter``, ``mode="reflect"``, which preserves the total
of a count map). Bins are half-open ``[e_i, e_{i+1})`` except the last, which
includes its right edge, as in ``numpy.histogram2d``; points outside the axis
ranges or with non-finite coordinates are dropped.

The returned array has shape ``(ny, nx)``: rows follow ``y_axis`` and columns
``x_axis``, i.e. store dims ``(y_axis.name, x_axis.name)``. (The legacy layout
of ``np.histogram2d`` has x on axis 0: it is this array transposed.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from popstore.simulator import Axis


def bin_index(values: np.ndarray, axis: Axis) -> np.ndarray:
    """Bin number of each value on a binned ``axis``; -1 outside the edges or for NaN.

    Edges uniform in the value (or, for ``axis.log``, in its logarithm) are binned
    arithmetically and then corrected against the exact edges, as ``numpy.histogram``
    does; other edges use ``searchsorted``.
    """
    edges = axis.bin_edges
    if edges is None:
        raise ValueError(f"axis {axis.name!r} has no bin edges")
    v = np.asarray(values, dtype=float)
    n = edges.size - 1
    lin = np.log(edges) if axis.log and edges[0] > 0 else edges
    step = np.diff(lin)
    if np.allclose(step, step[0], rtol=1e-9, atol=0):
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.log(v) if lin is not edges else v
            f = (u - lin[0]) * (n / (lin[-1] - lin[0]))
        ok = (v >= edges[0]) & (v <= edges[-1])  # False for NaN
        idx = np.full(v.shape, -1, dtype=np.intp)
        i = np.minimum(f[ok].astype(np.intp), n - 1)
        vi = v[ok]
        i -= vi < edges[i]
        i += (vi >= edges[i + 1]) & (i < n - 1)
        idx[ok] = i
        return idx
    idx = np.searchsorted(edges, v, side="right") - 1
    idx[v == edges[-1]] = n - 1
    idx[(idx < 0) | (idx >= n) | ~np.isfinite(v)] = -1
    return idx


def binned_map(
    x: np.ndarray,
    y: np.ndarray,
    x_axis: Axis,
    y_axis: Axis,
    weights: np.ndarray | None = None,
    statistic: Literal["count", "mean"] = "count",
    fill: float = 0.0,
    smooth_sigma: float = 1.0,
) -> np.ndarray:
    """2D histogram (``statistic="count"``; weighted if ``weights``) or per-bin mean of ``weights``.

    Parameters
    ----------
    x, y : coordinates of the points, in the units of ``x_axis`` / ``y_axis`` edges.
    weights : per-point values averaged in each bin (required for ``"mean"``);
        points with non-finite weights are dropped from a mean map.
    fill : value of empty bins of a mean map (before smoothing).
    smooth_sigma : Gaussian smoothing in bins; 0 disables it.

    Returns
    -------
    float64 array of shape ``(len(y_axis), len(x_axis))``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1D arrays of equal length, got shapes {x.shape} and {y.shape}")
    if statistic not in ("count", "mean"):
        raise ValueError(f"statistic must be 'count' or 'mean', got {statistic!r}")
    if statistic == "mean" and weights is None:
        raise ValueError("statistic='mean' needs weights")
    if smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
    nx, ny = len(x_axis), len(y_axis)
    ix, iy = bin_index(x, x_axis), bin_index(y, y_axis)
    ok = (ix >= 0) & (iy >= 0)
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        if w.shape != x.shape:
            raise ValueError(f"weights must have the shape of x, got {w.shape} and {x.shape}")
        if statistic == "mean":
            ok &= np.isfinite(w)
    flat = iy[ok] * nx + ix[ok]
    counts = np.bincount(flat, minlength=nx * ny).astype(float)
    if statistic == "count":
        result = counts if weights is None else np.bincount(flat, weights=w[ok], minlength=nx * ny)
    else:
        sums = np.bincount(flat, weights=w[ok], minlength=nx * ny)
        result = np.full(nx * ny, float(fill))
        filled = counts > 0
        result[filled] = sums[filled] / counts[filled]
    result = result.reshape(ny, nx)
    return gaussian_filter(result, smooth_sigma, mode="reflect") if smooth_sigma > 0 else result
