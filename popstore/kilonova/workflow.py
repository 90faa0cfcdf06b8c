"""The kilonova stages of a pipeline: generate the store, train the emulator, evaluate and time it.

A pipeline file (``pipelines/kilonova.toml``) has the core sections
(``[simulator]`` with ``name = "kilonova_du17"``, ``[priors]``, ``[store]``,
``[split]``, ``[cluster]``) plus ``[emulator]`` (the
:class:`~popstore.estimators.emulator.EmulatorConfig` fields and ``labels``,
``factor``, ``output``, ``snapshot_every``, ``threads``) and ``[evaluate]``
(``n_draws``, ``n_timing``, ``seed``).

The store itself is made by the core ``popstore generate`` command: the
simulator's own :meth:`~popstore.kilonova.simulator.KilonovaDU17.parameter_table`
draws ordered binaries from ``[priors]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from popstore.estimators.emulator import CurveEmulator, EmulatorConfig, TrainingHistory, train_emulator
from popstore.estimators.emulator_metrics import abs_error_stats
from popstore.estimators.emulator_plots import plot_history, plot_predictions, snapshot_callback
from popstore.kilonova.dataset import CurveSet, load_curves
from popstore.kilonova.lightcurve import light_curves
from popstore.kilonova.params import LABELS
from popstore.kilonova.simulator import KilonovaDU17
from popstore.pipeline import section_schema
from popstore.store import open_store


# schemas of this stage's sections (entry points of the "popstore.pipeline_sections" group)
EmulatorSection = section_schema(
    "emulator", EmulatorConfig, output=(str, ...), snapshots=(Optional[str], None),
    snapshot_every=(Optional[int], None), labels=(Optional[list[str]], None), factor=(Optional[int], None),
    threads=(Optional[int], None),
)
EvaluateSection = section_schema(
    "evaluate", n_draws=(Optional[int], None), n_timing=(Optional[int], None), figure=(Optional[str], None),
    seed=(Optional[int], None),
)


def emulator_config(section: dict[str, Any]) -> EmulatorConfig:
    """The :class:`EmulatorConfig` fields of an ``[emulator]`` section (other keys ignored)."""
    names = {f.name for f in fields(EmulatorConfig)}
    return EmulatorConfig(**{k: v for k, v in section.items() if k in names})


def label_log_flags(store: str | Path, labels: Sequence[str]) -> list[bool]:
    """Whether each label has a log prior (``prior_log`` attr; ``*_obs`` labels follow their true label)."""
    ds = open_store(store)
    return [bool(ds[name.removesuffix("_obs")].attrs.get("prior_log", 0)) for name in labels]


def train_from_store(
    store: str | Path,
    cfg: EmulatorConfig,
    labels: Sequence[str] = LABELS,
    factor: int = 120,
    snapshot_dir: str | Path | None = None,
    snapshot_every: int = 10,
    progress: bool = True,
) -> tuple[CurveEmulator, TrainingHistory]:
    """Train an emulator on the ``train`` split of a light-curve store (``valid`` for model selection).

    With ``snapshot_dir``, four validation curves are drawn against the
    emulator every ``snapshot_every`` epochs (``epoch_NNNN.png``) and the loss
    history is saved as ``loss.png``.
    """
    train, valid = (load_curves(store, s, labels, factor=factor) for s in ("train", "valid"))
    callback: Callable | None = None
    if snapshot_dir is not None:
        pick = np.linspace(0, len(valid) - 1, 4).astype(int)
        callback = snapshot_callback(snapshot_dir, valid.curves[pick], valid.labels[pick], valid.valid[pick],
                                     snapshot_every)
    emu, hist = train_emulator(
        train.curves, train.labels, valid.curves, valid.labels, labels, cfg,
        log_labels=label_log_flags(store, labels),
        coords={"band": list(train.bands), "time": train.time.tolist(), "factor": [factor]},
        callback=callback, progress=progress,
    )
    if snapshot_dir is not None:
        plot_history(hist, Path(snapshot_dir) / "loss.png")
    return emu, hist


def evaluate(emu: CurveEmulator, curves: CurveSet, n_draws: int = 100, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Absolute magnitude errors per band on held-out curves, where DU17 is defined (not NaN-filled).

    ``"single draw"``: one emulator draw per curve; ``f"median of {n_draws}"``:
    the per-time median of ``n_draws`` draws.
    """
    draws = emu.sample(curves.labels, n_draws=n_draws, seed=seed)
    return {
        "single draw": abs_error_stats(draws[:, 0], curves.curves, curves.bands, curves.valid),
        f"median of {n_draws}": abs_error_stats(np.median(draws, axis=1), curves.curves, curves.bands, curves.valid),
    }


def _best_time(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_models(
    emu: CurveEmulator,
    sim: KilonovaDU17,
    table: pd.DataFrame,
    n_draws: int = 100,
    loop_reference: Callable[[pd.Series], Any] | None = None,
    n_loop: int = 50,
) -> dict[str, float]:
    """Seconds *per light curve* (all bands) of the emulator and of DU17 on the same binaries.

    Keys: ``emulator`` (``n_draws`` draws per binary, as KilonovaML timed it),
    ``emulator_1draw``; ``du17_vectorised`` (whole table, full time grid),
    ``du17_vectorised_emulator_times`` (only the emulator's times),
    ``du17_per_curve_loop`` (our DU17 called once per binary, first ``n_loop``),
    and ``research_loop`` when ``loop_reference(row)`` is given (e.g. the
    gwemlightcurves per-time-step implementation, first ``n_loop`` binaries).
    """
    n = len(table)
    cols = [table[c].to_numpy(float) for c in LABELS]
    t_emu = np.asarray(emu.coords["time"])
    out = {
        "emulator": _best_time(lambda: emu.sample(table[list(emu.label_names)].to_numpy(), n_draws=n_draws))
        / (n * n_draws),
        "emulator_1draw": _best_time(lambda: emu.sample(table[list(emu.label_names)].to_numpy(), n_draws=1)) / n,
        "du17_vectorised": _best_time(lambda: light_curves(*cols, sim.time, sim.bands, sim.settings)) / n,
        "du17_vectorised_emulator_times": _best_time(lambda: light_curves(*cols, t_emu, sim.bands, sim.settings)) / n,
    }
    m = min(n_loop, n)
    sub = table.iloc[:m]
    out["du17_per_curve_loop"] = _best_time(
        lambda: [sim.simulate(row, 0) for row in sub.to_dict("records")], repeat=1) / m
    if loop_reference is not None:
        out["research_loop"] = _best_time(lambda: [loop_reference(r) for _, r in sub.iterrows()], repeat=1) / m
    return out


def example_figure(emu: CurveEmulator, curves: CurveSet, path: str | Path, n: int = 4, seed: int = 0) -> Path:
    """Predicted vs true curves of ``n`` held-out binaries."""
    pick = np.linspace(0, len(curves) - 1, n).astype(int)
    return plot_predictions(emu, curves.curves[pick], curves.labels[pick], path, curves.valid[pick], seed=seed,
                            title="held-out binaries: emulator (median, 5-95%) vs DU17 (points; open: NaN-filled)")
