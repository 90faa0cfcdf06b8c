"""A readable summary of a store, for the ``popstore info`` command and notebooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from popstore.store import input_names, label_names, layout_of, open_store, simulator_config


def describe(store: str | Path) -> str:
    """Simulator, progress, layout, splits, inputs (shapes, units), labels and per-sample diagnostics (ranges)."""
    ds = open_store(store)
    layout = layout_of(ds)
    done = ds["done"].values
    lines = [
        f"store      {store}",
        f"simulator  {ds.attrs['simulator']} v{ds.attrs.get('simulator_version', '?')}  "
        f"config {simulator_config(ds)}",
        f"samples    {done.sum()} of {done.size} done; chunks of {layout.chunk}"
        + (f" in shards of {layout.block}" if layout.sharded else ""),
        f"created    {ds.attrs.get('created', '?')} with popstore {ds.attrs.get('popstore_version', '?')}",
    ]
    if "split" in ds.coords:
        values, counts = np.unique(ds["split"].values.astype(object), return_counts=True)
        lines.append("split      " + ", ".join(f"{v} {c}" for v, c in zip(values, counts)))
    lines.append("inputs")
    for v in input_names(ds):
        var = ds[v]
        dims = ", ".join(f"{d}={n}" for d, n in var.sizes.items())
        lines.append(f"  {v:<28} ({dims}) [{var.attrs.get('units', '')}] {var.attrs.get('long_name', '')}")
    lines.append("labels")
    lines += [_value_range(ds, v, done) for v in label_names(ds)]
    diagnostics = [k for k, v in ds.data_vars.items() if v.attrs.get("role") == "diagnostic" and v.dims == ("sample",)]
    if diagnostics:
        lines.append("diagnostics")
        lines += [_value_range(ds, v, done) for v in diagnostics]
    return "\n".join(lines)


def _value_range(ds, name: str, done: np.ndarray) -> str:
    vals = ds[name].values[done]
    rng = f"{vals.min():.4g} .. {vals.max():.4g}" if vals.size else "-"
    return f"  {name:<28} {rng} [{ds[name].attrs.get('units', '')}] {ds[name].attrs.get('long_name', '')}"
