"""Conditional normalising-flow emulator of curves (light curves) given parameters.

A RealNVP-type flow (Dinh, Sohl-Dickstein & Bengio 2017) built with nflows
learns ``p(x | y)``: ``x`` is a set of curves flattened to one vector
(``n_band * n_time`` magnitudes), ``y`` the parameters that made them. Each
layer is an affine coupling whose scale and shift come from a residual network
fed with the untouched half of ``x`` and the context ``y``; a fixed random
permutation and a batch normalisation sit between couplings.

One *joint* model for all bands (KilonovaML trained one flow per band): in DU17
every band is ``M_bol(t) - BC_band(t)`` of the same bolometric curve, so the
bands are strongly correlated; a joint flow learns that structure once, gives
draws whose colours are mutually consistent, and costs one training instead
of four.

Inputs are standardised with training-set statistics; parameters flagged in
``log_labels`` (e.g. tidal deformabilities) are log-transformed before
standardisation. Everything needed to use a trained model (weights, statistics,
names, grid, architecture, the spread calibration) is saved in one ``.pt`` file.

Draws are made at a *temperature* ``T``: the base Gaussian's width is scaled by
``T`` before the flow maps it to curves. ``T = 1`` is the trained density,
``T = 0`` its deterministic central curve (one pass, no randomness: a smooth
surrogate for a likelihood). :func:`calibrate_temperature` picks the ``T`` whose
5-95% band of draws contains the true held-out curves 90% of the time, and
:func:`calibrate_spread` then evens out the channels (bands) with one factor each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nflows.distributions import ConditionalDiagonalNormal
from nflows.flows import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms import AffineCouplingTransform, BatchNorm, CompositeTransform, RandomPermutation
from nflows.utils import create_alternating_binary_mask
from torch.nn import functional as F
from tqdm.auto import tqdm

from popstore.checkpoints import load_checkpoint
from popstore.store import plain


@dataclass(frozen=True)
class EmulatorConfig:
    """Architecture and training settings (KilonovaML: 8 couplings, 2 x 32 residual blocks, batch 1000)."""

    n_layers: int = 8
    hidden: int = 64
    n_blocks: int = 2
    batch_norm: bool = True
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 150
    lr_step: int = 50
    lr_gamma: float = 0.5
    x_noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "hidden", "n_blocks", "batch_size", "epochs", "lr_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"EmulatorConfig.{name} must be >= 1")
        if not (self.lr > 0 and 0 < self.lr_gamma <= 1 and self.x_noise >= 0):
            raise ValueError("need lr > 0, 0 < lr_gamma <= 1 and x_noise >= 0")


def build_flow(n_features: int, n_context: int, cfg: EmulatorConfig) -> Flow:
    """The conditional RealNVP flow (weights and permutations seeded by ``cfg.seed``).

    The base density is a diagonal Gaussian whose mean and log-scale a residual
    network computes from the context, so the parameters set the location of
    the curve from the first layer on; the couplings model the rest.
    """
    if n_features < 2:
        raise ValueError("a coupling flow needs at least 2 features")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)

    def net(n_in: int, n_out: int) -> ResidualNet:
        return ResidualNet(n_in, n_out, hidden_features=cfg.hidden, context_features=n_context,
                           num_blocks=cfg.n_blocks, activation=F.relu)

    layers: list[Any] = []
    for i in range(cfg.n_layers):
        layers.append(RandomPermutation(n_features))
        layers.append(AffineCouplingTransform(create_alternating_binary_mask(n_features, even=i % 2 == 0), net))
        if cfg.batch_norm and i < cfg.n_layers - 1:
            layers.append(BatchNorm(n_features))
    encoder = ResidualNet(n_context, 2 * n_features, hidden_features=cfg.hidden, num_blocks=cfg.n_blocks,
                          activation=F.relu)
    flow = Flow(CompositeTransform(layers), ConditionalDiagonalNormal([n_features], context_encoder=encoder))
    torch.random.set_rng_state(gen_state)
    return flow


@dataclass
class Standardizer:
    """``(f(v) - mean) / std`` per column, ``f = log`` on flagged columns."""

    mean: np.ndarray
    std: np.ndarray
    log: np.ndarray

    @classmethod
    def fit(cls, v: np.ndarray, log: Sequence[bool] | None = None) -> "Standardizer":
        v = np.asarray(v, dtype=float)
        flags = np.zeros(v.shape[1], bool) if log is None else np.asarray(log, bool)
        if flags.shape != (v.shape[1],):
            raise ValueError(f"need one log flag per column ({v.shape[1]}), got {flags.shape}")
        if np.any(v[:, flags] <= 0):
            raise ValueError("log-transformed columns must be > 0")
        w = np.where(flags, np.log(np.where(flags, v, 1.0)), v)
        std = w.std(axis=0)
        return cls(w.mean(axis=0), np.where(std > 0, std, 1.0), flags)

    def forward(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        if np.any(v[..., self.log] <= 0):
            raise ValueError("log-transformed columns must be > 0")
        w = np.where(self.log, np.log(np.where(self.log, v, 1.0)), v)
        return (w - self.mean) / self.std

    def inverse(self, w: np.ndarray) -> np.ndarray:
        v = np.asarray(w, dtype=float) * self.std + self.mean
        return np.where(self.log, np.exp(np.where(self.log, v, 0.0)), v)

    def state(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "log": self.log.tolist()}

    @classmethod
    def from_state(cls, s: dict[str, list]) -> "Standardizer":
        return cls(np.asarray(s["mean"], float), np.asarray(s["std"], float), np.asarray(s["log"], bool))


@dataclass
class CurveEmulator:
    """A trained conditional flow with its normalisation and metadata.

    ``curve_shape`` is the shape of one sample's curves, e.g. ``(n_band, n_time)``;
    ``coords`` holds the labelled axes (e.g. ``{"band": [...], "time": [...]}``).
    """

    flow: Flow
    cfg: EmulatorConfig
    x_norm: Standardizer
    y_norm: Standardizer
    label_names: tuple[str, ...]
    curve_shape: tuple[int, ...]
    coords: dict[str, list] = field(default_factory=dict)
    temperature: float = 1.0
    spread: list[float] | None = None

    def _draw(self, ctx: torch.Tensor, n_draws: int, temperature: float) -> torch.Tensor:
        """``n_draws`` standardised curves per context row at ``temperature``: (len(ctx), n_draws, n_features)."""
        means, log_stds = self.flow._distribution._compute_params(ctx)
        noise = torch.randn(len(ctx), n_draws, means.shape[-1]) if temperature > 0 else torch.zeros(
            len(ctx), n_draws, means.shape[-1])
        z = means[:, None] + temperature * torch.exp(log_stds)[:, None] * noise
        x, _ = self.flow._transform.inverse(z.reshape(-1, z.shape[-1]),
                                            context=ctx.repeat_interleave(n_draws, dim=0))
        return x.reshape(len(ctx), n_draws, -1)

    @torch.no_grad()
    def sample(self, labels: np.ndarray, n_draws: int = 1, seed: int = 0, batch_size: int = 4096,
               temperature: float | None = None) -> np.ndarray:
        """Draw curves for each row of ``labels`` (n, n_label): shape (n, n_draws, *curve_shape).

        ``temperature`` (default: the calibrated :attr:`temperature`) scales the
        base density's width; 0 gives the central curve, the same in every draw.
        With a calibrated :attr:`spread` (one factor per channel, the first axis
        of ``curve_shape``), each draw's deviation from the central curve is
        scaled by its channel's factor.
        """
        y = np.atleast_2d(np.asarray(labels, dtype=float))
        if y.shape[1] != len(self.label_names):
            raise ValueError(f"need {len(self.label_names)} labels {self.label_names}, got {y.shape[1]} columns")
        if n_draws < 1:
            raise ValueError("n_draws must be >= 1")
        temp = self.temperature if temperature is None else float(temperature)
        if not temp >= 0:
            raise ValueError(f"temperature must be >= 0, got {temp}")
        self.flow.eval()
        ctx = torch.as_tensor(self.y_norm.forward(y), dtype=torch.float32)
        rows = max(1, batch_size // n_draws)
        with torch.random.fork_rng(devices=[]):  # seeded draws, the global RNG state is left untouched
            torch.manual_seed(seed)
            out = [self._draw(ctx[i:i + rows], n_draws, temp).numpy() for i in range(0, len(ctx), rows)]
        x = self.x_norm.inverse(np.concatenate(out).astype(float)).reshape(len(y), n_draws, *self.curve_shape)
        if self.spread is None or temp == 0:
            return x
        central = self.sample(y, 1, temperature=0.0)
        scale = np.asarray(self.spread, float).reshape(-1, *([1] * (len(self.curve_shape) - 1)))
        return central + scale * (x - central)

    @torch.no_grad()
    def log_prob(self, curves: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """log p(x | y) of standardised curves (nats, in standardised units), shape (n,)."""
        self.flow.eval()
        x = torch.as_tensor(self.x_norm.forward(np.asarray(curves).reshape(len(curves), -1)), dtype=torch.float32)
        y = torch.as_tensor(self.y_norm.forward(labels), dtype=torch.float32)
        return self.flow.log_prob(x, context=y).numpy()

    def save(self, path: str | Path) -> None:
        torch.save({"state_dict": self.flow.state_dict(), "cfg": asdict(self.cfg), "x_norm": self.x_norm.state(),
                    "y_norm": self.y_norm.state(), "label_names": [str(n) for n in self.label_names],
                    "curve_shape": [int(n) for n in self.curve_shape],
                    "coords": plain(self.coords), "temperature": float(self.temperature),
                    "spread": None if self.spread is None else [float(v) for v in self.spread]}, Path(path))  # plain values only: loads with weights_only=True

    @classmethod
    def load(cls, path: str | Path) -> "CurveEmulator":
        d = load_checkpoint(path)
        cfg = EmulatorConfig(**d["cfg"])
        shape = tuple(d["curve_shape"])
        flow = build_flow(int(np.prod(shape)), len(d["label_names"]), cfg)
        flow.load_state_dict(d["state_dict"])
        flow.eval()
        return cls(flow, cfg, Standardizer.from_state(d["x_norm"]), Standardizer.from_state(d["y_norm"]),
                   tuple(d["label_names"]), shape, d["coords"], float(d.get("temperature", 1.0)), d.get("spread"))


def band_coverage(draws: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
                  levels: tuple[float, float] = (5.0, 95.0)) -> float:
    """Fraction of the ``mask``-ed points of ``true`` (n, ...) inside the ``levels`` percentiles of ``draws`` (n, k, ...)."""
    lo, hi = np.percentile(draws, levels, axis=1)
    inside = (true >= lo) & (true <= hi)
    return float(inside[mask].mean() if mask is not None else inside.mean())


def _log_bisect(coverage, target: float, bounds: tuple[float, float], n_iter: int) -> float:
    """The factor in ``bounds`` at which the increasing ``coverage(factor)`` reaches ``target`` (bisection in log)."""
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if coverage(float(np.exp(mid))) < target else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def calibrate_temperature(
    emulator: CurveEmulator,
    curves: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray | None = None,
    target: float = 0.90,
    n_draws: int = 100,
    seed: int = 0,
    bounds: tuple[float, float] = (0.02, 3.0),
    n_iter: int = 12,
) -> tuple[float, float]:
    """The temperature whose 5-95% band of draws covers a ``target`` fraction of held-out ``curves``.

    Bisection in ``log T`` inside ``bounds`` on the coverage measured with
    ``n_draws`` draws per curve (the same seed every time, so coverage is
    monotone in ``T`` up to the flow's non-linearity). ``mask`` selects the
    points that count (e.g. where the simulator defines the curve). Clears a
    per-channel :attr:`~CurveEmulator.spread`, sets ``emulator.temperature`` and
    returns ``(temperature, coverage)``.
    """
    emulator.spread = None
    def cover(t: float) -> float:
        return band_coverage(emulator.sample(labels, n_draws, seed, temperature=t), curves, mask)

    emulator.temperature = _log_bisect(cover, target, bounds, n_iter)
    return emulator.temperature, cover(emulator.temperature)


def calibrate_spread(
    emulator: CurveEmulator,
    curves: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray | None = None,
    target: float = 0.90,
    n_draws: int = 100,
    seed: int = 0,
    bounds: tuple[float, float] = (0.1, 10.0),
    n_iter: int = 30,
) -> tuple[list[float], list[float]]:
    """Per-channel factors on the draws' deviations from the central curve for a ``target`` 5-95% coverage.

    After :func:`calibrate_temperature` one temperature sets the overall
    coverage; channels (bands) can still be too wide or too narrow relative to
    each other. The draws are made once (at the emulator's temperature); the
    band of ``c + s (x - c)`` is ``c + s (band of x - c)``, so each channel's
    factor ``s`` is found by bisection without new draws. Sets
    ``emulator.spread`` and returns ``(spread, coverage per channel)``.
    """
    emulator.spread = None
    draws = emulator.sample(labels, n_draws, seed)
    central = emulator.sample(labels, 1, temperature=0.0)[:, 0]
    lo, hi = np.percentile(draws, [5.0, 95.0], axis=1)
    mask = np.ones(curves.shape, bool) if mask is None else np.asarray(mask, bool)

    def cover(c: int, s: float) -> float:
        inside = (curves[:, c] >= central[:, c] + s * (lo[:, c] - central[:, c])) & (
            curves[:, c] <= central[:, c] + s * (hi[:, c] - central[:, c]))
        return float(inside[mask[:, c]].mean())

    spread, got = [], []
    for c in range(curves.shape[1]):
        spread.append(_log_bisect(lambda f: cover(c, f), target, bounds, n_iter))
        got.append(cover(c, spread[-1]))
    emulator.spread = spread
    return spread, got


@dataclass
class TrainingHistory:
    """Mean negative log-likelihood per epoch (standardised units) and the best epoch kept."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size))


def train_emulator(
    train_curves: np.ndarray,
    train_labels: np.ndarray,
    valid_curves: np.ndarray,
    valid_labels: np.ndarray,
    label_names: Sequence[str],
    cfg: EmulatorConfig = EmulatorConfig(),
    log_labels: Sequence[bool] | None = None,
    coords: dict[str, list] | None = None,
    callback: Callable[[int, CurveEmulator, TrainingHistory], None] | None = None,
    progress: bool = True,
) -> tuple[CurveEmulator, TrainingHistory]:
    """Fit a :class:`CurveEmulator` by maximum likelihood (Adam, StepLR).

    ``*_curves`` are (n, *curve_shape) NaN-free arrays, ``*_labels`` (n, n_label).
    The weights of the epoch with the lowest validation loss are kept.
    Training curves get fresh Gaussian noise of ``cfg.x_noise`` (in curve units,
    e.g. mag) every epoch: a deterministic simulator has a delta-like ``p(x | y)``,
    and the jitter gives the flow a well-defined target of that width instead of
    letting it collapse onto the curve manifold while ignoring ``y``.
    ``callback(epoch, emulator, history)`` runs after every epoch (snapshots).
    """
    xt = np.asarray(train_curves, dtype=float)
    xv = np.asarray(valid_curves, dtype=float)
    if not (np.isfinite(xt).all() and np.isfinite(xv).all()):
        raise ValueError("training curves contain NaN/inf; fill or drop them first (popstore.kilonova.transforms)")
    shape = xt.shape[1:]
    if xv.shape[1:] != shape or len(xt) != len(train_labels) or len(xv) != len(valid_labels):
        raise ValueError("curves and labels of train/valid do not match in shape")
    x_norm = Standardizer.fit(xt.reshape(len(xt), -1))
    y_norm = Standardizer.fit(train_labels, log_labels)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(x_norm.forward(x.reshape(len(x), -1)), dtype=torch.float32),
                torch.as_tensor(y_norm.forward(y), dtype=torch.float32))

    (Xt, Yt), (Xv, Yv) = tensors(xt, np.asarray(train_labels)), tensors(xv, np.asarray(valid_labels))
    flow = build_flow(Xt.shape[1], Yt.shape[1], cfg)
    emu = CurveEmulator(flow, cfg, x_norm, y_norm, tuple(label_names), tuple(shape), dict(coords or {}))
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise_scale = torch.as_tensor(cfg.x_noise / x_norm.std, dtype=torch.float32)  # x_noise [curve units] per feature
    hist = TrainingHistory()
    best: dict[str, torch.Tensor] | None = None
    best_loss = np.inf
    bar = tqdm(range(cfg.epochs), desc="emulator", unit="epoch", disable=not progress)
    for epoch in bar:
        flow.train()
        total = 0.0
        for idx in _batches(len(Xt), cfg.batch_size, gen):
            if len(idx) < 2:  # batch norm needs two samples
                continue
            x = Xt[idx] + noise_scale * torch.randn(len(idx), Xt.shape[1], generator=gen)
            loss = -flow.log_prob(x, context=Yt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        flow.eval()
        with torch.no_grad():
            vloss = -flow.log_prob(Xv, context=Yv).mean().item()
        hist.train_loss.append(total / len(Xt))
        hist.valid_loss.append(vloss)
        if np.isfinite(vloss) and vloss < best_loss:
            best = {k: v.detach().clone() for k, v in flow.state_dict().items()}
            best_loss, hist.best_epoch = vloss, epoch
        bar.set_postfix(train=f"{hist.train_loss[-1]:.3f}", valid=f"{vloss:.3f}")
        if callback is not None:
            callback(epoch, emu, hist)
    if best is None:
        raise RuntimeError("training diverged: no finite validation loss")
    flow.load_state_dict(best)
    flow.eval()
    return emu, hist
