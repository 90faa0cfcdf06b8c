"""Generic estimators on any store: moment-network CNNs, optuna searches, normalising flows and emulators.

Nothing here knows a science domain; the domains (:mod:`popstore.pulsars`, :mod:`popstore.galaxy`,
:mod:`popstore.kilonova`, :mod:`popstore.camels`) use these.

The moment-network modules below are re-exported lazily (so ``import
popstore.estimators.<module>`` stays cheap); the flow and emulator modules
(``flows*``, ``emulator*``) are imported by their own names.

- :mod:`~popstore.estimators.cnn`: the ``o3_err`` network (:class:`O3Err`, :class:`O3ErrConfig`);
- :mod:`~popstore.estimators.loss`: :func:`moment_loss`;
- :mod:`~popstore.estimators.preprocess`: log10 + standardisation, rotations/flips;
- :mod:`~popstore.estimators.model`: :class:`MomentModel` (network + statistics + label scaling), :func:`load_model`;
- :mod:`~popstore.estimators.train`: :func:`fit`, :class:`TrainConfig`;
- :mod:`~popstore.estimators.data`: :func:`prepare`, :func:`train_on_store`, :class:`DataConfig`;
- :mod:`~popstore.estimators.search`: :func:`search`, :func:`load_best`, :class:`SearchSpace`;
- :mod:`~popstore.estimators.evaluate`: :func:`predict`, :func:`metrics`, :func:`make_test_report`, :func:`cross_suite`;
- :mod:`~popstore.estimators.pipeline`: :func:`run` (generate -> split -> search -> test from a TOML file).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "O3Err": "cnn", "O3ErrConfig": "cnn", "moment_loss": "loss", "Preprocessor": "preprocess",
    "fit_preprocessor": "preprocess", "MomentModel": "model", "load_model": "model", "TrainConfig": "train",
    "fit": "train", "DataConfig": "data", "prepare": "data", "train_on_store": "data", "SearchSpace": "search",
    "search": "search", "load_best": "search", "predict": "evaluate", "metrics": "evaluate",
    "make_test_report": "evaluate", "cross_suite": "evaluate",
}

__all__ = [
    "DataConfig", "MomentModel", "O3Err", "O3ErrConfig", "Preprocessor", "SearchSpace", "TrainConfig",
    "cross_suite", "fit", "fit_preprocessor", "load_best", "load_model", "make_test_report", "metrics",
    "moment_loss", "predict", "prepare", "search", "train_on_store",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'popstore.estimators' has no attribute {name!r}")
    return getattr(importlib.import_module(f"popstore.estimators.{_EXPORTS[name]}"), name)
