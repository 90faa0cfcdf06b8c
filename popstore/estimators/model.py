"""A trained moment network bundled with everything needed to apply it.

:class:`MomentModel` = :class:`~popstore.estimators.preprocess.Preprocessor`
(input log10 + standardisation measured on the training split) +
:class:`~popstore.estimators.cnn.O3Err`, plus the names of the store variables
it reads (in channel order), the labels it predicts and the affine map from
normalised to physical label units. Saved as one ``torch.save`` file so a model
can be applied to any store with the same variables without side files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from popstore.checkpoints import load_checkpoint
from popstore.estimators.cnn import O3Err, O3ErrConfig
from popstore.estimators.preprocess import Preprocessor

FORMAT_VERSION = 1


class MomentModel(nn.Module):
    """Maps raw store maps ``x[B, C, H, W]`` to normalised ``(mean, sigma)`` of each label."""

    def __init__(
        self,
        network: O3Err,
        preprocessor: Preprocessor,
        inputs: Sequence[str],
        labels: Sequence[str],
        label_shift: Sequence[float],
        label_scale: Sequence[float],
        augment: bool = False,
    ) -> None:
        super().__init__()
        cfg = network.config
        if len(inputs) != cfg.n_channels or preprocessor.log10.numel() != cfg.n_channels:
            raise ValueError(f"{len(inputs)} inputs / {preprocessor.log10.numel()} preprocessed channels for a {cfg.n_channels}-channel network")
        if not (len(labels) == len(label_shift) == len(label_scale) == cfg.n_labels):
            raise ValueError(f"labels and their normalisation need {cfg.n_labels} entries")
        self.network = network
        self.preprocessor = preprocessor
        self.inputs = list(inputs)
        self.labels = list(labels)
        self.augment = bool(augment)
        self.register_buffer("label_shift", torch.as_tensor(list(label_shift), dtype=torch.float32))
        self.register_buffer("label_scale", torch.as_tensor(list(label_scale), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(self.preprocessor(x))

    def to_physical(self, mean: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``(mean, sigma)`` to label units: ``y = shift + scale * y_norm``."""
        return self.label_shift + self.label_scale * mean, self.label_scale * sigma

    def save(self, path: str | Path) -> None:
        torch.save(
            {
                "format_version": FORMAT_VERSION,
                "network": self.network.config.to_dict(),
                "preprocessor": self.preprocessor.to_dict(),
                "inputs": self.inputs,
                "labels": self.labels,
                "label_shift": self.label_shift.tolist(),
                "label_scale": self.label_scale.tolist(),
                "augment": self.augment,
                "state_dict": self.state_dict(),
            },
            path,
        )


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> MomentModel:
    """Load a :class:`MomentModel` written by :meth:`MomentModel.save`."""
    blob = load_checkpoint(path, map_location)
    if blob.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model format {blob.get('format_version')!r}")
    model = MomentModel(
        O3Err(O3ErrConfig(**blob["network"])),
        Preprocessor(**blob["preprocessor"]),
        blob["inputs"],
        blob["labels"],
        blob["label_shift"],
        blob["label_scale"],
        blob["augment"],
    )
    model.load_state_dict(blob["state_dict"])
    return model.eval()
