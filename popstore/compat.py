"""Are two stores' maps comparable? (applying a model trained on one store to another)

A network trained on simulated maps can only be applied to maps with the same
variables, dimensions, bin coordinates (resolution and ranges), bin edges and map
settings (smoothing, fill values, statistic). :func:`check_compatible` compares them
and raises a :class:`ValueError` that names the first thing that differs, instead of
letting a model silently read maps on the wrong grid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr

from popstore.errors import UserError


def _describe(coord: xr.DataArray) -> str:
    v = coord.values
    if v.dtype.kind in "fiu" and v.size:
        return f"{v.size} values in [{v.min():.6g}, {v.max():.6g}]"
    return f"{v.size} values {list(v)[:6]}"


def _compare_coord(name: str, var: str, a: xr.Dataset, b: xr.Dataset) -> None:
    ca, cb = a[name], b[name]
    if ca.size != cb.size:
        raise UserError(f"variable {var!r}: coordinate {name!r} differs in resolution: "
                         f"{ca.size} vs {cb.size} bins ({_describe(ca)} vs {_describe(cb)})")
    if not np.array_equal(ca.values, cb.values):
        raise UserError(f"variable {var!r}: coordinate {name!r} differs in range or values: "
                         f"{_describe(ca)} vs {_describe(cb)}")
    bnds = ca.attrs.get("bounds")
    if bnds != cb.attrs.get("bounds"):
        raise UserError(f"variable {var!r}: coordinate {name!r} bounds variable {bnds!r} vs {cb.attrs.get('bounds')!r}")
    if bnds and not np.array_equal(a[bnds].values, b[bnds].values):
        raise UserError(f"variable {var!r}: bin edges {bnds!r} of coordinate {name!r} differ")
    for key in ("units", "scale"):
        if ca.attrs.get(key) != cb.attrs.get(key):
            raise UserError(f"variable {var!r}: coordinate {name!r} attr {key!r} differs: "
                             f"{ca.attrs.get(key)!r} vs {cb.attrs.get(key)!r}")


def _config_value(ds: xr.Dataset, path: str):
    """Value at ``"a.b"`` in the JSON ``simulator_config`` attr (KeyError if absent)."""
    value = json.loads(ds.attrs["simulator_config"])
    for part in path.split("."):
        value = value[part]
    return value


def check_compatible(a: xr.Dataset, b: xr.Dataset, variables: Sequence[str],
                     config_keys: Iterable[str] = (), names: tuple[str, str] = ("observed", "simulated")) -> None:
    """Raise :class:`~popstore.errors.UserError` (a ValueError) unless ``variables`` of ``a`` and ``b`` lie on the same grid with the same settings.

    Compared: presence of each variable, its dims (``sample`` aside), every coordinate's
    size (resolution), values (range), bin edges, units and scale, the variable's attrs
    (units, smoothing, fill, statistic, ...) and the ``config_keys`` (dotted paths into
    the stores' ``simulator_config``, e.g. ``"pulsar.smooth_sigma_bins"``).
    """
    for var in variables:
        for ds, who in ((a, names[0]), (b, names[1])):
            if var not in ds.data_vars:
                raise UserError(f"variable {var!r} is missing from the {who} store")
        da, db = a[var], b[var]
        dims_a = tuple(d for d in da.dims if d != "sample")
        dims_b = tuple(d for d in db.dims if d != "sample")
        if dims_a != dims_b:
            raise UserError(f"variable {var!r}: dims differ: {dims_a} ({names[0]}) vs {dims_b} ({names[1]})")
        for dim in dims_a:
            if (dim in a.coords) != (dim in b.coords):
                raise UserError(f"variable {var!r}: dim {dim!r} has a coordinate in only one store")
            if dim in a.coords:
                _compare_coord(dim, var, a, b)
            elif a.sizes[dim] != b.sizes[dim]:
                raise UserError(f"variable {var!r}: dim {dim!r} has length {a.sizes[dim]} vs {b.sizes[dim]}")
        keys = sorted(set(da.attrs) | set(db.attrs))
        for key in keys:
            va, vb = da.attrs.get(key), db.attrs.get(key)
            if not np.array_equal(np.asarray(va, dtype=object), np.asarray(vb, dtype=object)):
                raise UserError(f"variable {var!r}: attr {key!r} differs: {va!r} ({names[0]}) vs {vb!r} ({names[1]})")
    for key in config_keys:
        try:
            va, vb = _config_value(a, key), _config_value(b, key)
        except KeyError as err:
            raise UserError(f"config key {key!r} is missing from a store's simulator_config ({err})") from None
        if va != vb:
            raise UserError(f"config {key!r} differs: {va!r} ({names[0]}) vs {vb!r} ({names[1]})")
