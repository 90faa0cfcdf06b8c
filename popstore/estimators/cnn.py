"""The CMD benchmark network ``o3_err``: a CNN that outputs a posterior mean and
standard deviation for every label (a *moment network*).

Architecture from the CAMELS Multifield Dataset benchmark (Villaescusa-Navarro et
al. 2022, ApJS 259, 61, "The CAMELS Multifield Data Set: Learning the Universe's
Fundamental Parameters with Artificial Intelligence", model ``o3_err``), generalised
from 256^2 inputs to any power-of-two size from 16 to 256:

- every convolution uses circular padding (the maps are periodic or treated so) and
  a bias, and is followed by LeakyReLU(0.2); every convolution but the first one is
  followed by batch normalisation;
- block 0: 3x3 C -> 2h, 3x3 2h -> 2h, 2x2 stride 2 (halves the map);
- blocks 1..n-1: 3x3 k -> 2k, 3x3 2k -> 2k, 2x2 stride 2;
  the blocks go on until the shorter side is 4 (n = log2(min side) - 2 blocks; n = 6
  for 256^2, which gives the CMD widths 2h, 4h, ..., 64h);
- a convolution with the size of the remaining map (4x4 for square maps, e.g. 8x4
  for 32x16 sky maps) doubles the width once more and reduces the map to 1x1;
- flatten, dropout, linear (-> half width), LeakyReLU, dropout, linear -> 2P.

The first P outputs are the posterior means, the last P are made positive to
give the standard deviations: squared as in ``o3_err``, or (default) through a
softplus, see :class:`O3ErrConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

POSITIVE = {"square": torch.square, "softplus": nn.functional.softplus}
MIN_NPIX = 16
MAX_NPIX = 256


@dataclass(frozen=True)
class O3ErrConfig:
    """Hyper-parameters fixing the shape of an :class:`O3Err` network.

    Parameters
    ----------
    n_channels : int
        Input channels (one per store variable; several = multifield).
    n_labels : int
        Number of labels P; the network outputs 2P numbers.
    npix : int
        Height of the input maps (pixels along the second-to-last axis), a power of two in [16, 256].
    npix_x : int or None
        Width of the input maps, a power of two in [16, 256]; ``None`` for square maps.
    hidden : int
        Width multiplier h (CMD searches 6..12).
    dropout : float
        Dropout probability before each fully connected layer, in [0, 1).
    positive : str
        How the last P outputs become standard deviations: ``"square"``
        (CMD ``o3_err``) or ``"softplus"`` (default). Squaring has a vanishing
        gradient at zero, so sigmas that start or fall near zero stay there; on
        gaussian_fields this left sigma 3-20x below the actual errors
        (1-sigma coverage 7-23%) where softplus calibrates.
    """

    n_channels: int
    n_labels: int
    npix: int
    hidden: int = 8
    dropout: float = 0.2
    positive: str = "softplus"
    npix_x: int | None = None

    def __post_init__(self) -> None:
        if self.positive not in POSITIVE:
            raise ValueError(f"positive must be one of {sorted(POSITIVE)}, got {self.positive!r}")
        if self.n_channels < 1 or self.n_labels < 1:
            raise ValueError(f"need at least one channel and one label, got {self.n_channels}, {self.n_labels}")
        for n in self.shape:
            if n < MIN_NPIX or n > MAX_NPIX or n & (n - 1):
                raise ValueError(f"map sides must be powers of two in [{MIN_NPIX}, {MAX_NPIX}], got {self.shape}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def shape(self) -> tuple[int, int]:
        """Input map shape (height, width)."""
        return self.npix, self.npix_x or self.npix

    @property
    def n_blocks(self) -> int:
        """Number of stride-2 blocks taking the shorter side down to 4."""
        return min(self.shape).bit_length() - 1 - 2

    @property
    def final_kernel(self) -> tuple[int, int]:
        """Map shape after the stride-2 blocks, the kernel of the last convolution."""
        return self.shape[0] >> self.n_blocks, self.shape[1] >> self.n_blocks

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _conv(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1, bn: bool = True) -> list[nn.Module]:
    pad = 1 if kernel == 3 else 0
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, padding_mode="circular", bias=True)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class O3Err(nn.Module):
    """Moment network: maps ``x[B, C, npix, npix_x]`` to ``(mean[B, P], sigma[B, P])``."""

    def __init__(self, config: O3ErrConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        layers: list[nn.Module] = []
        width = 2 * h
        layers += _conv(config.n_channels, width, 3, bn=False)
        layers += _conv(width, width, 3)
        layers += _conv(width, width, 2, stride=2)
        for _ in range(1, config.n_blocks):
            layers += _conv(width, 2 * width, 3)
            layers += _conv(2 * width, 2 * width, 3)
            layers += _conv(2 * width, 2 * width, 2, stride=2)
            width *= 2
        layers += _conv(width, 2 * width, config.final_kernel)
        width *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(width, width // 2),
            nn.LeakyReLU(0.2),
            nn.Dropout(config.dropout),
            nn.Linear(width // 2, 2 * config.n_labels),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.config.shape
        if x.ndim != 4 or x.shape[1] != self.config.n_channels or tuple(x.shape[2:]) != (h, w):
            raise ValueError(f"O3Err expects input [B, {self.config.n_channels}, {h}, {w}], got {list(x.shape)}")
        out = self.head(self.features(x))
        p = self.config.n_labels
        return out[:, :p], POSITIVE[self.config.positive](out[:, p:])
