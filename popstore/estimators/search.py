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

Resuming: every trial records the process running it (host, pid, start time).
A rerun first marks the RUNNING trials whose process is gone (killed, crashed
node on this host) as FAIL, so they are neither counted nor waited for; with
``heartbeat`` set, optuna's heartbeat does the same for processes on other
hosts. The sampler of a resumed study is seeded from ``(seed, number of
trials already in the study)``, so it draws new points instead of repeating
the start-up trials of the first run.

Parameter names: ``names="popstore"`` stores ``lr, weight_decay, dropout,
hidden``; ``names="cmd"`` stores CMD's ``lr, wd, dr, hidden`` with the same
distributions as CMD's script (log-uniform lr and wd, uniform dr, integer
hidden), so a study database written by CMD's code can be continued here and
one written here continued by CMD's code.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import psutil
import sqlalchemy.exc
import torch

from popstore.errors import UserError
from popstore.estimators.data import DataConfig, PreparedData, check_network, prepare
from popstore.estimators.model import MomentModel, load_model
from popstore.estimators.train import TrainConfig, fit

DEFAULT_STUDY = "wd_dr_hidden_lr_o3"
#: optuna parameter names of each naming mode (keys: the names used in popstore's code).
PARAM_NAMES = {
    "popstore": {"lr": "lr", "weight_decay": "weight_decay", "dropout": "dropout", "hidden": "hidden"},
    "cmd": {"lr": "lr", "weight_decay": "wd", "dropout": "dr", "hidden": "hidden"},
}
OWNER_ATTR = "owner"
_RUNNING, _FAIL = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
_DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched (CMD: lr [1e-5, 5e-3], wd [1e-8, 1e-1], dropout [0, 0.9], hidden [6, 12]) and
    the optuna parameter names (``names``: ``"popstore"`` or ``"cmd"``, see :data:`PARAM_NAMES`)."""

    lr: tuple[float, float] = (1e-5, 5e-3)
    weight_decay: tuple[float, float] = (1e-8, 1e-1)
    dropout: tuple[float, float] = (0.0, 0.9)
    hidden: tuple[int, int] = (6, 12)
    names: str = "popstore"

    def __post_init__(self) -> None:
        if self.names not in PARAM_NAMES:
            raise UserError(f"parameter names must be one of {sorted(PARAM_NAMES)}, got {self.names!r}")

    def suggest(self, trial: optuna.Trial) -> dict[str, float | int]:
        """The trial's hyper-parameters, keyed by popstore's names whatever names the study stores."""
        n = PARAM_NAMES[self.names]
        return {
            "lr": trial.suggest_float(n["lr"], *self.lr, log=True),
            "weight_decay": trial.suggest_float(n["weight_decay"], *self.weight_decay, log=True),
            "dropout": trial.suggest_float(n["dropout"], *self.dropout),
            "hidden": trial.suggest_int(n["hidden"], *self.hidden),
        }

    def check_study(self, study: optuna.Study) -> None:
        """Refuse to add trials under one naming to a study whose trials use the other."""
        ours = set(PARAM_NAMES[self.names].values())
        for mode, names in PARAM_NAMES.items():
            other = set(names.values()) - ours
            if other and any(other & set(t.params) for t in study.get_trials(deepcopy=False)):
                raise UserError(f"study {study.study_name!r} holds trials with the {mode!r} parameter names "
                                f"{sorted(names.values())}; search it with names={mode!r} (--param-names {mode})")


def trial_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's hyper-parameters keyed by popstore's names, whichever naming the study uses."""
    back = {v: k for names in PARAM_NAMES.values() for k, v in names.items()}
    return {back.get(k, k): v for k, v in trial.params.items()}


def storage_url(storage: str | Path) -> str:
    """A database URL; a bare file path means an sqlite file."""
    s = str(storage)
    return s if "://" in s else f"sqlite:///{Path(s).resolve()}"


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _alive(owner: Mapping[str, Any]) -> bool:
    """Whether the process recorded in ``owner`` still runs (pid present with the same start time)."""
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1e-3
    except psutil.AccessDenied:
        return True  # there, but another user's: not ours to fail
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark as FAIL the RUNNING trials of ``study`` whose process (on this host) is gone; return their numbers.

    Trials run by another host, or written without an owner record (e.g. by
    CMD's own script), are left alone; optuna's heartbeat covers those.
    """
    host, dead = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(_RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR)
        if isinstance(owner, dict) and owner.get("host") == host and not _alive(owner):
            study.tell(t.number, state=_FAIL, skip_if_finished=True)
            dead.append(t.number)
    return dead


def resume_seed(seed: int | None, n_trials: int) -> int | None:
    """Sampler seed of a run that finds ``n_trials`` trials in the study: ``seed`` for a new study,
    else a hash of both, so a resumed run draws new points rather than the first run's again."""
    if seed is None or n_trials == 0:
        return seed
    return int(np.random.SeedSequence([seed, n_trials]).generate_state(1)[0])


def run_trial(
    trial: optuna.Trial,
    data: PreparedData,
    space: SearchSpace,
    train: TrainConfig,
    out_dir: Path,
    network: Mapping[str, Any] | None = None,
) -> float:
    """Train one model with the trial's hyper-parameters; return its best validation loss.

    ``network``: further :class:`~popstore.estimators.cnn.O3ErrConfig` settings (e.g. ``positive``).
    """
    trial.set_user_attr(OWNER_ATTR, _this_process())
    hp = space.suggest(trial)
    torch.manual_seed(train.seed + trial.number)
    model = data.build_model(int(hp["hidden"]), float(hp["dropout"]), **(network or {}))
    cfg = dataclasses.replace(train, lr=hp["lr"], weight_decay=hp["weight_decay"], seed=train.seed + trial.number)
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
    network: Mapping[str, Any] | None = None,
    heartbeat: int | None = None,
) -> optuna.Study:
    """Run ``n_trials`` trials of the search on ``store`` (its train/valid splits); return the study.

    ``data``, ``train`` and ``space`` default to :class:`DataConfig`,
    :class:`TrainConfig` and :class:`SearchSpace` (the CMD ranges and popstore's names).

    ``storage`` defaults to ``<out_dir>/optuna.db`` (sqlite). ``prune`` stops
    unpromising trials early with optuna's median rule. ``max_trials`` stops
    as soon as the study (all processes sharing it, earlier runs included)
    holds that many finished or pruned trials, so a rerun resumes a search
    instead of extending it. ``network`` holds further O3Err settings (e.g.
    ``{"positive": "square"}``). ``heartbeat`` (seconds) turns on optuna's
    heartbeat, which fails trials of processes on other hosts silent for two
    beats; trials of dead processes on this host are failed at start either way.
    """
    train, space = train or TrainConfig(), space or SearchSpace()
    check_network(network or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(store, data)
    url = storage_url(storage or out / "optuna.db")
    beat = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat} if heartbeat else {}
    study = _open_study(
        study_name=study_name,
        storage=optuna.storages.RDBStorage(url, **beat) if beat else url,
        pruner=optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner(),
        direction="minimize",
        load_if_exists=True,
    )
    space.check_study(study)
    fail_dead_trials(study)
    study.sampler = optuna.samplers.TPESampler(n_startup_trials=n_startup_trials,
                                               seed=resume_seed(seed, len(study.get_trials(deepcopy=False))))
    if max_trials is not None:
        n_trials = min(n_trials, max(0, max_trials - len(study.get_trials(deepcopy=False, states=_DONE))))
    callbacks = [optuna.study.MaxTrialsCallback(max_trials, states=_DONE)] if max_trials is not None else []
    study.optimize(lambda t: run_trial(t, prepared, space, train, out, network), n_trials=n_trials, callbacks=callbacks)
    return study


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best finished trial that has a popstore checkpoint (trials of CMD's own script have none)."""
    ours = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "checkpoint" in t.user_attrs and t.value is not None]
    if not ours:
        raise UserError(f"study {study.study_name!r} has no finished trial with a popstore checkpoint")
    return min(ours, key=lambda t: t.value)


def summary(study: optuna.Study) -> str:
    """One line: best trial (of those with a checkpoint) and the counts of finished and failed trials."""
    best = best_trial(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    done, failed = sum(s in _DONE for s in states), states.count(_FAIL)
    return (f"best trial {best.number} of {done} finished ({failed} failed, {states.count(_RUNNING)} running): "
            f"valid loss {best.value:.4f}, {trial_params(best)}")


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
    return load_model(best_trial(study).user_attrs["checkpoint"], map_location)
