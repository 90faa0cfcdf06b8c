"""Training loop of a :class:`~popstore.estimators.model.MomentModel`.

Optimiser and schedule of the CMD benchmark (Villaescusa-Navarro et al. 2022):
AdamW with betas (0.5, 0.999) and a triangular cyclic learning rate between
1e-9 and ``lr`` (``cycle`` batches up, ``cycle`` down, stepped every batch).
Runs on CUDA when available (with float16 autocast and gradient scaling) and on
the CPU otherwise. The checkpoint of the epoch with the lowest validation loss
is kept, and every epoch's losses and throughput are written to ``losses.csv``.
The validation loss runs over the same symmetries of the square as the test
(all 8 for a model trained with rotations, as CMD validates; see
``TrainConfig.valid_orientations``), each orientation counting as one sample.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from popstore.estimators.loss import moment_loss
from popstore.estimators.model import MomentModel
from popstore.estimators.preprocess import N_ORIENTATIONS, orient, random_orientations

LOSS_COLUMNS = ("epoch", "train_loss", "valid_loss", "lr", "seconds", "samples_per_s")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (CMD defaults: batch 128, 200 epochs, lr and wd from the search).

    ``threads`` sets ``torch.set_num_threads`` for CPU training; on a shared
    machine 1 thread per process is far faster per CPU-second than several
    (measured 10x on 2 oversubscribed cores, see benchmarks/bench_training.py).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 30
    cycle: int = 500
    device: str | None = None
    amp: bool = True
    seed: int = 0
    progress: bool = True
    threads: int | None = None
    valid_orientations: int | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.epochs < 1 or self.cycle < 1 or (self.threads or 1) < 1:
            raise ValueError(f"invalid training settings {self}")
        if self.valid_orientations not in (None, 1, N_ORIENTATIONS):
            raise ValueError(f"valid_orientations must be 1 or {N_ORIENTATIONS}, got {self.valid_orientations}")


@dataclass(frozen=True)
class TrainResult:
    """Where the best checkpoint went and how training went."""

    checkpoint: Path
    losses: Path
    best_epoch: int
    best_valid_loss: float
    samples_per_s: float


def default_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def validation_loss(model: MomentModel, loader: Iterable, device: torch.device, amp: bool, orientations: int = 1) -> float:
    """Moment loss over a whole split (the batch means of the loss run over every sample), each map
    evaluated in the first ``orientations`` symmetries of the square (:func:`orient`)."""
    model.eval()
    s1 = s2 = None
    n = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for k in range(orientations):  # one batch per orientation: the memory of a training batch
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    mean, sigma = model(orient(x, k))
                sq = torch.square(mean.float() - y)
                t1, t2 = sq.sum(0), torch.square(sq - torch.square(sigma.float())).sum(0)
                s1, s2 = (t1, t2) if s1 is None else (s1 + t1, s2 + t2)
                n += y.shape[0]
    if n == 0:
        raise ValueError("validation split is empty")
    return float((torch.log(s1 / n) + torch.log(s2 / n)).mean())


def fit(
    model: MomentModel,
    train_loader: Iterable,
    valid_loader: Iterable,
    config: TrainConfig,
    out_dir: str | Path,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` on batches ``(x, y_normalised)``; keep the best-validation checkpoint.

    ``on_epoch(epoch, valid_loss)`` is called after every epoch (optuna pruning
    raises from it). Training stops early if the training loss becomes non-finite.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = default_device(config.device)
    amp = config.amp and device.type == "cuda"
    if config.threads is not None and device.type == "cpu":
        torch.set_num_threads(config.threads)
    model.to(device)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=1e-9, max_lr=config.lr, step_size_up=config.cycle, step_size_down=config.cycle, cycle_momentum=False
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    checkpoint, losses_path = out / "model.pt", out / "losses.csv"
    best, best_epoch, rates = math.inf, -1, []
    n_orient = config.valid_orientations or (N_ORIENTATIONS if model.augment else 1)
    with open(losses_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOSS_COLUMNS)
        for epoch in tqdm(range(config.epochs), desc="epochs", disable=not config.progress):
            model.train()
            t0, total, n = time.perf_counter(), 0.0, 0
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if model.augment:
                    x = random_orientations(x, gen)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    mean, sigma = model(x)
                loss = moment_loss(mean, sigma, y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                total += loss.item() * y.shape[0]
                n += y.shape[0]
            if n == 0:
                raise ValueError("training split is empty")
            seconds = time.perf_counter() - t0
            rates.append(n / seconds)
            train_loss = total / n
            valid = validation_loss(model, valid_loader, device, amp, n_orient) if math.isfinite(train_loss) else math.nan
            writer.writerow([epoch, train_loss, valid, sched.get_last_lr()[0], seconds, n / seconds])
            fh.flush()
            if math.isfinite(valid) and valid < best:
                best, best_epoch = valid, epoch
                model.save(checkpoint)
            if not math.isfinite(train_loss):
                break
            if on_epoch is not None:
                on_epoch(epoch, valid)
    return TrainResult(checkpoint, losses_path, best_epoch, best, float(sum(rates) / len(rates)))
