"""Phase-space catalogues as arrays, and the missing-line-of-sight-velocity subset.

A catalogue store (``hernquist``, ``solar_neighbourhood`` simulators) holds
``x, y, z, vx, vy, vz`` along ``(sample, star)``. :func:`catalogue_arrays`
concatenates the finished samples (chunks) of a store into one catalogue.

:func:`missing_rv_subset` builds the data of Naik et al. (2021,
arXiv:2112.07657, Sect. 4.3) "missing line-of-sight velocities": all stars
in a galactocentric cylindrical-radius window (7-9 kpc) keep their 3D
positions and their two velocity components across the line of sight from
the Sun; a random fraction (half) also lose nothing, the rest lose the
line-of-sight velocity (NaN). The Sun sits at ``(r0, 0, 0)``; velocities are
galactocentric (no solar reflex motion is added or removed).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

POSITION_VARS = ("x", "y", "z")
VELOCITY_VARS = ("vx", "vy", "vz")


def catalogue_arrays(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (n, 3) of every star of every ``done`` sample of a catalogue store."""
    missing = [v for v in POSITION_VARS + VELOCITY_VARS if v not in ds]
    if missing:
        raise ValueError(f"not a phase-space catalogue store: missing variables {missing}")
    if "done" in ds:
        ds = ds.isel(sample=np.nonzero(ds["done"].values)[0])
    if ds.sizes.get("sample", 1) == 0:
        raise ValueError("the store has no finished samples")
    x = np.stack([ds[v].values.reshape(-1) for v in POSITION_VARS], axis=1)
    v = np.stack([ds[v].values.reshape(-1) for v in VELOCITY_VARS], axis=1)
    return x.astype(np.float64), v.astype(np.float64)


def line_of_sight_basis(x: np.ndarray, sun: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (n_los, e_l, e_b) at positions ``x`` (n, 3) seen from ``sun`` (3,).

    ``e_l = z_hat x n_los / |z_hat x n_los|`` (Galactic longitude direction)
    and ``e_b = n_los x e_l`` (latitude direction).
    """
    d = x - sun
    n_los = d / np.linalg.norm(d, axis=1, keepdims=True)
    e_l = np.cross(np.array([0.0, 0.0, 1.0]), n_los)
    e_l /= np.linalg.norm(e_l, axis=1, keepdims=True)
    return n_los, e_l, np.cross(n_los, e_l)


def missing_rv_subset(
    x: np.ndarray,
    v: np.ndarray,
    rng: np.random.Generator,
    r_window: tuple[float, float] = (7.0, 9.0),
    missing_fraction: float = 0.5,
    r0: float = 8.0,
) -> xr.Dataset:
    """Stars with ``r_window[0] < R < r_window[1]``; a random ``missing_fraction`` lose ``v_los``.

    Returns an ``xarray.Dataset`` along ``star`` with ``x, y, z`` [kpc],
    ``v_los, v_l, v_b`` [km/s] (``v_los`` NaN where missing) and the bool
    ``has_vlos``.
    """
    if not 0 <= missing_fraction <= 1:
        raise ValueError(f"missing_fraction must be in [0, 1], got {missing_fraction}")
    big_r = np.hypot(x[:, 0], x[:, 1])
    keep = (big_r > r_window[0]) & (big_r < r_window[1])
    xs, vs = x[keep], v[keep]
    n_los, e_l, e_b = line_of_sight_basis(xs, np.array([r0, 0.0, 0.0]))
    has = rng.random(len(xs)) >= missing_fraction
    v_los = np.where(has, (vs * n_los).sum(1), np.nan)
    data = {name: ("star", xs[:, i], {"units": "kpc"}) for i, name in enumerate(POSITION_VARS)}
    data.update({
        "v_los": ("star", v_los, {"units": "km s-1", "long_name": "line-of-sight velocity (NaN: missing)"}),
        "v_l": ("star", (vs * e_l).sum(1), {"units": "km s-1", "long_name": "velocity along Galactic longitude"}),
        "v_b": ("star", (vs * e_b).sum(1), {"units": "km s-1", "long_name": "velocity along Galactic latitude"}),
        "has_vlos": ("star", has),
    })
    return xr.Dataset(data, attrs={"r_window_kpc": list(r_window), "missing_fraction": missing_fraction, "sun_x_kpc": r0})


def full_velocities(subset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Positions and galactocentric velocities (n, 3) of the stars of a :func:`missing_rv_subset` that have ``v_los``."""
    s = subset.isel(star=np.nonzero(subset["has_vlos"].values)[0])
    x = np.stack([s[v].values for v in POSITION_VARS], axis=1)
    n_los, e_l, e_b = line_of_sight_basis(x, np.array([subset.attrs["sun_x_kpc"], 0.0, 0.0]))
    v = s["v_los"].values[:, None] * n_los + s["v_l"].values[:, None] * e_l + s["v_b"].values[:, None] * e_b
    return x, v
