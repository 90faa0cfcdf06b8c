"""Kilonova light curves of binary neutron-star mergers (Dietrich & Ujevic 2017) and their emulation.

- :mod:`~popstore.kilonova.ejecta`: ejecta mass, velocity and geometry from (m1, m2, Lambda1, Lambda2);
- :mod:`~popstore.kilonova.lightcurve`: the semi-analytic u, g, r, i, z, y, J, H, K light curves;
- :mod:`~popstore.kilonova.params`: ordered parameter tables (m1 >= m2, Lambda1 <= Lambda2), label noise;
- :mod:`~popstore.kilonova.transforms`: downsampling and NaN filling for training;
- :mod:`~popstore.kilonova.dataset`: the curves of a store as training arrays;
- :mod:`~popstore.kilonova.simulator`: the ``kilonova_du17`` simulator;
- :mod:`~popstore.kilonova.workflow`, :mod:`~popstore.kilonova.cli`: the emulator stages, ``popstore kilonova ...``.

The emulator itself is a generic conditional flow (:mod:`popstore.estimators.emulator`).
"""

from __future__ import annotations

import importlib
from typing import Any

# re-exported lazily, so that ``popstore kilonova --help`` (which imports this package) stays fast
_EXPORTS = {
    "Ejecta": "ejecta", "compactness_from_lambda": "ejecta", "ejecta_from_binary": "ejecta",
    "ALL_BANDS": "lightcurve", "BANDS": "lightcurve", "DU17Settings": "lightcurve", "band_magnitudes": "lightcurve", "light_curves": "lightcurve",
    "time_grid": "lightcurve", "binary_table": "params", "order_binaries": "params", "perturb_labels": "params",
    "FilledCurves": "transforms", "downsample_fill": "transforms", "fill_nearest": "transforms",
    "valid_samples": "transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'popstore.kilonova' has no attribute {name!r}")
    return getattr(importlib.import_module(f"popstore.kilonova.{_EXPORTS[name]}"), name)
