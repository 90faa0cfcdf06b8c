"""Input preprocessing and augmentation for map networks.

Preprocessing follows the CMD benchmark (Villaescusa-Navarro et al. 2022, ApJS 259, 61):
each channel is optionally log10-transformed (``log10(x + offset)``; CMD uses
offset 1 for stellar mass maps) and then standardised with one global mean and
standard deviation per channel measured on the *training* split. The statistics
live in a :class:`Preprocessor` module that is saved with the network, so a model
applied to another store (another simulator, an observed catalogue) always uses
the statistics of the data it was trained on.

Augmentation draws one of the 8 symmetries of the square (4 rotations by 90
degrees, each optionally mirrored) per map. Only valid for maps whose two axes
are equivalent and have no fixed orientation (cosmological boxes); sky maps and
P-Pdot diagrams must not be rotated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

LogChoice = bool | Literal["auto"]
N_ORIENTATIONS = 8


class Preprocessor(nn.Module):
    """Per-channel ``(f(x) - mean) / std`` with ``f = log10(x + offset)`` or identity."""

    def __init__(self, log10: Sequence[bool], offset: Sequence[float], mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        n = len(log10)
        if not (len(offset) == len(mean) == len(std) == n):
            raise ValueError("log10, offset, mean and std need one entry per channel")
        if np.any(np.asarray(std, dtype=float) <= 0):
            raise ValueError(f"channel std must be positive, got {list(std)}")
        self.register_buffer("log10", torch.as_tensor(list(log10), dtype=torch.bool))
        self.register_buffer("offset", torch.as_tensor(list(offset), dtype=torch.float32))
        self.register_buffer("mean", torch.as_tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.log10.numel():
            raise ValueError(f"expected [B, {self.log10.numel()}, H, W] input, got {list(x.shape)}")
        shape = (1, -1, 1, 1)
        shifted = x + self.offset.view(shape)
        logged = torch.log10(torch.clamp(shifted, min=torch.finfo(x.dtype).tiny))
        y = torch.where(self.log10.view(shape), logged, x)
        return (y - self.mean.view(shape)) / self.std.view(shape)

    def to_dict(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in ("log10", "offset", "mean", "std")}


def fit_preprocessor(
    batches: Iterable[torch.Tensor],
    log10: LogChoice | Sequence[LogChoice] = "auto",
    offset: float | Sequence[float] = 0.0,
) -> Preprocessor:
    """Measure per-channel statistics in one pass over ``batches`` of ``[B, C, H, W]`` maps.

    ``log10="auto"`` log-transforms a channel when every training value of
    ``x + offset`` is positive; ``True`` demands it (clear error otherwise).
    """
    n = 0
    acc: dict[str, torch.Tensor] = {}
    for x in batches:
        x = x.detach().to(torch.float64)
        if not torch.isfinite(x).all():
            raise ValueError("training maps contain NaN or infinite values; exclude those samples "
                             "(e.g. populations flagged as aborted) before training")
        c = x.shape[1]
        if not acc:
            acc = {k: torch.zeros(c, dtype=torch.float64) for k in ("s", "ss", "ls", "lss")}
            acc["min"] = torch.full((c,), float("inf"), dtype=torch.float64)
            offs = torch.as_tensor(np.broadcast_to(np.asarray(offset, dtype=float), (c,)).copy())
        shifted = x + offs.view(1, -1, 1, 1)
        logged = torch.log10(torch.clamp(shifted, min=1e-300))
        dims = (0, 2, 3)
        acc["s"] += x.sum(dims)
        acc["ss"] += (x * x).sum(dims)
        acc["ls"] += logged.sum(dims)
        acc["lss"] += (logged * logged).sum(dims)
        acc["min"] = torch.minimum(acc["min"], shifted.amin(dims))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    if n == 0:
        raise ValueError("fit_preprocessor: no training maps")
    c = acc["s"].numel()
    choices = [log10] * c if isinstance(log10, (bool, str)) else list(log10)
    if len(choices) != c:
        raise ValueError(f"log10 has {len(choices)} entries for {c} channels")
    use_log = []
    for i, ch in enumerate(choices):
        positive = bool(acc["min"][i] > 0)
        if ch is True and not positive:
            raise ValueError(f"channel {i}: log10 requested but x + offset has minimum {acc['min'][i].item():.3g} <= 0")
        if ch not in (True, False, "auto"):
            raise ValueError(f"log10 choice must be True, False or 'auto', got {ch!r}")
        use_log.append(positive if ch == "auto" else bool(ch))
    mask = torch.as_tensor(use_log)
    s = torch.where(mask, acc["ls"], acc["s"])
    ss = torch.where(mask, acc["lss"], acc["ss"])
    mean = s / n
    std = torch.sqrt(torch.clamp(ss / n - mean**2, min=0.0))
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Preprocessor(use_log, offs.tolist(), mean.tolist(), std.tolist())


def orient(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0..7) of the square applied to the last two axes: rot90 by k % 4, then mirror if k >= 4."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def random_orientations(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply an independent random symmetry of the square to every map of ``x[B, C, H, W]``."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation augmentation needs square maps, got {tuple(x.shape[-2:])}")
    ops = torch.randint(0, N_ORIENTATIONS, (x.shape[0],), generator=generator).to(x.device)
    out = torch.empty_like(x)
    for k in range(N_ORIENTATIONS):
        idx = torch.nonzero(ops == k).flatten()
        if idx.numel():
            out[idx] = orient(x[idx], k)
    return out
