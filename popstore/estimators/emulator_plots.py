"""Figures of a curve emulator: predicted vs true curves ("model evolution" snapshots)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import colormaps

from popstore.estimators.emulator import CurveEmulator, TrainingHistory
from popstore.plotting import figure


def plot_predictions(
    emulator: CurveEmulator,
    curves: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    valid: np.ndarray | None = None,
    n_draws: int = 50,
    title: str = "",
    seed: int = 0,
) -> Path:
    """One panel per band: true curves (points; open where NaN-filled) vs emulator median and 5-95% range.

    ``curves`` (k, n_band, n_time) and ``labels`` (k, n_label) are a few examples;
    ``emulator.coords`` must hold ``band`` and ``time`` [day].
    """
    bands, time = emulator.coords["band"], np.asarray(emulator.coords["time"])
    draws = emulator.sample(labels, n_draws=n_draws, seed=seed)
    lo, med, hi = np.percentile(draws, [5, 50, 95], axis=1)
    valid = np.ones(curves.shape, bool) if valid is None else valid
    fig, axes = figure(1, len(bands), figsize=(3.2 * len(bands), 3.2), sharey=True, squeeze=False)
    colours = colormaps["viridis"](np.linspace(0, 0.9, len(curves)))
    for b, ax in enumerate(axes[0]):
        for k, col in enumerate(colours):
            ax.fill_between(time, lo[k, b], hi[k, b], color=col, alpha=0.25, lw=0)
            ax.plot(time, med[k, b], color=col, lw=1.2)
            ax.scatter(time[valid[k, b]], curves[k, b][valid[k, b]], color=col, s=12, zorder=3)
            ax.scatter(time[~valid[k, b]], curves[k, b][~valid[k, b]], facecolors="none", edgecolors=col, s=12, zorder=3)
        ax.set_title(f"{bands[b]} band")
        ax.set_xlabel("time since merger [day]")
    axes[0, 0].set_ylabel("absolute magnitude [mag]")
    axes[0, 0].invert_yaxis()
    fig.suptitle(title or "emulator (line: median, band: 5-95%) vs DU17 (points; open: NaN-filled)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def snapshot_callback(
    folder: str | Path,
    curves: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray | None = None,
    every: int = 10,
) -> Callable[[int, CurveEmulator, TrainingHistory], None]:
    """A :func:`~popstore.estimators.emulator.train_emulator` callback saving ``epoch_NNNN.png`` every ``every`` epochs."""
    if every < 1:
        raise ValueError("snapshot interval must be >= 1 epoch")

    def callback(epoch: int, emulator: CurveEmulator, history: TrainingHistory) -> None:
        if (epoch + 1) % every == 0 or epoch == 0:
            plot_predictions(emulator, curves, labels, Path(folder) / f"epoch_{epoch + 1:04d}.png", valid,
                             title=f"epoch {epoch + 1}: valid NLL {history.valid_loss[-1]:.2f}")
            emulator.flow.train()  # sampling switched the flow to eval mode

    return callback


def plot_history(history: TrainingHistory, path: str | Path) -> Path:
    """Training and validation loss per epoch."""
    fig, ax = figure(figsize=(5.0, 3.5))
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train")
    ax.plot(epochs, history.valid_loss, label="valid")
    ax.axvline(history.best_epoch + 1, color="k", ls=":", lw=0.8, label="kept")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL [nat] (standardised curves)")
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
