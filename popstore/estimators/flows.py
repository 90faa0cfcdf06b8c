"""Masked autoregressive normalising flows (nflows) for phase-space distribution functions.

The architecture follows An et al. (2021, arXiv:2106.05981, Sect. 3.3) and
Naik et al. (2021, arXiv:2112.07657, Sect. 3): a standard-normal base and
``n_layers`` blocks of [ReversePermutation, masked autoregressive transform]
(Papamakarios, Pavlakou & Murray 2017), the transform either affine (MAF) or
a rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows").
Data are rescaled to O(1) by a fixed affine map that is stored with the model
(:class:`ScaledFlow`), so ``log_prob`` is always the density of the physical
variables. Training: Adam, ReduceLROnPlateau (the HernquistFlows settings:
factor 0.5, patience 5, threshold 1e-6, cooldown 10, floor 2e-6); stops when the learning rate
reaches its floor (the papers' criterion) or, if ``early_stopping_patience``
is set, when the monitored loss has not improved for that many epochs. The
best checkpoint and the per-epoch losses are written to ``out_dir/seed_<k>``
and, beside them, in the layout of the HernquistFlows/LocalFlows research
code (``out_dir/<k>_best.pth``: the nflows ``Flow`` state dict of the
rescaled variables; ``<k>_losses.npy``: per-epoch losses), plus
``<k>_rescaling.json`` (shift and scale of the physical variables), which
that layout lacks; :func:`load_nflows` reads either.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import (
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    ReversePermutation,
)
from tqdm.auto import tqdm

from popstore.checkpoints import load_checkpoint
from popstore.errors import UserError

CHECKPOINT = "checkpoint.pt"
LOSSES = "losses.csv"
SUMMARY = "summary.json"
NFLOWS_BEST = "{seed}_best.pth"
NFLOWS_LOSSES = "{seed}_losses.npy"
NFLOWS_RESCALING = "{seed}_rescaling.json"


@dataclass(frozen=True)
class FlowConfig:
    """Architecture and training settings of one flow (defaults: the papers' values)."""

    features: int = 6
    context_features: int = 0
    n_layers: int = 8
    hidden_features: int = 64
    transform: Literal["affine", "spline"] = "affine"
    num_bins: int = 8
    tail_bound: float = 5.0
    learning_rate: float = 1e-3
    batch_size: int = 10_000
    max_epochs: int = 500
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_lr: float = 2e-6
    lr_threshold: float = 1e-6
    lr_cooldown: int = 10
    valid_fraction: float = 0.0
    early_stopping_patience: int | None = None

    def __post_init__(self) -> None:
        if self.transform not in ("affine", "spline"):
            raise ValueError(f"transform must be 'affine' or 'spline', got {self.transform!r}")
        if self.features < 1 or self.n_layers < 1 or self.hidden_features < 1:
            raise ValueError("features, n_layers and hidden_features must be >= 1")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")


def build_flow(cfg: FlowConfig) -> Flow:
    """An untrained nflows :class:`~nflows.flows.Flow` for ``cfg``."""
    ctx = cfg.context_features or None
    layers = []
    for _ in range(cfg.n_layers):
        layers.append(ReversePermutation(features=cfg.features))
        if cfg.transform == "affine":
            layers.append(MaskedAffineAutoregressiveTransform(cfg.features, cfg.hidden_features, context_features=ctx))
        else:
            layers.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    cfg.features, cfg.hidden_features, context_features=ctx,
                    num_bins=cfg.num_bins, tails="linear", tail_bound=cfg.tail_bound,
                )
            )
    return Flow(CompositeTransform(layers), StandardNormal([cfg.features]))


class ScaledFlow(torch.nn.Module):
    """A flow on rescaled variables ``y = (x - shift) / scale``, exposing the density of ``x``.

    ``log p_x(x | c) = log p_y(y | c') - sum(log scale)``; the context ``c``
    is rescaled by its own ``context_shift`` / ``context_scale``.
    """

    def __init__(self, cfg: FlowConfig, shift: np.ndarray, scale: np.ndarray,
                 context_shift: np.ndarray | None = None, context_scale: np.ndarray | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.flow = build_flow(cfg)
        if np.any(np.asarray(scale) <= 0):
            raise ValueError("rescaling scales must be positive")
        self.register_buffer("shift", torch.as_tensor(np.asarray(shift, dtype=np.float64)).reshape(cfg.features))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float64)).reshape(cfg.features))
        nc = cfg.context_features
        cs = np.zeros(nc) if context_shift is None else context_shift
        cc = np.ones(nc) if context_scale is None else context_scale
        self.register_buffer("context_shift", torch.as_tensor(np.asarray(cs, dtype=np.float64)).reshape(nc))
        self.register_buffer("context_scale", torch.as_tensor(np.asarray(cc, dtype=np.float64)).reshape(nc))

    def _ctx(self, context: torch.Tensor | None) -> torch.Tensor | None:
        if self.cfg.context_features == 0:
            return None
        if context is None:
            raise ValueError("this flow is conditional: pass a context")
        return (context - self.context_shift) / self.context_scale

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Log density of the physical variables ``x`` (n, features)."""
        y = (x - self.shift) / self.scale
        return self.flow.log_prob(y, context=self._ctx(context)) - torch.log(self.scale).sum()

    def sample(self, n: int, context: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """``n`` draws in physical units, base noise from a torch generator seeded with ``seed``.

        Unconditional: (n, features). Conditional: ``n`` draws per context row, (rows, n, features).
        """
        gen = torch.Generator().manual_seed(seed)
        ctx = self._ctx(context)
        rows = 1 if ctx is None else ctx.shape[0]
        noise = torch.randn(rows * n, self.cfg.features, generator=gen, dtype=self.shift.dtype)
        with torch.no_grad():
            y, _ = self.flow._transform.inverse(noise, context=None if ctx is None else ctx.repeat_interleave(n, dim=0))
        x = y * self.scale + self.shift
        return x if ctx is None else x.reshape(rows, n, self.cfg.features)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_flow`: per-epoch losses and where the best model is."""

    seed: int
    losses: pd.DataFrame
    best_epoch: int
    checkpoint: Path


def standard_rescaling(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``data`` (n, d)."""
    return data.mean(axis=0), data.std(axis=0)


def train_flow(
    data: np.ndarray,
    cfg: FlowConfig,
    seed: int,
    out_dir: str | Path,
    rescaling: tuple[np.ndarray, np.ndarray] | None = None,
    context: np.ndarray | None = None,
    progress: bool = True,
    meta: dict | None = None,
) -> TrainResult:
    """Train one flow on ``data`` (n, features) by maximum likelihood and save it under ``out_dir/seed_<seed>``.

    ``rescaling`` = (shift, scale) in data units (default: mean and std of
    ``data``). ``context`` (n, context_features) conditions the flow.
    Writes ``checkpoint.pt`` (best state, config, rescaling) and
    ``losses.csv`` (epoch, train, valid, lr: mean negative log-likelihood per
    star of the rescaled variables); ``summary.json`` (with ``meta``, the training stars and the CPU
    seconds spent) marks the member finished.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != cfg.features:
        raise ValueError(f"data must be (n, {cfg.features}), got {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("data contain non-finite values")
    if (context is None) != (cfg.context_features == 0):
        raise ValueError("pass a context exactly when cfg.context_features > 0")
    out = Path(out_dir) / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    cpu_start = time.process_time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    shift, scale = rescaling if rescaling is not None else standard_rescaling(data)
    cshift, cscale = standard_rescaling(context) if context is not None else (None, None)
    model = ScaledFlow(cfg, shift, scale, cshift, cscale)
    y = torch.as_tensor((data - shift) / scale, dtype=torch.float32)
    c = None if context is None else torch.as_tensor((context - cshift) / cscale, dtype=torch.float32)
    model.flow.float()

    perm = torch.randperm(len(y), generator=gen)
    n_valid = round(cfg.valid_fraction * len(y))
    iv, it = perm[:n_valid], perm[n_valid:]
    opt = torch.optim.Adam(model.flow.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr,
                                                       threshold=cfg.lr_threshold, cooldown=cfg.lr_cooldown)

    def nll(idx: torch.Tensor) -> torch.Tensor:
        return -model.flow.log_prob(y[idx], context=None if c is None else c[idx]).mean()

    rows, best, best_epoch, stale = [], np.inf, -1, 0
    bar = tqdm(range(cfg.max_epochs), disable=not progress, desc=f"flow seed {seed}")
    for epoch in bar:
        model.train()
        order = it[torch.randperm(len(it), generator=gen)]
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            opt.zero_grad()
            loss = nll(idx)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_loss = total / len(order)
        model.eval()
        valid_loss = _mean_nll(model.flow, y, c, iv) if n_valid else np.nan
        monitored = valid_loss if n_valid else train_loss
        lr = opt.param_groups[0]["lr"]
        rows.append({"epoch": epoch, "train": train_loss, "valid": valid_loss, "lr": lr})
        bar.set_postfix(train=f"{train_loss:.4f}", valid=f"{valid_loss:.4f}")
        if not np.isfinite(monitored):
            raise FloatingPointError(f"flow seed {seed}: loss became {monitored} at epoch {epoch}")
        if monitored < best:
            best, best_epoch, stale = monitored, epoch, 0
            torch.save({"config": asdict(cfg), "state_dict": model.state_dict(), "epoch": int(epoch), "seed": int(seed)},
                       out / CHECKPOINT)  # plain values only: loads with weights_only=True
            torch.save(model.flow.state_dict(), Path(out_dir) / NFLOWS_BEST.format(seed=seed))
        else:
            stale += 1
        sched.step(monitored)
        if lr <= cfg.min_lr * (1 + 1e-9) or (cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience):
            break
    losses = pd.DataFrame(rows)
    losses.to_csv(out / LOSSES, index=False)
    save_nflows_extras(Path(out_dir), seed, losses["valid" if n_valid else "train"].to_numpy(), shift, scale)
    (out / SUMMARY).write_text(json.dumps({"seed": seed, "best_epoch": best_epoch, "best_loss": best, "epochs": len(rows),
                                           "n_train": len(it), "cpu_seconds": time.process_time() - cpu_start,
                                           "config": asdict(cfg), **(meta or {})}))  # written last: the member is finished
    return TrainResult(seed, losses, best_epoch, out / CHECKPOINT)


def _mean_nll(flow: Flow, y: torch.Tensor, c: torch.Tensor | None, idx: torch.Tensor, chunk: int = 50_000) -> float:
    """Mean negative log-likelihood of rows ``idx``, evaluated in chunks without gradients."""
    with torch.no_grad():
        total = sum(float(-flow.log_prob(y[idx[s:s + chunk]], context=None if c is None else c[idx[s:s + chunk]]).sum())
                    for s in range(0, len(idx), chunk))
    return total / len(idx)


def load_flow(path: str | Path, dtype: torch.dtype = torch.float64) -> ScaledFlow:
    """Load a :class:`ScaledFlow` from a ``checkpoint.pt`` (or its directory), in ``dtype`` and eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no flow checkpoint at {path}")
    ckpt = load_checkpoint(path)
    cfg = FlowConfig(**ckpt["config"])
    sd = ckpt["state_dict"]
    model = ScaledFlow(cfg, sd["shift"].numpy(), sd["scale"].numpy(), sd["context_shift"].numpy(), sd["context_scale"].numpy())
    model.load_state_dict(sd)
    return model.to(dtype).eval()


def save_nflows_extras(out_dir: Path, seed: int, losses: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> None:
    """Write ``<seed>_losses.npy`` and ``<seed>_rescaling.json`` beside a ``<seed>_best.pth`` (research-code layout)."""
    np.save(out_dir / NFLOWS_LOSSES.format(seed=seed), np.asarray(losses, dtype=np.float64))
    (out_dir / NFLOWS_RESCALING.format(seed=seed)).write_text(
        json.dumps({"shift": np.asarray(shift, dtype=float).tolist(), "scale": np.asarray(scale, dtype=float).tolist()}))


def load_nflows(directory: str | Path, seed: int, cfg: FlowConfig = FlowConfig(),
                rescaling: tuple[np.ndarray, np.ndarray] | None = None,
                dtype: torch.dtype = torch.float64) -> tuple[ScaledFlow, np.ndarray]:
    """A flow saved in the research-code layout: ``<seed>_best.pth`` (nflows ``Flow`` state dict) and its losses.

    The state dict describes the rescaled variables ``(x - shift) / scale``;
    ``rescaling`` = (shift, scale) in physical units, read from
    ``<seed>_rescaling.json`` when not given (e.g. the HernquistFlows units,
    shift 0 and scale ``10 a`` for positions, ``sqrt(2 G M / a)`` for
    velocities: Naik et al. 2021, arXiv:2112.07657, Sect. 3). ``cfg`` must
    describe the saved architecture (default: the papers' 8 x 64 MAF).
    Returns the flow (``dtype``, eval mode) and the per-epoch losses with the
    trailing zeros of the research code's preallocated array removed.
    """
    directory = Path(directory)
    best, loss_file = directory / NFLOWS_BEST.format(seed=seed), directory / NFLOWS_LOSSES.format(seed=seed)
    if not best.exists():
        raise UserError(f"no nflows state dict {best}")
    if rescaling is None:
        units = directory / NFLOWS_RESCALING.format(seed=seed)
        if not units.exists():
            raise UserError(f"{best} has no {units.name}: pass the rescaling (shift, scale) of its data")
        saved = json.loads(units.read_text())
        rescaling = (np.asarray(saved["shift"]), np.asarray(saved["scale"]))
    model = ScaledFlow(cfg, *rescaling)
    try:
        model.flow.load_state_dict(load_checkpoint(best))
    except RuntimeError as err:
        raise UserError(f"{best} does not match the architecture {cfg}: {str(err).splitlines()[0]}") from None
    losses = np.load(loss_file) if loss_file.exists() else np.empty(0)
    last = np.flatnonzero(losses)
    return model.to(dtype).eval(), losses[: last[-1] + 1] if last.size else losses
