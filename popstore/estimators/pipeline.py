"""The inference stages of a pipeline file: generate -> split -> optuna search -> test.

Reads the ``[inference]``, ``[search]`` (with ``[search.space]``) and ``[test]``
sections of a pipeline TOML file next to the core ``[simulator]``, ``[priors]``,
``[store]``, ``[split]`` and ``[cluster]`` sections (see :mod:`popstore.pipeline`
and ``pipelines/gaussian_fields_inference.toml``). Paths are relative to the
pipeline file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, get_type_hints

import pandas as pd

from popstore.estimators.data import DataConfig
from popstore.estimators.evaluate import make_test_report
from popstore.estimators.search import DEFAULT_STUDY, SearchSpace, search, storage_url
from popstore.estimators.train import TrainConfig
from popstore.pipeline import Pipeline, section_schema

DATA_KEYS = ("inputs", "labels", "log10", "log_offset", "augment", "batch_size", "num_workers", "seed")
TRAIN_KEYS = ("epochs", "cycle", "device", "amp", "seed")


def _pick(table: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: table[k] for k in keys if k in table}


# schemas of this stage's sections (entry points of the "popstore.pipeline_sections" group)
InferenceSection = section_schema("inference", DataConfig, output=(str, ...), threads=(Optional[int], None))
SearchSection = section_schema(
    "search", n_trials=(Optional[int], None), study_name=(Optional[str], None),
    storage=(Optional[str], None), n_startup_trials=(Optional[int], None), prune=(Optional[bool], None),
    space=(Optional[section_schema("search.space", SearchSpace)], None),
    **{k: (Optional[get_type_hints(TrainConfig)[k]], None) for k in TRAIN_KEYS},
)
TestSection = section_schema("test", split=(Optional[str], None), orientations=(Optional[int], None))


def run(pipeline: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run every stage of ``pipeline``; return the test metrics of the best trial.

    A rerun resumes: generation skips finished samples and the search runs
    only the trials missing to reach ``[search].n_trials``.
    """
    pipe = Pipeline.load(pipeline)
    inf, srch, test = pipe.section("inference"), pipe.section("search"), pipe.section("test")
    out = pipe.path_of("inference", "output")
    report = pipe.generate(progress=progress)
    if not report.complete:
        raise RuntimeError(f"generation incomplete: {report}")
    pipe.split()
    space = SearchSpace(**{k: tuple(v) for k, v in srch.get("space", {}).items()})
    train = TrainConfig(progress=progress, threads=inf.get("threads"), **_pick(srch, TRAIN_KEYS))
    storage = srch.get("storage", "optuna.db")
    storage = storage if "://" in storage or Path(storage).is_absolute() else out / storage
    n_trials = int(srch.get("n_trials", 10))
    study = search(
        pipe.store_path, out, n_trials, DataConfig(**_pick(inf, DATA_KEYS)),
        train, space, srch.get("study_name", DEFAULT_STUDY), storage,
        int(srch.get("n_startup_trials", 20)), bool(srch.get("prune", False)), inf.get("seed", 0), max_trials=n_trials,
    )
    best = study.best_trial
    print(f"best trial {best.number} of {len(study.trials)} ({storage_url(storage)}): "
          f"valid loss {best.value:.4f}, {best.params}")
    table = make_test_report(best.user_attrs["checkpoint"], pipe.store_path, test.get("split", "test"),
                             test.get("orientations"))
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return table
