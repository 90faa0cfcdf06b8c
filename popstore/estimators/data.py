"""Feeding a store to a moment network: loaders, input statistics, label scaling.

Inputs are chosen by store variable name (several = multifield, stacked as
channels in the given order) and read through the chunk-aware
:class:`popstore.MapDataset`; labels are min-max normalised with the training
statistics stored in the store (``label_stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from popstore.estimators.cnn import O3Err, O3ErrConfig
from popstore.estimators.model import MomentModel
from popstore.estimators.preprocess import LogChoice, Preprocessor, fit_preprocessor
from popstore.estimators.train import TrainConfig, TrainResult, fit
from popstore.store import open_store
from popstore.torchdata import MapDataset, make_loader


@dataclass(frozen=True)
class DataConfig:
    """Which variables a network reads and how they are prepared.

    Parameters
    ----------
    inputs
        Input variable names (channels, in order); ``None`` = every ``role="input"`` variable.
    labels
        Labels to predict; ``None`` = every ``role="label"`` variable.
    log10
        ``"auto"`` (log10 where every training value of ``x + log_offset`` is
        positive), ``True``, ``False``, or one choice per channel.
    log_offset
        Added before the log10 (CMD uses 1 for stellar-mass maps), scalar or per channel.
    augment
        Random 90-degree rotations and flips during training. ``"auto"`` enables
        them only when every input's two map axes are the same physical
        coordinate on the same grid (equal bin centres and units), which rules
        out P-Pdot diagrams; pass ``False`` for maps with a fixed orientation
        that pass that check (e.g. sky maps on a square grid).
    batch_size, num_workers, seed
        DataLoader settings (chunk-aware batches, see :func:`popstore.make_loader`).
    """

    inputs: Sequence[str] | None = None
    labels: Sequence[str] | None = None
    log10: LogChoice | Sequence[LogChoice] = "auto"
    log_offset: float | Sequence[float] = 0.0
    augment: bool | Literal["auto"] = "auto"
    batch_size: int = 128
    num_workers: int = 0
    seed: int = 0


@dataclass
class PreparedData:
    """Loaders and fitted statistics shared by every model trained on one store."""

    store: Path
    train: MapDataset
    train_loader: DataLoader
    valid_loader: DataLoader
    preprocessor: Preprocessor
    label_shift: np.ndarray
    label_scale: np.ndarray
    augment: bool

    def build_model(self, hidden: int, dropout: float) -> MomentModel:
        """A fresh :class:`MomentModel` (random weights) for these data."""
        h, w = (int(n) for n in self.train.map_shape)
        cfg = O3ErrConfig(len(self.train.channels), len(self.train.labels), h, hidden, dropout, npix_x=w)
        return MomentModel(
            O3Err(cfg), self.preprocessor, self.train.channels, self.train.labels,
            self.label_shift, self.label_scale, self.augment,
        )


def rotatable(ds: xr.Dataset, inputs: Sequence[str]) -> bool:
    """True when each input's last two dims are the same coordinate (values and units) on a square grid."""
    for name in inputs:
        dims = ds[name].dims[-2:]
        coords = [ds.coords.get(d) for d in dims]
        if ds[name].shape[-1] != ds[name].shape[-2]:
            return False
        if any(c is None for c in coords):
            continue  # plain pixel axes: nothing tells them apart
        a, b = coords
        if a.attrs.get("units") != b.attrs.get("units") or not np.allclose(a.values, b.values):
            return False
    return True


def prepare(store: str | Path, config: DataConfig | None = None) -> PreparedData:
    """Open the train/valid splits of ``store`` and fit the input statistics on the training split."""
    config = config or DataConfig()
    train = MapDataset(store, "train", config.inputs, config.labels, normalize="minmax")
    valid = MapDataset(store, "valid", train.inputs, train.labels, normalize="minmax")
    if len(valid) == 0:
        raise ValueError(f"{store}: the valid split is empty; split with valid > 0")
    augment = rotatable(open_store(store), train.inputs) if config.augment == "auto" else bool(config.augment)
    train_loader = make_loader(train, config.batch_size, shuffle=True, num_workers=config.num_workers, seed=config.seed,
                               drop_last=len(train) > config.batch_size)
    valid_loader = make_loader(valid, config.batch_size, shuffle=False, num_workers=config.num_workers)
    fit_loader = make_loader(train, max(config.batch_size, 256), shuffle=False, num_workers=config.num_workers)
    pre = fit_preprocessor((x for x, _ in fit_loader), config.log10, config.log_offset)
    zero = np.zeros((1, len(train.labels)))
    return PreparedData(
        Path(store), train, train_loader, valid_loader, pre,
        train.denormalize_labels(zero)[0], train.denormalize_sigma(zero + 1)[0], augment,
    )


def train_on_store(
    store: str | Path,
    out_dir: str | Path,
    hidden: int = 8,
    dropout: float = 0.2,
    data: DataConfig | None = None,
    train: TrainConfig | None = None,
) -> TrainResult:
    """Train one moment network on the train/valid splits of ``store`` (no search; default settings when None)."""
    train = train or TrainConfig()
    prepared = prepare(store, data or DataConfig())
    torch.manual_seed(train.seed)
    return fit(prepared.build_model(hidden, dropout), prepared.train_loader, prepared.valid_loader, train, out_dir)
