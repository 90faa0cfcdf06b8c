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

Every store, file and folder may be a local path or an fsspec URL (``s3://...``,
``memory://...``).
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import tempfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from tqdm.auto import tqdm
from tqdm.dask import TqdmCallback

from popstore.errors import UserError
from popstore.splits import SUBSETS, label_statistics
from popstore.codecs import checked
from popstore.store import (
    COMPRESSION,
    SCHEMA_VERSION,
    STATISTICS,
    auto_compression,
    check_new_output,
    choose_layout_bytes,
    input_names,
    json_default,
    label_names,
    layout_of,
    open_store,
    consolidate,
    store_exists,
    store_location,
    new_store,
    text_array,
    with_checksums,
    write_variables,
)


def _fs(location: str | os.PathLike):
    """(filesystem, path) of a local path or fsspec URL."""
    return url_to_fs(store_location(location))


def _returned(location: str | os.PathLike) -> Path | str:
    """What an export returns: a :class:`~pathlib.Path` for local outputs, the URL otherwise."""
    loc = store_location(location)
    return loc if "://" in loc else Path(loc)


def to_hdf5(store: str | Path, path: str | Path, complevel: int = 4, progress: bool = True,
            overwrite: bool = False) -> Path | str:
    """Write the whole store to one netCDF-4/HDF5 file (h5netcdf), same variables and attrs.

    Booleans are stored as int8 and read back as bool. Strings are written as
    CF character arrays (an extra ``<name>_strlen`` dim, ``_Encoding = "utf-8"``),
    which netCDF tools and the CF checker read, and come back as strings. An
    existing ``path`` is refused unless ``overwrite``. The file is written under
    a temporary name and then renamed (a URL ``path``: uploaded), so an
    interrupted export never leaves a partial file at ``path``. ``progress``: a
    bar over the chunks written.
    """
    check_new_output(path, overwrite)
    ds = open_store(store)
    block = layout_of(ds).block
    ds = ds.drop_encoding()
    bounds = {v.attrs["bounds"] for v in ds.variables.values() if "bounds" in v.attrs}
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OT":  # strings -> CF character arrays
            ds[name] = var.compute().astype(object)
            encoding[name] = {"dtype": "S1", "char_dim_name": f"{name}_strlen"}
            continue
        if var.ndim and var.dtype.kind in "fiub":
            enc = {"zlib": True, "complevel": complevel, "shuffle": True}
            if "sample" in var.dims:
                enc["chunksizes"] = tuple(min(block, n) if d == "sample" else n for d, n in var.sizes.items())
            encoding[name] = enc
        if name in ds.coords or name in bounds:  # CF: no missing values in coordinates and cell bounds
            encoding.setdefault(name, {})["_FillValue"] = None
    fs, target = _fs(path)
    local = isinstance(fs, LocalFileSystem)
    with tempfile.TemporaryDirectory(dir=Path(target).parent if local else None) as tmp:
        with TqdmCallback(desc="HDF5 export", unit="task", disable=not progress):
            ds.to_netcdf(f"{tmp}/out.nc", engine="h5netcdf", encoding=encoding)
        if local:
            os.replace(f"{tmp}/out.nc", target)
        else:
            fs.put_file(f"{tmp}/out.nc", target)
    return _returned(path)


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


def to_legacy(store: str | Path, folder: str | Path, progress: bool = True, overwrite: bool = False) -> Path | str:
    """Write the legacy layout (see module docstring); returns the folder.

    An existing ``folder`` is refused unless ``overwrite``, which replaces it
    only if it is a legacy export (holds ``dataset_full.csv``), never another folder.
    """
    check_new_output(folder, overwrite)
    fs, root = _fs(folder)
    if fs.exists(root):
        if not fs.exists(f"{root}/dataset_full.csv"):
            raise UserError(f"{folder} exists and is not a legacy export (no dataset_full.csv); not replacing it")
        fs.rm(root, recursive=True)
    ds = open_store(store)
    done = ds["done"].values
    samples = np.flatnonzero(done)
    labels = label_names(ds)
    maps = _legacy_maps(ds)
    table = pd.DataFrame({f"input:{m}": [f"maps/{m}/{i}.npy" for i in samples] for m in maps})
    for lab in labels:
        table[lab] = ds[lab].values[samples]
    layout = layout_of(ds)
    for m in maps:
        fs.makedirs(f"{root}/maps/{m}", exist_ok=True)
    for blk in tqdm(layout.blocks(), desc="legacy export", unit="chunk", disable=not progress):
        part = ds.isel(sample=blk).load()
        for m, (v, sel) in maps.items():
            arr = part[v].sel(sel).values
            for j, i in enumerate(range(blk.start, blk.stop)):
                if done[i]:
                    with fs.open(f"{root}/maps/{m}/{i}.npy", "wb") as f:
                        np.save(f, arr[j].T)

    def write_csv(frame: pd.DataFrame, name: str) -> None:
        with fs.open(f"{root}/{name}", "w") as f:
            frame.to_csv(f, index=False)

    write_csv(table, "dataset_full.csv")
    stats = {"full": label_statistics(table[labels].to_numpy())}
    if "split" in ds.coords:
        subset = ds["split"].values[samples]
        for s in SUBSETS:
            write_csv(table[subset == s], f"dataset_{s}.csv")
        stats["train"] = label_statistics(table[labels].to_numpy()[subset == "train"])
    for name, st in stats.items():
        with fs.open(f"{root}/statistics_{name}.json", "w") as f:
            json.dump({lab: dict(zip(STATISTICS, map(float, row))) for lab, row in zip(labels, st)}, f, indent=2)
    skip = {"label_stats", "subset", "label", "statistic"}
    meta = {"static": {k: {"dims": list(v.dims), "data": v.values.tolist(), "attrs": v.attrs}
                       for k, v in ds.variables.items() if "sample" not in v.dims and k not in skip}}
    meta["variables"] = {v: {"dims": list(ds[v].dims), "shape": list(ds[v].shape), "attrs": ds[v].attrs,
                             "dtype": str(ds[v].dtype)}
                         for v in input_names(ds) + labels}
    meta["attrs"] = ds.attrs
    meta["seed"] = ds["seed"].values[samples].tolist()  # so that an import can still reproduce every sample
    if "split" in ds.coords:
        meta["split_attrs"] = ds["split"].attrs
    with fs.open(f"{root}/popstore.json", "w") as f:
        json.dump(meta, f, default=json_default)
    return _returned(folder)


def _check_inside(fs, root: str, folder: str | Path, table: pd.DataFrame, map_cols: list[str]) -> None:
    """Refuse map paths of ``dataset_full.csv`` that resolve outside ``folder`` (``..`` and absolute paths, and on a
    local disk symlinks, followed)."""
    local = isinstance(fs, LocalFileSystem)
    base = os.path.realpath(root) if local else posixpath.normpath(root)
    for col in map_cols:
        paths = table[col].astype(str)
        resolved = [os.path.realpath(os.path.join(root, p)) if local else posixpath.normpath(posixpath.join(root, p))
                    for p in paths]
        outside = [i for i, p in enumerate(resolved) if os.path.commonpath([base, p]) != base]
        if outside:
            i = outside[0]
            raise UserError(f"{folder}/dataset_full.csv row {i + 1}, {col}: {paths.iloc[i]} is outside {base} "
                            f"({len(outside)} such rows; pass allow_outside=True / --allow-outside to read them)")


def from_legacy(folder: str | Path, store: str | Path, samples_per_chunk: int | None = None,
                progress: bool = True, allow_outside: bool = False) -> xr.Dataset:
    """Turn a legacy folder into a store (with coordinates when ``popstore.json`` is present).

    Without ``popstore.json`` (genuine research-code output) each map becomes a
    variable over ``(sample, <map>_y, <map>_x)`` with index coordinates, and
    labels carry no units. ``progress``: a bar over the maps read and the chunks written.

    Refused before anything is written (:class:`UserError`): an existing
    ``store``, a missing ``dataset_full.csv``, no rows, non-numeric labels,
    a listed ``.npy`` file that does not exist. A map whose shape or dtype
    differs from the first of its column stops the import with the file named.
    A local store is built under a temporary name and renamed when complete, so
    a failed import leaves no store. Map paths that resolve outside ``folder``
    are refused unless ``allow_outside``.
    """
    fs, root = _fs(folder)
    table = _legacy_table(fs, root, folder, store, allow_outside)
    source = root if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(root)
    map_cols = [c for c in table.columns if c.startswith("input:")]
    labels = [c for c in table.columns if not c.startswith("input:")]
    meta = json.loads(fs.cat_file(f"{root}/popstore.json")) if fs.exists(f"{root}/popstore.json") else None
    n = len(table)
    codecs: dict[str, str] = {}  # map column -> what compression="auto" picks on its first map

    def stacked(col: str) -> da.Array:
        first = _load_map(fs, posixpath.join(root, table[col].iloc[0]))
        if first.ndim != 2:
            raise UserError(f"{folder}/{table[col].iloc[0]}: a map must be 2D, got shape {first.shape}")
        codecs[col.removeprefix("input:")] = auto_compression(first)
        load = dask.delayed(_load_map)
        parts = [da.from_delayed(load(fs, posixpath.join(root, p), first.shape, first.dtype), first.shape, first.dtype)
                 for p in table[col]]
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
            names = ["_".join([v, *map(str, combo)]) for combo in itertools.product(
                *[static[d].values if d in static else range(ds_sizes[d]) for d in extra])]
            parts = [arrays[m] for m in names]
            arr = da.stack(parts, axis=1).reshape((n, *[ds_sizes[d] for d in extra], *parts[0].shape[1:])) \
                if extra else parts[0]
            data[v] = xr.Variable(dims, arr.astype(info["dtype"]), info["attrs"])
            codecs[v] = "lz4" if "lz4" in [codecs[m] for m in names] else "none"
        attrs = dict(meta["attrs"])
        label_attrs = {v: meta["variables"][v]["attrs"] for v in labels if v in meta["variables"]}
    else:
        data = {m: xr.Variable(("sample", f"{m}_y", f"{m}_x"), a, {"role": "input", "units": "1", "long_name": m})
                for m, a in arrays.items()}
        attrs = {"simulator": "legacy-import", "simulator_version": "0",
                 "simulator_config": json.dumps({"source": source}), "labels": labels,
                 "inputs": list(arrays)}
        label_attrs = {}
    for lab in labels:
        data[lab] = xr.Variable("sample", table[lab].to_numpy(dtype=np.float64),
                                {"role": "label", "units": "1", "long_name": lab, **label_attrs.get(lab, {})})
    per_sample = max(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in arrays.values())
    layout = choose_layout_bytes(per_sample, n, samples_per_chunk)
    if meta and "seed" in meta:
        data["seed"] = xr.Variable("sample", np.asarray(meta["seed"], dtype=np.int64), {"long_name": "simulator seed"})
    else:
        data["seed"] = xr.Variable("sample", np.full(n, -1, dtype=np.int64), {"long_name": "simulator seed (unknown)"})
    data["done"] = xr.Variable("sample", np.ones(n, dtype=bool), {"long_name": "sample written completely"})
    data["sample"] = xr.Variable("sample", np.arange(n, dtype=np.int64), {"long_name": "sample index"})
    attrs.update(popstore_schema_version=SCHEMA_VERSION, samples_per_chunk=layout.chunk, samples_per_shard=0,
                 imported_from=source)
    out = xr.Dataset(data, attrs=attrs)
    encoding = {k: {"chunks": tuple(layout.chunk if d == "sample" else s for d, s in v.sizes.items())}
                for k, v in out.data_vars.items() if "sample" in v.dims}
    for k in set(codecs) & set(encoding):  # maps: lz4 where it pays, else raw (popstore.store.auto_compression)
        encoding[k]["compressors"] = checked(COMPRESSION[codecs[k]])
    for k, v in out.variables.items():
        if v.dtype.kind in "UST":
            out[k] = v.copy(data=text_array(v.values))
    with new_store(store) as target:
        with dask.config.set(scheduler="threads"), TqdmCallback(desc="legacy import", unit="task",
                                                                disable=not progress):
            out.chunk({**{d: -1 for d in out.dims}, "sample": layout.chunk}).to_zarr(
                target, mode="w-", zarr_format=3, consolidated=False, encoding=with_checksums(out, encoding))
        _import_splits(fs, root, target, table, map_cols, labels, (meta or {}).get("split_attrs", {}))
        consolidate(target)
    return open_store(store)


def _legacy_table(fs, root: str, folder: str | Path, store: str | Path, allow_outside: bool) -> pd.DataFrame:
    """``dataset_full.csv`` of a legacy folder, checked (see :func:`from_legacy`)."""
    if store_exists(store):
        raise UserError(f"{store} exists; choose a new store path")
    csv = f"{root}/dataset_full.csv"
    if not fs.isfile(csv):
        raise UserError(f"{folder}/dataset_full.csv not found: not a legacy folder (maps/ + dataset_full.csv)")
    with fs.open(csv) as f:
        table = pd.read_csv(f)
    map_cols = [c for c in table.columns if c.startswith("input:")]
    labels = [c for c in table.columns if not c.startswith("input:")]
    if not map_cols:
        raise UserError(f"{folder}/dataset_full.csv has no input:<map> columns")
    if table.empty:
        raise UserError(f"{folder}/dataset_full.csv lists no samples")
    numeric = table[labels].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & table[labels].notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise UserError(f"{folder}/dataset_full.csv: line {row + 2}: label {labels[col]} = "
                        f"{table[labels[col]].iloc[row]!r} is not a number")
    if not allow_outside:
        _check_inside(fs, root, folder, table, map_cols)
    listed = pd.concat([table[c] for c in map_cols], ignore_index=True).astype(str)
    present = {os.path.normpath(p) for p in fs.find(root) if p.endswith(".npy")}
    absent = listed[~listed.map(lambda p: os.path.normpath(posixpath.join(root, p))).isin(present)]
    absent = absent[~absent.map(lambda p: fs.exists(posixpath.join(root, p)))]  # maps outside (allow_outside)
    if len(absent):
        raise UserError(f"{folder}: {len(absent)} listed maps are missing, first {absent.iloc[0]}")
    return table


def _load_map(fs, path: str, shape: tuple[int, ...] | None = None, dtype: np.dtype | None = None) -> np.ndarray:
    """One legacy map, refused (UserError naming the file) unless it has the ``shape`` and ``dtype`` of its column."""
    with fs.open(path) as f:
        arr = np.load(f, allow_pickle=False)
    if shape is not None and (arr.shape != shape or arr.dtype != dtype):
        raise UserError(f"{path}: map of shape {arr.shape} and dtype {arr.dtype}; the first map of its column has "
                        f"{shape} {dtype}")
    return arr


def _import_splits(fs, root: str, store: str | Path, table: pd.DataFrame, map_cols: list[str], labels: list[str],
                   split_attrs: dict) -> None:
    """The legacy ``dataset_{train,valid,test}.csv`` as the store's ``split`` and ``label_stats``, if all present."""
    if not all(fs.exists(f"{root}/dataset_{s}.csv") for s in SUBSETS):
        return
    subset = np.full(len(table), "excluded", dtype=object)
    key = table[map_cols[0]]
    for s in SUBSETS:
        with fs.open(f"{root}/dataset_{s}.csv") as f:
            subset[key.isin(pd.read_csv(f)[map_cols[0]]).to_numpy()] = s
    stats = np.stack([label_statistics(table[labels].to_numpy()),
                      label_statistics(table[labels].to_numpy()[subset == "train"])])
    write_variables(store, {
        "split": xr.DataArray(subset, dims="sample", attrs={"long_name": "dataset subset", "imported": 1,
                                                            **split_attrs}),
        "label_stats": xr.DataArray(stats, dims=("subset", "label", "statistic"),
                                    coords={"subset": ["full", "train"], "label": labels,
                                            "statistic": list(STATISTICS)}),
    })
