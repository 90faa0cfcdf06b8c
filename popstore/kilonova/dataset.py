"""Light curves of a store as emulator training arrays.

:func:`popstore.MapDataset` serves image-like maps ``x[C, H, W]``; an emulator
of 1D light curves needs something else first: the curves are downsampled and
NaN-filled (:func:`popstore.kilonova.transforms.downsample_fill`) and samples
with an empty band are *dropped* (a map-style per-item transform cannot drop
items). :func:`load_curves` does that for one split of a store and returns a
:class:`CurveSet`; the stores are small (20 kB per binary), so the split is read
into memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from popstore.kilonova.params import LABELS
from popstore.kilonova.transforms import downsample_fill, valid_samples
from popstore.store import open_store


@dataclass(frozen=True)
class CurveSet:
    """Training arrays of one split.

    curves : (n, n_band, n_time) magnitudes, NaN-free (filled);
    valid : (n, n_band, n_time) True where the magnitude was defined before filling;
    labels : (n, n_label) conditioning parameters;
    sample : (n,) store sample indices; n_dropped : samples dropped for an empty band.
    """

    curves: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    bands: tuple[str, ...]
    time: np.ndarray
    sample: np.ndarray
    n_dropped: int

    def __len__(self) -> int:
        return len(self.sample)


def curves_from_arrays(
    mag: np.ndarray,
    labels: np.ndarray,
    time: np.ndarray,
    bands: Sequence[str],
    label_names: Sequence[str] = LABELS,
    factor: int = 120,
    sample: np.ndarray | None = None,
    time_index: np.ndarray | None = None,
) -> CurveSet:
    """Downsample (every ``factor``-th time, or the times at ``time_index``), fill and drop empty samples
    of ``mag`` (n, band, time) with their ``labels`` (n, L)."""
    mag = np.asarray(mag, dtype=float)
    labels = np.asarray(labels, dtype=float)
    if mag.ndim != 3 or labels.shape != (mag.shape[0], len(label_names)) or mag.shape[1] != len(bands):
        raise ValueError(f"shape mismatch: mag {mag.shape}, labels {labels.shape}, {len(bands)} bands, "
                         f"{len(label_names)} label names")
    f = downsample_fill(mag, factor, time_index)
    keep = valid_samples(f.empty)
    sample = np.arange(len(mag)) if sample is None else np.asarray(sample)
    return CurveSet(
        curves=f.values[keep], valid=~f.filled[keep], labels=labels[keep], label_names=tuple(label_names),
        bands=tuple(bands), time=np.asarray(time)[f.time_index], sample=sample[keep], n_dropped=int((~keep).sum()),
    )


def load_curves(
    store: str | Path | xr.Dataset,
    split: str | None = "train",
    labels: Sequence[str] = LABELS,
    variable: str = "mag",
    factor: int = 120,
    times: Sequence[float] | None = None,
) -> CurveSet:
    """The ``split`` subset (None: every done sample) of a light-curve store as a :class:`CurveSet`.

    ``labels`` may name the true labels, the noisy ``*_obs`` diagnostics or the
    ejecta diagnostics (``ejecta_mass``, ...). ``times`` [day] picks the nearest
    grid times instead of every ``factor``-th one.
    """
    ds = store if isinstance(store, xr.Dataset) else open_store(store)
    sel = ds["done"].values.astype(bool)
    if split is not None:
        if "split" not in ds.coords and "split" not in ds.variables:
            raise ValueError("the store has no 'split' coordinate; run popstore.split(store) first")
        sel &= ds["split"].values == split
        if not sel.any():
            raise ValueError(f"no done sample in split {split!r}")
    idx = np.flatnonzero(sel)
    sub = ds.isel(sample=idx)
    missing = [n for n in (variable, *labels) if n not in sub.variables]
    if missing:
        raise KeyError(f"store lacks variables {missing}")
    grid = sub["time"].values
    index = None if times is None else nearest_index(grid, times)
    return curves_from_arrays(
        sub[variable].transpose("sample", "band", "time").values,
        np.stack([sub[n].values for n in labels], axis=1),
        grid, [str(b) for b in sub["band"].values], labels, factor, idx, index,
    )


def nearest_index(grid: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """Indices of the ``grid`` times nearest to ``times`` (unique, increasing)."""
    grid = np.asarray(grid, dtype=float)
    return np.unique(np.abs(grid[None, :] - np.asarray(times, dtype=float)[:, None]).argmin(axis=1))
