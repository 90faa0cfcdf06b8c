"""Exports of a store to HDF5 and to the legacy research layout, and the legacy importer.

Legacy layout (the mlpoppyns research code, Graber et al. 2024)::

    folder/
      maps/<map>/<sample>.npy       one array per map and sample, x on axis 0
      dataset_full.csv              columns input:<map> (paths relative to folder), then labels
      dataset_{train,valid,test}.csv
      statistics_full.json          {label: {mean, std, min, max}}
      statistics_train.json
      popstore.json                 coordinates and attrs, so an import restores them

A variable with extra dims before its map dims (e.g. ``survey``) becomes one
legacy map per extra index, named ``<var>_<value>`` (``ppdot_map_PMPS``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from popstore.errors import UserError
from popstore.splits import SUBSETS, label_statistics
from popstore.store import (
    SCHEMA_VERSION,
    STATISTICS,
    choose_layout_bytes,
    input_names,
    json_default,
    label_names,
    layout_of,
    open_store,
    text_array,
    write_variables,
)


def to_hdf5(store: str | Path, path: str | Path, complevel: int = 4) -> Path:
    """Write the whole store to one HDF5 file (h5netcdf), same variables and attrs.

    Booleans are stored as int8 and read back as bool.
    """
    ds = open_store(store)
    block = layout_of(ds).block
    ds = ds.drop_encoding()
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OT":  # numpy StringDType -> variable-length strings for HDF5
            ds[name] = var.compute().astype(object)
            continue
        if var.ndim and var.dtype.kind in "fiub":
            enc = {"zlib": True, "complevel": complevel, "shuffle": True}
            if "sample" in var.dims:
                enc["chunksizes"] = tuple(min(block, n) if d == "sample" else n for d, n in var.sizes.items())
            encoding[name] = enc
    path = Path(path)
    ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


def _legacy_maps(ds: xr.Dataset) -> dict[str, tuple[str, dict]]:
    """Legacy map name -> (variable, selection of its extra dims)."""
    out = {}
    for v in input_names(ds):
        extra = ds[v].dims[1:-2]
        values = [ds[d].values if d in ds.coords else np.arange(ds.sizes[d]) for d in extra]
        for combo in itertools.product(*values):
            name = "_".join([v, *map(str, combo)])
            out[name] = (v, dict(zip(extra, combo)))
    return out


def to_legacy(store: str | Path, folder: str | Path, progress: bool = True) -> Path:
    """Write the legacy layout (see module docstring); returns the folder."""
    ds = open_store(store)
    folder = Path(folder)
    done = ds["done"].values
    samples = np.flatnonzero(done)
    labels = label_names(ds)
    maps = _legacy_maps(ds)
    table = pd.DataFrame({f"input:{m}": [f"maps/{m}/{i}.npy" for i in samples] for m in maps})
    for lab in labels:
        table[lab] = ds[lab].values[samples]
    layout = layout_of(ds)
    for m in maps:
        (folder / "maps" / m).mkdir(parents=True, exist_ok=True)
    for blk in tqdm(layout.blocks(), desc="legacy export", unit="chunk", disable=not progress):
        part = ds.isel(sample=blk).load()
        for m, (v, sel) in maps.items():
            arr = part[v].sel(sel).values
            for j, i in enumerate(range(blk.start, blk.stop)):
                if done[i]:
                    np.save(folder / "maps" / m / f"{i}.npy", arr[j].T)
    table.to_csv(folder / "dataset_full.csv", index=False)
    stats = {"full": label_statistics(table[labels].to_numpy())}
    if "split" in ds.coords:
        subset = ds["split"].values[samples]
        for s in SUBSETS:
            table[subset == s].to_csv(folder / f"dataset_{s}.csv", index=False)
        stats["train"] = label_statistics(table[labels].to_numpy()[subset == "train"])
    for name, st in stats.items():
        with open(folder / f"statistics_{name}.json", "w") as f:
            json.dump({lab: dict(zip(STATISTICS, map(float, row))) for lab, row in zip(labels, st)}, f, indent=2)
    skip = {"label_stats", "subset", "label", "statistic"}
    meta = {"static": {k: {"dims": list(v.dims), "data": v.values.tolist(), "attrs": v.attrs}
                       for k, v in ds.variables.items() if "sample" not in v.dims and k not in skip}}
    meta["variables"] = {v: {"dims": list(ds[v].dims), "shape": list(ds[v].shape), "attrs": ds[v].attrs,
                             "dtype": str(ds[v].dtype)}
                         for v in input_names(ds) + labels}
    meta["attrs"] = ds.attrs
    with open(folder / "popstore.json", "w") as f:
        json.dump(meta, f, default=json_default)
    return folder


def _check_inside(folder: Path, table: pd.DataFrame, map_cols: list[str]) -> None:
    """Refuse map paths of ``dataset_full.csv`` that resolve (symlinks and ``..`` followed) outside ``folder``."""
    root = folder.resolve()
    for col in map_cols:
        resolved = [(folder / p).resolve() for p in table[col].astype(str)]
        outside = [i for i, p in enumerate(resolved) if not p.is_relative_to(root)]
        if outside:
            i = outside[0]
            raise UserError(f"{folder}/dataset_full.csv row {i + 1}, {col}: {table[col].iloc[i]} is outside {root} "
                            f"({len(outside)} such rows; pass allow_outside=True / --allow-outside to read them)")


def from_legacy(folder: str | Path, store: str | Path, samples_per_chunk: int | None = None,
                allow_outside: bool = False) -> xr.Dataset:
    """Turn a legacy folder into a store (with coordinates when ``popstore.json`` is present).

    Without ``popstore.json`` (genuine research-code output) each map becomes a
    variable over ``(sample, <map>_y, <map>_x)`` with index coordinates, and
    labels carry no units. Map paths that resolve outside ``folder`` are
    refused unless ``allow_outside``.
    """
    folder = Path(folder)
    table = pd.read_csv(folder / "dataset_full.csv")
    map_cols = [c for c in table.columns if c.startswith("input:")]
    labels = [c for c in table.columns if not c.startswith("input:")]
    if not map_cols:
        raise UserError(f"{folder}/dataset_full.csv has no input:<map> columns")
    if not allow_outside:
        _check_inside(folder, table, map_cols)
    meta_path = folder / "popstore.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    n = len(table)

    def stacked(col: str) -> da.Array:
        first = np.load(folder / table[col].iloc[0])
        parts = [da.from_delayed(dask.delayed(np.load)(folder / p), first.shape, first.dtype) for p in table[col]]
        return da.stack(parts).transpose(0, 2, 1)  # legacy x-first -> store (y, x)

    arrays = {c.removeprefix("input:"): stacked(c) for c in map_cols}
    if meta:
        static = {k: xr.Variable(v["dims"], v["data"], v["attrs"]) for k, v in meta["static"].items()}
        data = dict(static)
        ds_sizes = {d: n for v in meta["variables"].values() for d, n in zip(v["dims"], v.get("shape", []))}
        for v, info in meta["variables"].items():
            if info["attrs"].get("role") == "label":
                continue
            dims = info["dims"]
            extra = dims[1:-2]
            parts = [arrays["_".join([v, *map(str, combo)])] for combo in itertools.product(
                *[static[d].values if d in static else range(ds_sizes[d]) for d in extra])]
            arr = da.stack(parts, axis=1).reshape((n, *[ds_sizes[d] for d in extra], *parts[0].shape[1:])) \
                if extra else parts[0]
            data[v] = xr.Variable(dims, arr.astype(info["dtype"]), info["attrs"])
        attrs = dict(meta["attrs"])
        label_attrs = {v: meta["variables"][v]["attrs"] for v in labels if v in meta["variables"]}
    else:
        data = {m: xr.Variable(("sample", f"{m}_y", f"{m}_x"), a, {"role": "input", "units": "1", "long_name": m})
                for m, a in arrays.items()}
        attrs = {"simulator": "legacy-import", "simulator_version": "0",
                 "simulator_config": json.dumps({"source": str(folder.resolve())}), "labels": labels,
                 "inputs": list(arrays)}
        label_attrs = {}
    for lab in labels:
        data[lab] = xr.Variable("sample", table[lab].to_numpy(dtype=np.float64),
                                {"role": "label", "units": "1", "long_name": lab, **label_attrs.get(lab, {})})
    per_sample = max(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in arrays.values())
    layout = choose_layout_bytes(per_sample, n, samples_per_chunk)
    data["seed"] = xr.Variable("sample", np.full(n, -1, dtype=np.int64), {"long_name": "simulator seed (unknown)"})
    data["done"] = xr.Variable("sample", np.ones(n, dtype=bool), {"long_name": "sample written completely"})
    data["sample"] = xr.Variable("sample", np.arange(n, dtype=np.int64), {"long_name": "sample index"})
    attrs.update(popstore_schema_version=SCHEMA_VERSION, samples_per_chunk=layout.chunk, samples_per_shard=0,
                 imported_from=str(folder.resolve()))
    out = xr.Dataset(data, attrs=attrs)
    encoding = {k: {"chunks": tuple(layout.chunk if d == "sample" else s for d, s in v.sizes.items())}
                for k, v in out.data_vars.items() if "sample" in v.dims}
    for k, v in out.variables.items():
        if v.dtype.kind in "UST":
            out[k] = v.copy(data=text_array(v.values))
    with dask.config.set(scheduler="threads"):
        out.chunk({**{d: -1 for d in out.dims}, "sample": layout.chunk}).to_zarr(store, mode="w-", zarr_format=3, consolidated=False,
                                                    encoding=encoding)
    splits_present = all((folder / f"dataset_{s}.csv").exists() for s in SUBSETS)
    if splits_present:
        subset = np.full(n, "excluded", dtype=object)
        key = table[map_cols[0]]
        for s in SUBSETS:
            subset[key.isin(pd.read_csv(folder / f"dataset_{s}.csv")[map_cols[0]]).to_numpy()] = s
        stats = np.stack([label_statistics(table[labels].to_numpy()),
                          label_statistics(table[labels].to_numpy()[subset == "train"])])
        write_variables(store, {
            "split": xr.DataArray(subset, dims="sample", attrs={"long_name": "dataset subset", "imported": 1}),
            "label_stats": xr.DataArray(stats, dims=("subset", "label", "statistic"),
                                        coords={"subset": ["full", "train"], "label": labels,
                                                "statistic": list(STATISTICS)}),
        })
    return open_store(store)

