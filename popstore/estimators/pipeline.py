"""The inference stages of a pipeline file: generate -> split -> optuna search -> test.

Reads the ``[inference]`` (with ``[inference.transforms]``, per input
variable, and ``[inference.network]``, further O3Err settings such as
``positive``), ``[search]`` (with ``[search.space]``) and ``[test]`` sections of
a pipeline TOML file next to the core ``[simulator]``, ``[priors]``,
``[store]``, ``[split]`` and ``[cluster]`` sections (see :mod:`popstore.pipeline`
and ``pipelines/gaussian_fields_inference.toml``). Paths are relative to the
pipeline file. Validation runs over ``[search] valid_orientations``, by
default the ``[test] orientations``. ``[inference.network]`` ``hidden`` or
``dropout`` fix that setting instead of searching it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, get_type_hints

from popstore.errors import UserError
from popstore.estimators.cnn import O3ErrConfig
from popstore.estimators.data import DataConfig, check_network
from popstore.estimators.evaluate import EvaluationReport, make_test_report
from popstore.estimators.search import DEFAULT_STUDY, SearchSpace, best_trial, search, storage_url, summary
from popstore.estimators.train import TrainConfig
from popstore.pipeline import Pipeline, section_schema

DATA_KEYS = ("inputs", "labels", "transforms", "transform", "augment", "batch_size", "num_workers", "seed")
TRAIN_KEYS = ("epochs", "cycle", "device", "amp", "seed", "valid_orientations")


def _pick(table: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: table[k] for k in keys if k in table}


# schemas of this stage's sections (entry points of the "popstore.pipeline_sections" group)
InferenceSection = section_schema(
    "inference", DataConfig, output=(str, ...), threads=(Optional[int], None),
    network=(Optional[section_schema("inference.network", O3ErrConfig)], None),
)
SearchSection = section_schema(
    "search", n_trials=(Optional[int], None), study_name=(Optional[str], None), storage=(Optional[str], None),
    n_startup_trials=(Optional[int], None), prune=(Optional[bool], None), param_names=(Optional[str], None),
    heartbeat=(Optional[int], None),
    space=(Optional[section_schema("search.space", **{k: (Optional[get_type_hints(SearchSpace)[k]], None)
                                                     for k in ("lr", "weight_decay", "dropout", "hidden")})], None),
    **{k: (Optional[get_type_hints(TrainConfig)[k]], None) for k in TRAIN_KEYS},
)
TestSection = section_schema("test", split=(Optional[str], None), orientations=(Optional[int], None),
                             n_bins=(Optional[int], None))


def _space(table: dict[str, Any], network: dict[str, Any], names: str) -> SearchSpace:
    """``[search.space]`` ranges; a ``hidden`` or ``dropout`` fixed in ``[inference.network]`` is not searched."""
    ranges = {k: tuple(v) for k, v in table.items()}
    for key in ("hidden", "dropout"):
        if key in network:
            if key in ranges:
                raise UserError(f"'{key}' is both fixed in [inference.network] and searched in [search.space]")
            ranges[key] = (network[key], network[key])
    try:
        return SearchSpace(**ranges, names=names)
    except TypeError as err:
        raise UserError(f"[search.space]: {err}") from None


def run(pipeline: str | Path, progress: bool = True) -> EvaluationReport:
    """Run every stage of ``pipeline``; return the test report of the best trial.

    A rerun resumes: generation skips finished samples, trials of a killed run
    are marked failed, and the search runs only the trials missing to reach
    ``[search].n_trials`` finished ones, with new hyper-parameters.
    """
    pipe = Pipeline.load(pipeline)
    inf, srch, test = pipe.section("inference"), pipe.section("search"), pipe.section("test")
    network = dict(inf.get("network", {}))
    check_network(network)
    space = _space(srch.get("space", {}), network, srch.get("param_names", "popstore"))
    out = pipe.path_of("inference", "output")
    report = pipe.generate(progress=progress)
    if not report.complete:
        raise RuntimeError(f"generation incomplete: {report}")
    pipe.split()
    train_kw = _pick(srch, TRAIN_KEYS)
    train_kw.setdefault("valid_orientations", test.get("orientations"))
    train = TrainConfig(progress=progress, threads=inf.get("threads"), **train_kw)
    storage = srch.get("storage", "optuna.db")
    storage = storage if "://" in storage or Path(storage).is_absolute() else out / storage
    n_trials = int(srch.get("n_trials", 10))
    net = {k: v for k, v in network.items() if k not in ("hidden", "dropout")}
    study = search(
        pipe.store_path, out, n_trials, DataConfig(**_pick(inf, DATA_KEYS)),
        train, space, srch.get("study_name", DEFAULT_STUDY), storage,
        int(srch.get("n_startup_trials", 20)), bool(srch.get("prune", False)), inf.get("seed", 0), max_trials=n_trials,
        network=net, heartbeat=srch.get("heartbeat"),
    )
    print(f"{summary(study)} ({storage_url(storage)})")
    result = make_test_report(best_trial(study).user_attrs["checkpoint"], pipe.store_path, test.get("split", "test"),
                              test.get("orientations"), n_bins=int(test.get("n_bins", 5)))
    print(result)
    print("files: " + ", ".join(str(p) for p in result.files.values()))
    return result
