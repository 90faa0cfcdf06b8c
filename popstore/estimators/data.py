"""Feeding a store to a moment network: loaders, input statistics, label scaling.

Inputs are chosen by store variable name (several = multifield, stacked as
channels in the given order) and read through the chunk-aware
:class:`popstore.MapDataset`; labels are min-max normalised with the training
statistics stored in the store (``label_stats``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from popstore.errors import UserError
from popstore.estimators.cnn import O3Err, O3ErrConfig
from popstore.estimators.model import MomentModel
from popstore.estimators.preprocess import TRANSFORM_ATTR, Preprocessor, Transform, fit_preprocessor
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
    transforms
        Per input variable, its :class:`~popstore.estimators.preprocess.Transform`
        (``"log10(x + 1)"``, ``"standardise"``, ``"none"``, ``"auto"``).
    transform
        The transform of every input that ``transforms`` does not name and whose
        store variable has no ``transform`` attribute (``popstore cmd-import``
        writes CMD's choice there: log10 of every field, log10(x + 1) for Mstar).
        ``"auto"`` = log10 where every training value is positive, else standardise.
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
    transforms: Mapping[str, str] | None = None
    transform: str = "auto"
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

    def build_model(self, hidden: int, dropout: float, **network) -> MomentModel:
        """A fresh :class:`MomentModel` (random weights) for these data.

        ``network`` sets further :class:`O3ErrConfig` fields (e.g. ``positive="square"``);
        the shape fields (``n_channels``, ``n_labels``, ``npix``, ``npix_x``) follow
        the data and may only be given when they agree with it.
        """
        h, w = (int(n) for n in self.train.map_shape)
        shape = {"n_channels": len(self.train.channels), "n_labels": len(self.train.labels), "npix": h, "npix_x": w}
        check_network(network)
        wrong = {k: v for k, v in network.items() if k in shape and v != shape[k] and not (k == "npix_x" and v is None and w == h)}
        if wrong:
            raise UserError(f"network settings {wrong} disagree with the data ({shape})")
        cfg = O3ErrConfig(**(network | shape | {"hidden": hidden, "dropout": dropout}))
        return MomentModel(
            O3Err(cfg), self.preprocessor, self.train.channels, self.train.labels,
            self.label_shift, self.label_scale, self.augment,
        )


def check_network(network: Mapping[str, object]) -> None:
    """Refuse keys that are not :class:`O3ErrConfig` fields and bad values (one line, before any work)."""
    allowed = {f.name for f in fields(O3ErrConfig)}
    unknown = set(network) - allowed
    if unknown:
        raise UserError(f"unknown network settings {sorted(unknown)}; allowed: {sorted(allowed)}")
    try:
        O3ErrConfig(**({"n_channels": 1, "n_labels": 1, "npix": 16} | dict(network)))
    except (TypeError, ValueError) as err:
        raise UserError(f"network settings: {err}") from None


def input_transforms(ds: xr.Dataset, data: MapDataset, config: DataConfig) -> list[Transform]:
    """The transform of every channel of ``data``: ``config.transforms[variable]``, else the variable's
    ``transform`` attribute (CMD's choice for an imported CMD field), else ``config.transform``."""
    chosen = dict(config.transforms or {})
    unknown = set(chosen) - set(data.inputs)
    if unknown:
        raise UserError(f"transforms given for {sorted(unknown)}, which are not among the inputs {data.inputs}")
    per_input = {n: Transform.parse(chosen.get(n) or ds[n].attrs.get(TRANSFORM_ATTR) or config.transform)
                 for n in data.inputs}
    return [per_input[c if c in per_input else c.rsplit("[", 1)[0]] for c in data.channels]


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
    ds = open_store(store)
    transforms = input_transforms(ds, train, config)
    augment = rotatable(ds, train.inputs) if config.augment == "auto" else bool(config.augment)
    train_loader = make_loader(train, config.batch_size, shuffle=True, num_workers=config.num_workers, seed=config.seed,
                               drop_last=len(train) > config.batch_size)
    valid_loader = make_loader(valid, config.batch_size, shuffle=False, num_workers=config.num_workers)
    fit_loader = make_loader(train, max(config.batch_size, 256), shuffle=False, num_workers=config.num_workers)
    pre = fit_preprocessor((x for x, _ in fit_loader), transforms)
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
    network: Mapping[str, object] | None = None,
) -> TrainResult:
    """Train one moment network on the train/valid splits of ``store`` (no search; default settings when None).

    ``network``: further :class:`O3ErrConfig` settings, e.g. ``{"positive": "square"}`` (CMD's sigma).
    """
    train = train or TrainConfig()
    check_network(network or {})
    prepared = prepare(store, data or DataConfig())
    torch.manual_seed(train.seed)
    model = prepared.build_model(hidden, dropout, **(network or {}))
    return fit(model, prepared.train_loader, prepared.valid_loader, train, out_dir)
