"""The kilonova stages of a pipeline: generate the store, train the emulator, evaluate and time it.

A pipeline file (``pipelines/kilonova.toml``) has the core sections
(``[simulator]`` with ``name = "kilonova_du17"``, ``[priors]``, ``[store]``,
``[split]``, ``[cluster]``) plus ``[emulator]`` (the
:class:`~popstore.estimators.emulator.EmulatorConfig` fields and ``labels``,
``factor`` or ``times``, ``output``, ``snapshot_every``, ``threads``) and ``[evaluate]``
(``n_draws``, ``n_timing``, ``seed``).

The store itself is made by the core ``popstore generate`` command: the
simulator's own :meth:`~popstore.kilonova.simulator.KilonovaDU17.parameter_table`
draws ordered binaries from ``[priors]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from popstore.estimators.emulator import (
    CurveEmulator,
    EmulatorConfig,
    TrainingHistory,
    band_coverage,
    calibrate_spread,
    calibrate_temperature,
    train_emulator,
)
from popstore.estimators.emulator_metrics import abs_error_stats, binned_abs_error, grouped_abs_error
from popstore.estimators.emulator_plots import plot_history, plot_predictions, snapshot_callback
from popstore.kilonova.dataset import CurveSet, load_curves
from popstore.kilonova.inference import EmulatorPhotometry
from popstore.kilonova.lightcurve import DU17Settings, light_curves
from popstore.kilonova.params import LABELS
from popstore.kilonova.simulator import KilonovaDU17
from popstore.pipeline import section_schema
from popstore.store import open_store


# schemas of this stage's sections (entry points of the "popstore.pipeline_sections" group)
EmulatorSection = section_schema(
    "emulator", EmulatorConfig, output=(str, ...), snapshots=(Optional[str], None),
    snapshot_every=(Optional[int], None), labels=(Optional[list[str]], None), factor=(Optional[int], None),
    times=(Optional[list[float]], None), threads=(Optional[int], None), coverage=(Optional[float], None),
)
EvaluateSection = section_schema(
    "evaluate", n_draws=(Optional[int], None), n_timing=(Optional[int], None), figure=(Optional[str], None),
    seed=(Optional[int], None),
)


def emulator_config(section: dict[str, Any]) -> EmulatorConfig:
    """The :class:`EmulatorConfig` fields of an ``[emulator]`` section (other keys ignored)."""
    names = {f.name for f in fields(EmulatorConfig)}
    return EmulatorConfig(**{k: v for k, v in section.items() if k in names})


#: Diagnostics conditioned on in log: the ejecta mass spans two decades and sets the time scale (t / Mej^(1/3.2)).
LOG_DIAGNOSTICS = ("ejecta_mass",)


def label_log_flags(store: str | Path, labels: Sequence[str]) -> list[bool]:
    """Whether each label is log-transformed: a log prior (``prior_log`` attr; ``*_obs`` labels follow their
    true label) or one of :data:`LOG_DIAGNOSTICS`."""
    ds = open_store(store)
    return [bool(ds[name.removesuffix("_obs")].attrs.get("prior_log", name in LOG_DIAGNOSTICS)) for name in labels]


def train_from_store(
    store: str | Path,
    cfg: EmulatorConfig,
    labels: Sequence[str] = LABELS,
    factor: int = 120,
    snapshot_dir: str | Path | None = None,
    snapshot_every: int = 10,
    progress: bool = True,
    times: Sequence[float] | None = None,
    coverage: float | None = 0.90,
    n_calibration: int = 500,
) -> tuple[CurveEmulator, TrainingHistory]:
    """Train an emulator on the ``train`` split of a light-curve store (``valid`` for model selection).

    ``times`` [day] picks the emulated times (nearest grid points) instead of
    every ``factor``-th one. With ``coverage``, the sampling temperature
    and per-band spread are calibrated on ``n_calibration`` curves of the ``valid`` split so that the
    5-95% band of draws contains that fraction of the DU17 points (:func:`calibrate`).
    With ``snapshot_dir``, four validation curves are drawn against the
    emulator every ``snapshot_every`` epochs (``epoch_NNNN.png``) and the loss
    history is saved as ``loss.png``.
    """
    train, valid = (load_curves(store, s, labels, factor=factor, times=times) for s in ("train", "valid"))
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
    if coverage is not None:
        calibrate(emu, valid, coverage, n_calibration, cfg.seed)
    if snapshot_dir is not None:
        plot_history(hist, Path(snapshot_dir) / "loss.png")
    return emu, hist


def calibrate(emu: CurveEmulator, curves: CurveSet, coverage: float = 0.90, n: int = 500, seed: int = 0
              ) -> dict[str, Any]:
    """Calibrate the 5-95% band of ``emu`` on ``n`` curves of ``curves`` (the valid split) at the DU17-defined
    points: the sampling temperature (50 draws per curve), then one spread factor per band (100 draws)."""
    pick = np.random.default_rng(seed).permutation(len(curves))[:n]
    args = (curves.curves[pick], curves.labels[pick], curves.valid[pick])
    temp, cov = calibrate_temperature(emu, *args, target=coverage, n_draws=50, seed=seed + 1)
    spread, per_band = calibrate_spread(emu, *args, target=coverage, n_draws=100, seed=seed + 2)
    return {"temperature": temp, "coverage": cov, "spread": dict(zip(curves.bands, spread)),
            "band_coverage": dict(zip(curves.bands, per_band))}


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


#: Time bins [day] of the held-out report: the early rise, the peak, the decline, the tail.
TIME_BINS = (0.0, 2.0, 4.0, 7.0, 15.0)


def heldout_report(
    emu: CurveEmulator,
    curves: CurveSet,
    ejecta_mass: np.ndarray,
    n_draws: int = 100,
    seed: int = 0,
    time_bins: Sequence[float] = TIME_BINS,
) -> dict[str, pd.DataFrame]:
    """Held-out accuracy where it matters, at the points where DU17 is defined.

    Two predictors: one draw at the emulator's (calibrated) temperature, and
    the central curve (temperature 0, what :class:`~popstore.kilonova.inference.EmulatorPhotometry`
    uses). Tables: median and 90th-percentile ``|error|`` [mag] per band and
    time bin; median, 90th percentile and fraction above 0.5 mag per quartile
    of the ejecta mass ``ejecta_mass`` (n,) [Msun]; the fraction of DU17
    points inside the 5-95% band of ``n_draws`` draws, per band (target 0.90),
    calibrated (the emulator's temperature and spread) and uncalibrated (T = 1).
    """
    draws = emu.sample(curves.labels, n_draws=n_draws, seed=seed)
    central = emu.sample(curves.labels, n_draws=1, temperature=0.0)[:, 0]
    time = np.asarray(curves.time)
    edges = np.quantile(ejecta_mass, [0.25, 0.5, 0.75])
    quartile = np.digitize(ejecta_mass, edges)
    names = [f"Q{q + 1} {lo:.4f}-{hi:.4f} Msun" for q, (lo, hi) in enumerate(
        zip([ejecta_mass.min(), *edges], [*edges, ejecta_mass.max()]))]
    out: dict[str, pd.DataFrame] = {}
    for label, pred in (("one draw", draws[:, 0]), ("central curve", central)):
        for q, qname in ((0.5, "median"), (0.9, "p90")):
            out[f"{label}, {qname} by band and time bin [day]"] = binned_abs_error(
                pred, curves.curves, curves.bands, time, time_bins, curves.valid, q)
        table = grouped_abs_error(pred, curves.curves, quartile, curves.valid)
        table.index = [names[g] for g in table.index]
        out[f"{label}, by ejecta-mass quartile"] = table
    cover = {}
    raw = replace(emu, spread=None).sample(curves.labels, n_draws=n_draws, seed=seed, temperature=1.0)
    for name, d in (("calibrated", draws), ("T=1, no spread", raw)):
        cover[name] = [band_coverage(d[:, :, b], curves.curves[:, b], curves.valid[:, b])
                       for b in range(len(curves.bands))] + [band_coverage(d, curves.curves, curves.valid)]
    out["5-95% band coverage"] = pd.DataFrame(cover, index=pd.Index([*curves.bands, "all"], name="band"))
    return out


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


def speed_table(
    emu: CurveEmulator,
    table: pd.DataFrame,
    settings: DU17Settings = DU17Settings(),
    n_draws: int = 100,
    n_loop: int = 50,
) -> pd.DataFrame:
    """Seconds per light curve (all the emulator's bands and times) and per 100 curves, on the binaries of
    ``table`` that have ejecta.

    Each row is the best of 3-7 repeats. Rows: DU17 called once per binary (first ``n_loop`` binaries), DU17 vectorised
    over the whole table, the emulator's central curve (temperature 0, one pass;
    what the likelihood uses) and ``n_draws`` emulator draws per binary (how
    KilonovaML timed it). Column ``per binary prediction``: one DU17 curve, one
    central curve, or ``n_draws`` draws (the research code's ~235x compared
    the last with the first).
    """
    labels, mass = EmulatorPhotometry.labels_of(emu, table[list(LABELS)].to_numpy(float))
    table, labels = table[mass > 0], labels[mass > 0]  # binaries with ejecta: the others have no light curve
    cols = [table[c].to_numpy(float) for c in LABELS]
    t = np.asarray(emu.coords["time"], float)
    bands = tuple(str(b) for b in emu.coords["band"])
    n, m = len(table), min(n_loop, len(table))
    per_curve = {  # best of several repeats: the minimum is the least disturbed by other load on the machine
        "DU17, one binary per call": _best_time(
            lambda: [light_curves(*(c[[k]] for c in cols), t, bands, settings) for k in range(m)], repeat=5) / m,
        "DU17 vectorised": _best_time(lambda: light_curves(*cols, t, bands, settings), repeat=7) / n,
        "emulator central curve (T=0)": _best_time(lambda: emu.sample(labels, 1, temperature=0.0), repeat=7) / n,
        f"emulator, {n_draws} draws per binary": _best_time(lambda: emu.sample(labels, n_draws), repeat=3)
        / (n * n_draws),
    }
    draws = {k: n_draws if "draws" in k else 1 for k in per_curve}
    return pd.DataFrame({"s per curve": per_curve, "s per 100 curves": {k: 100 * v for k, v in per_curve.items()},
                         "s per binary prediction": {k: v * draws[k] for k, v in per_curve.items()}})

