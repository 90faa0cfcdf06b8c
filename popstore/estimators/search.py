"""Hyper-parameter search with optuna, as in the CMD benchmark.

Searches learning rate and weight decay (log-uniform), dropout (uniform) and
the width ``hidden`` (integer) with the TPE sampler (Bergstra et al. 2011,
NeurIPS 24; CMD uses 20 random start-up trials then TPE). The objective is the
best validation moment loss of a trial. Each trial writes its checkpoint and
losses to ``<out_dir>/trial_<number>/`` and records the checkpoint path in the
trial's user attrs, so :func:`load_best` reloads the winner from the storage
alone. Several processes may run :func:`search` against the same storage
(e.g. ``sqlite:///study.db``) and study name at once; give each its own
``seed`` so their random start-up trials differ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy.exc
import torch

from popstore.estimators.data import DataConfig, PreparedData, prepare
from popstore.estimators.model import MomentModel, load_model
from popstore.estimators.train import TrainConfig, fit

DEFAULT_STUDY = "wd_dr_hidden_lr_o3"


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched (CMD: lr [1e-5, 5e-3], wd [1e-8, 1e-1], dropout [0, 0.9], hidden [6, 12])."""

    lr: tuple[float, float] = (1e-5, 5e-3)
    weight_decay: tuple[float, float] = (1e-8, 1e-1)
    dropout: tuple[float, float] = (0.0, 0.9)
    hidden: tuple[int, int] = (6, 12)

    def suggest(self, trial: optuna.Trial) -> dict[str, float | int]:
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True),
            "dropout": trial.suggest_float("dropout", *self.dropout),
            "hidden": trial.suggest_int("hidden", *self.hidden),
        }


def storage_url(storage: str | Path) -> str:
    """A database URL; a bare file path means an sqlite file."""
    s = str(storage)
    return s if "://" in s else f"sqlite:///{Path(s).resolve()}"


def run_trial(trial: optuna.Trial, data: PreparedData, space: SearchSpace, train: TrainConfig, out_dir: Path) -> float:
    """Train one model with the trial's hyper-parameters; return its best validation loss."""
    hp = space.suggest(trial)
    torch.manual_seed(train.seed + trial.number)
    model = data.build_model(int(hp["hidden"]), float(hp["dropout"]))
    cfg = TrainConfig(lr=hp["lr"], weight_decay=hp["weight_decay"], epochs=train.epochs, cycle=train.cycle,
                      device=train.device, amp=train.amp, seed=train.seed + trial.number, progress=train.progress,
                      threads=train.threads)
    trial_dir = out_dir / f"trial_{trial.number}"
    trial.set_user_attr("checkpoint", str((trial_dir / "model.pt").resolve()))
    trial.set_user_attr("losses", str((trial_dir / "losses.csv").resolve()))

    def report(epoch: int, valid_loss: float) -> None:
        trial.report(valid_loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    result = fit(model, data.train_loader, data.valid_loader, cfg, trial_dir, on_epoch=report)
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("samples_per_s", result.samples_per_s)
    return result.best_valid_loss


def search(
    store: str | Path,
    out_dir: str | Path,
    n_trials: int,
    data: DataConfig | None = None,
    train: TrainConfig | None = None,
    space: SearchSpace | None = None,
    study_name: str = DEFAULT_STUDY,
    storage: str | Path | None = None,
    n_startup_trials: int = 20,
    prune: bool = False,
    seed: int | None = 0,
    max_trials: int | None = None,
) -> optuna.Study:
    """Run ``n_trials`` trials of the search on ``store`` (its train/valid splits); return the study.

    ``data``, ``train`` and ``space`` default to :class:`DataConfig`,
    :class:`TrainConfig` and :class:`SearchSpace` (the CMD ranges).

    ``storage`` defaults to ``<out_dir>/optuna.db`` (sqlite). ``prune`` stops
    unpromising trials early with optuna's median rule. ``max_trials`` stops
    as soon as the study (all processes sharing it, earlier runs included)
    holds that many finished or pruned trials, so a rerun resumes a search
    instead of extending it.
    """
    train, space = train or TrainConfig(), space or SearchSpace()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(store, data)
    study = _open_study(
        study_name=study_name,
        storage=storage_url(storage or out / "optuna.db"),
        sampler=optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, seed=seed),
        pruner=optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner(),
        direction="minimize",
        load_if_exists=True,
    )
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if max_trials is not None:
        n_trials = min(n_trials, max(0, max_trials - len(study.get_trials(deepcopy=False, states=done))))
    callbacks = [optuna.study.MaxTrialsCallback(max_trials, states=done)] if max_trials is not None else []
    study.optimize(lambda t: run_trial(t, prepared, space, train, out), n_trials=n_trials, callbacks=callbacks)
    return study


def _open_study(attempts: int = 5, **kwargs) -> optuna.Study:
    """``optuna.create_study``, tried again when processes that start together race to create the
    same new database (one of them finds the tables half made: "table studies already exists")."""
    for attempt in range(attempts - 1):
        try:
            return optuna.create_study(**kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            time.sleep(0.2 * (attempt + 1))
    return optuna.create_study(**kwargs)


def load_best(storage: str | Path, study_name: str = DEFAULT_STUDY, map_location: str = "cpu") -> MomentModel:
    """The model of the best finished trial of a study."""
    study = optuna.load_study(study_name=study_name, storage=storage_url(storage))
    return load_model(study.best_trial.user_attrs["checkpoint"], map_location)
