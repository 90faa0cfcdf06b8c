"""Accuracy of reconstructed accelerations: the two definitions in use, and where they are evaluated.

- popstore's (stricter): the 3D vector error ``|a - a_true| / |a_true|`` at
  geometrically spaced radii (0.4 a - 20 a), least squares on ``grad log f``
  rows; transverse errors count.
- the HernquistFlows papers' (An et al. 2021, arXiv:2106.05981, Fig. 3;
  Naik et al. 2021, arXiv:2112.07657): the x-component error
  ``|a_x / a_x,true - 1|`` at 50 linearly spaced radii on the x axis
  (``linspace(0, 20, 51)[1:]`` in units of a), least squares on
  ``grad f / f_ref`` rows (``weighting="f"`` in
  :func:`popstore.galaxy.dynamics.acceleration.solve_cbe`).

A number of one kind must never be compared with one of the other:
:func:`error_summary` reports the median of each beside the radial bias.
"""

from __future__ import annotations

import numpy as np


def geometric_radii(scale_radius: float, n: int = 50, lo: float = 0.4, hi: float = 20.0) -> np.ndarray:
    """popstore's evaluation radii [units of ``scale_radius``]: ``n`` geometrically spaced from ``lo`` a to ``hi`` a."""
    return np.geomspace(lo, hi, n) * scale_radius


def paper_radii(scale_radius: float, n: int = 50, hi: float = 20.0) -> np.ndarray:
    """The HernquistFlows radii: ``linspace(0, hi, n + 1)[1:]`` times the scale radius (0.4 a - 20 a for n = 50)."""
    return np.linspace(0.0, hi, n + 1)[1:] * scale_radius


def on_x_axis(r: np.ndarray) -> np.ndarray:
    """Positions (n, 3) at radii ``r`` on the x axis."""
    pos = np.zeros((len(r), 3))
    pos[:, 0] = r
    return pos


def vector_error(acc: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|a - a_true| / |a_true|`` per position; ``acc``, ``truth`` (n, 3)."""
    return np.linalg.norm(acc - truth, axis=1) / np.linalg.norm(truth, axis=1)


def x_component_error(acc: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|a_x / a_x,true - 1|`` per position (the papers' figure metric, positions on the x axis)."""
    return np.abs(acc[:, 0] / truth[:, 0] - 1)


def radial_error(acc: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Signed ``a_r / a_r,true - 1`` along the true acceleration (> 0: too strong a pull)."""
    t = np.linalg.norm(truth, axis=1)
    return (acc * truth).sum(1) / t**2 - 1


def error_summary(acc: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Median, 90th percentile and max of the 3D error, median x-component error and median radial bias."""
    e3 = vector_error(acc, truth)
    return {"median_3d": float(np.median(e3)), "p90_3d": float(np.percentile(e3, 90)), "max_3d": float(e3.max()),
            "median_x": float(np.median(x_component_error(acc, truth))),
            "radial_bias": float(np.median(radial_error(acc, truth)))}
