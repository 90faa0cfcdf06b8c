"""Kilonova light curves of binary neutron-star mergers (Dietrich & Ujevic 2017) and their emulation.

- :mod:`~popstore.kilonova.ejecta`: ejecta mass, velocity and geometry from (m1, m2, Lambda1, Lambda2);
- :mod:`~popstore.kilonova.lightcurve`: the semi-analytic g, r, i, z light curves;
- :mod:`~popstore.kilonova.params`: ordered parameter tables (m1 >= m2, Lambda1 <= Lambda2), label noise;
- :mod:`~popstore.kilonova.transforms`: downsampling and NaN filling for training;
- :mod:`~popstore.kilonova.dataset`: the curves of a store as training arrays.

The simulator itself is ``popstore.simulators.kilonova`` (registered as ``"kilonova_du17"``).
"""

from popstore.kilonova.ejecta import Ejecta, compactness_from_lambda, ejecta_from_binary
from popstore.kilonova.lightcurve import BANDS, DU17Settings, band_magnitudes, light_curves, time_grid
from popstore.kilonova.params import binary_table, order_binaries, perturb_labels
from popstore.kilonova.transforms import FilledCurves, downsample_fill, fill_nearest, valid_samples

__all__ = [
    "BANDS", "DU17Settings", "Ejecta", "FilledCurves", "band_magnitudes", "binary_table", "compactness_from_lambda",
    "downsample_fill", "ejecta_from_binary", "fill_nearest", "light_curves", "order_binaries", "perturb_labels",
    "time_grid", "valid_samples",
]
