"""Input preprocessing and augmentation for map networks.

Preprocessing follows the CMD benchmark (Villaescusa-Navarro et al. 2022, ApJS 259, 61):
each channel is optionally log10-transformed (``log10(x + offset)``; CMD uses
offset 1 for stellar mass maps) and then standardised with one global mean and
standard deviation per channel measured on the *training* split. A
:class:`Transform` names the choice of one channel (``"log10(x + 1)"``,
``"standardise"``, ``"none"``, ``"auto"``). The statistics
live in a :class:`Preprocessor` module that is saved with the network, so a model
applied to another store (another simulator, an observed catalogue) always uses
the statistics of the data it was trained on.

Augmentation draws one of the 8 symmetries of the square (4 rotations by 90
degrees, each optionally mirrored) per map. Only valid for maps whose two axes
are equivalent and have no fixed orientation (cosmological boxes); sky maps and
P-Pdot diagrams must not be rotated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from popstore.errors import UserError

N_ORIENTATIONS = 8
#: Store variable attribute holding a variable's default transform (``popstore cmd-import`` writes CMD's).
TRANSFORM_ATTR = "transform"
_LOG10 = re.compile(r"log10(?:\(x(?:\+([^()]+))?\))?")


@dataclass(frozen=True)
class Transform:
    """What is done to one input channel before the network.

    ``kind``: ``"log10"`` = ``log10(x + offset)`` then standardised;
    ``"standardise"`` = ``(x - mean) / std`` without a log; ``"none"`` = the raw
    values; ``"auto"`` = log10 when every training value of ``x + offset`` is
    positive, else standardise. Means and standard deviations are those of the
    training split.
    """

    kind: Literal["log10", "standardise", "none", "auto"] = "auto"
    offset: float = 0.0

    @classmethod
    def parse(cls, spec: "str | Transform") -> "Transform":
        """``"log10"``, ``"log10(x)"``, ``"log10(x + 1)"``, ``"standardise"`` (or ``"standardize"``),
        ``"none"``, ``"auto"``, ``"auto(x + 1)"`` (auto with an offset for the log)."""
        if isinstance(spec, Transform):
            return spec
        s = str(spec).replace(" ", "").lower()
        if s in ("standardise", "standardize", "none", "auto"):
            return cls("standardise" if s == "standardize" else s)  # type: ignore[arg-type]
        m = _LOG10.fullmatch(s.replace("auto", "log10", 1)) if s.startswith(("log10", "auto")) else None
        try:
            offset = float(m.group(1)) if m and m.group(1) else 0.0
        except ValueError:
            m = None
        if m is None:
            raise UserError(f"unknown input transform {spec!r}; use log10, log10(x + OFFSET), standardise, none or auto")
        return cls("auto" if s.startswith("auto") else "log10", offset)

    def __post_init__(self) -> None:
        if self.kind not in ("log10", "standardise", "none", "auto"):
            raise UserError(f"unknown input transform kind {self.kind!r}")

    def __str__(self) -> str:
        if self.kind in ("log10", "auto"):
            return f"{self.kind}(x + {self.offset:g})" if self.offset else ("log10(x)" if self.kind == "log10" else "auto")
        return self.kind


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
    transforms: Transform | str | Sequence[Transform | str] = "auto",
) -> Preprocessor:
    """Measure per-channel statistics in one pass over ``batches`` of ``[B, C, H, W]`` maps.

    ``transforms``: one :class:`Transform` (or its text) for every channel, or
    one per channel. ``"auto"`` log-transforms a channel when every training
    value of ``x + offset`` is positive; ``"log10..."`` demands it (clear error
    otherwise); ``"none"`` keeps mean 0 and std 1.
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
            chosen = ([transforms] * c if isinstance(transforms, (str, Transform)) else list(transforms))
            if len(chosen) != c:
                raise UserError(f"{len(chosen)} input transforms for {c} channels")
            chosen = [Transform.parse(t) for t in chosen]
            acc = {k: torch.zeros(c, dtype=torch.float64) for k in ("s", "ss", "ls", "lss")}
            acc["min"] = torch.full((c,), float("inf"), dtype=torch.float64)
            offs = torch.as_tensor([t.offset for t in chosen], dtype=torch.float64)
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
    use_log = []
    for i, t in enumerate(chosen):
        positive = bool(acc["min"][i] > 0)
        if t.kind == "log10" and not positive:
            raise UserError(f"channel {i}: {t} requested but x + offset has minimum {acc['min'][i].item():.3g} <= 0")
        use_log.append(t.kind == "log10" or (t.kind == "auto" and positive))
    mask = torch.as_tensor(use_log)
    s = torch.where(mask, acc["ls"], acc["s"])
    ss = torch.where(mask, acc["lss"], acc["ss"])
    mean = s / n
    std = torch.sqrt(torch.clamp(ss / n - mean**2, min=0.0))
    std = torch.where(std > 0, std, torch.ones_like(std))
    raw = torch.as_tensor([t.kind == "none" for t in chosen])
    mean, std = torch.where(raw, 0.0, mean), torch.where(raw, 1.0, std)
    offs = torch.where(mask, offs, 0.0)
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
