"""The dataset store: one Zarr (format 3) store per dataset, read and written through xarray.

Layout (schema version :data:`SCHEMA_VERSION`, see DESIGN.md):

- dimension ``sample``, with integer coordinate ``sample``;
- one data variable per simulator :class:`~popstore.Output` over
  ``(sample, *dims)``, attrs ``role`` (``"input"``, ``"diagnostic"`` or
  ``"catalogue"``), ``units``, ``long_name``;
- bin axes as coordinates holding bin centres with CF ``bounds`` pointing to
  ``<axis>_bnds(<axis>, nv)`` holding the edges;
- one ``role="label"`` variable per simulator parameter (prior range in attrs: ``prior_low``,
  ``prior_high``, ``prior_log``, and ``prior_fixed = 1`` for a label held at fixed values);
- ``seed(sample)`` and ``done(sample)``; ``done`` is chunked exactly like the
  maps and set only after the maps of its samples are written;
- root attrs: schema version, popstore version, simulator name, version and
  config (JSON), creation time, chunking and a fingerprint of everything that
  determines the content (used to refuse resuming a different run).

Chunks run along ``sample`` only, sized so that the largest variable's chunk
is a few MiB. When that would make more than :data:`MAX_CHUNK_FILES` chunk
files per variable, chunks are grouped into Zarr 3 shards and every writer
owns whole shards (concurrent writes into one shard lose data silently,
zarr-python#3682).

The store follows the CF conventions (version :data:`CF_CONVENTIONS`): map axes carry
``axis`` (see :data:`CF_AXES` on standard names), every ``units`` attribute is a
UDUNITS string that astropy reads as the same quantity (:mod:`popstore.cf` checks
them), coordinates and bounds have no ``_FillValue``. Non-dimension coordinates
(``split``) are listed in the root ``coordinates`` attribute, and the metadata of
the whole store is consolidated into the root ``zarr.json``, so that plain
``xr.open_zarr(path)`` opens it quietly with ``split`` as a coordinate.

A store is named by a local path or by any fsspec URL (``s3://bucket/x.zarr``,
``gs://``, ``memory://``; ``file://`` URLs are local paths): see :func:`store_location`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.errors import ZarrUserWarning

from popstore import __version__
from popstore.codecs import checked
from popstore.errors import UserError
from popstore.simulator import Axis, Simulator

SCHEMA_VERSION = 1
MAX_CHUNK_FILES = 10_000
TARGET_CHUNK_BYTES = 4 * 2**20
MIN_CHUNK_BYTES = 2**20
STATISTICS = ("mean", "std", "min", "max")
COORDINATE_VARIABLES = ("split",)
CF_CONVENTIONS = "CF-1.10"
CF_AXES = {"x": "X", "y": "Y", "z": "Z"}
"""CF ``axis`` of map axes named x, y, z; on other maps of lengths or angles (ra/dec) the last dim
is X and the one before it Y. Other map axes (P, Pdot) get no ``axis``: CF reads an axis in
seconds as time.

No map axis gets a ``standard_name``: the CF standard name table (version 93) is
written for the Earth system and has none for comoving, Galactocentric or sky
coordinates, spin periods or their derivatives (``projection_x_coordinate`` is a
projection of the Earth's surface)."""

COMPRESSION = {
    # fast to decode: what "auto" picks for maps it shrinks by >= AUTO_MIN_RATIO (count-like maps, ~2x and more)
    "lz4": (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),),
    # smaller (count-like maps ~7x, reference/zarr_dask_torch.md) but ~2x slower to decode: for archives
    "zstd": (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),),
    # stored raw (still checksummed): continuous float maps gain only 1.2-1.3x from lz4 or zstd, and reading raw
    # chunks costs 2-4x less CPU than decoding them (benchmarks/bench_codecs.py)
    "none": None,
}
#: ``compression`` names: a codec of :data:`COMPRESSION` for every output, or ``"auto"`` (:func:`auto_compression`
#: per output, on the first sample)
COMPRESSION_CHOICES = (*COMPRESSION, "auto")
DEFAULT_COMPRESSION = "auto"
#: ``"auto"`` compresses an output with lz4 only when lz4 stores it at least this many times smaller: continuous
#: float32 maps (gaussian_fields, smoothed pulsar maps) gain 1.19-1.33x, maps half of empty bins 1.97x
#: (``python benchmarks/bench_codecs.py``); below this a training read pays the decode for little disk.
AUTO_MIN_RATIO = 1.5


def auto_compression(sample: np.ndarray) -> str:
    """What ``compression="auto"`` stores an output as, judged on one ``sample`` of it (any shape).

    ``"lz4"`` (:data:`COMPRESSION`) if lz4 with its byte shuffle stores ``sample`` at least
    :data:`AUTO_MIN_RATIO` times smaller, else ``"none"``: raw bytes, still ending in the
    ``crc32c`` checksum (:func:`popstore.codecs.checked`), so corruption is still detected.
    """
    import numcodecs

    lz4 = COMPRESSION["lz4"][0]
    codec = numcodecs.Blosc(cname=lz4.cname.value, clevel=lz4.clevel, shuffle=numcodecs.Blosc.SHUFFLE)
    raw = np.ascontiguousarray(sample)
    if raw.dtype.kind not in "biuf" or raw.nbytes == 0:
        return "lz4"
    return "lz4" if raw.nbytes >= AUTO_MIN_RATIO * len(codec.encode(raw)) else "none"


def check_compression(compression: str | Mapping[str, str]) -> None:
    """Raise ``ValueError`` unless ``compression`` is a name of :data:`COMPRESSION_CHOICES` or maps names to
    codecs of :data:`COMPRESSION`."""
    names = compression.values() if isinstance(compression, Mapping) else [compression]
    allowed = COMPRESSION if isinstance(compression, Mapping) else COMPRESSION_CHOICES
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"unknown compression {bad[0]!r}; use one of {list(allowed)}")


# labels, seeds, coordinates and other small arrays: Zarr 3's own default compressor
DEFAULT_SMALL_COMPRESSORS = (ZstdCodec(level=0),)


class SchemaError(UserError):
    """A store does not follow the popstore schema this version understands."""


class StoreNotFoundError(UserError, FileNotFoundError):
    """Nothing at a store's path or URL."""


class StoreMismatchError(UserError):
    """An existing store was made by a different simulator, config or parameter table."""


@dataclass(frozen=True)
class Layout:
    """How the ``sample`` axis is cut: ``chunk`` samples per chunk, ``block`` samples per writer.

    ``block`` equals ``chunk`` for unsharded stores and is the shard size
    otherwise; one task writes one block and nothing else.
    """

    n_samples: int
    chunk: int
    block: int

    @property
    def sharded(self) -> bool:
        return self.block != self.chunk

    def blocks(self) -> list[slice]:
        return [slice(i, min(i + self.block, self.n_samples)) for i in range(0, self.n_samples, self.block)]


def choose_layout(
    simulator: Simulator, n_samples: int, samples_per_chunk: int | None = None, samples_per_shard: int | None = None
) -> Layout:
    """Pick chunk and shard sizes along ``sample`` for a simulator's outputs (see :func:`choose_layout_bytes`)."""
    sizes = simulator.dim_sizes()
    per_sample = max(
        [np.dtype(o.dtype).itemsize * math.prod(sizes[d] for d in o.dims) for o in simulator.outputs] + [1]
    )
    return choose_layout_bytes(per_sample, n_samples, samples_per_chunk, samples_per_shard)


def choose_layout_bytes(
    bytes_per_sample: int, n_samples: int, samples_per_chunk: int | None = None, samples_per_shard: int | None = None
) -> Layout:
    """Chunk and shard sizes along ``sample`` given the largest variable's bytes per sample.

    Chunks target :data:`TARGET_CHUNK_BYTES` (at least :data:`MIN_CHUNK_BYTES`
    when that leaves fewer than 16 chunks, so small stores still give every
    worker several tasks); above :data:`MAX_CHUNK_FILES` chunks they are
    grouped into shards so that at most a tenth of that many shard files remain.
    """
    if n_samples < 1:
        raise ValueError("a store needs at least one sample")
    if samples_per_chunk is None:
        chunk = max(1, TARGET_CHUNK_BYTES // bytes_per_sample)
        if n_samples / chunk < 16:
            chunk = max(MIN_CHUNK_BYTES // bytes_per_sample, math.ceil(n_samples / 16), 1)
        chunk = min(chunk, n_samples)
    else:
        chunk = int(samples_per_chunk)
    if chunk < 1:
        raise ValueError(f"samples_per_chunk must be >= 1, got {samples_per_chunk}")
    n_chunks = math.ceil(n_samples / chunk)
    if samples_per_shard is None:
        block = chunk * math.ceil(n_chunks / (MAX_CHUNK_FILES // 10)) if n_chunks > MAX_CHUNK_FILES else chunk
    else:
        block = int(samples_per_shard)
        if block % chunk:
            raise ValueError(f"samples_per_shard ({block}) must be a multiple of samples_per_chunk ({chunk})")
    return Layout(n_samples, chunk, block)


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default)


def json_default(o: Any) -> Any:
    """``json.dump`` hook for numpy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def plain(obj: Any) -> Any:
    """``obj`` as plain Python (dicts, lists, str, int, float, bool, None), numpy scalars and arrays included.

    What checkpoints store besides tensors, so that :func:`popstore.checkpoints.load_checkpoint` reads them.
    """
    return json.loads(json.dumps(obj, default=json_default))


def text_array(values: Any) -> np.ndarray:
    """Strings as a variable-length UTF-8 array (fixed-width numpy strings have no stable Zarr 3 spec)."""
    return np.asarray(values, dtype=object)


def store_location(store: str | os.PathLike) -> str:
    """Where a store lives, as zarr and xarray take it: a local path, or an fsspec URL.

    ``s3://``, ``gs://``, ``az://``, ``memory://`` ... URLs are kept (credentials come
    from the filesystem's usual configuration, e.g. environment variables); ``file://``
    URLs become local paths, so zarr's local store creates folders as it writes.
    """
    s = os.fspath(store)
    if "://" not in s:
        return s
    fs, path = url_to_fs(s)
    return path if isinstance(fs, LocalFileSystem) else s


def check_new_output(location: str | os.PathLike, overwrite: bool) -> None:
    """Refuse (:class:`UserError`) to replace anything at an output ``location`` (path or URL) unless ``overwrite``."""
    if store_exists(location) and not overwrite:
        raise UserError(f"{location} exists; choose another output path or pass overwrite=True (--overwrite)")


def store_exists(store: str | os.PathLike) -> bool:
    """Whether anything exists at a store's location (path or URL)."""
    loc = store_location(store)
    if "://" not in loc:
        return Path(loc).exists()
    fs, path = url_to_fs(loc)
    return fs.exists(path)


def open_zarr(store: str | os.PathLike, **kwargs: Any) -> xr.Dataset:
    """``xr.open_zarr`` of a path or URL, through its consolidated metadata when it has some.

    Stores written before popstore consolidated metadata are read without it
    (``popstore upgrade STORE`` adds it).
    """
    loc = store_location(store)
    try:
        return xr.open_zarr(loc, consolidated=True, zarr_format=3, **kwargs)
    except (ValueError, KeyError):  # no consolidated metadata in this store
        return xr.open_zarr(loc, consolidated=False, zarr_format=3, **kwargs)


def consolidate(store: str | os.PathLike) -> None:
    """Write the metadata of every array into the root ``zarr.json`` (one read opens the store).

    zarr-python warns that consolidated metadata is not yet part of the Zarr 3
    specification; xarray reads it by default and warns when it is missing.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata is currently not part", ZarrUserWarning)
        zarr.consolidate_metadata(store_location(store), zarr_format=3)


def set_coordinates(store: str | os.PathLike) -> None:
    """List the store's :data:`COORDINATE_VARIABLES` in the root ``coordinates`` attribute.

    xarray reads the names there as coordinates, so plain ``xr.open_zarr`` has
    ``split`` as a coordinate (``ds.sel(sample=ds.split == "test")``).
    """
    group = zarr.open_group(store_location(store), mode="r+", zarr_format=3, use_consolidated=False)
    names = [n for n in COORDINATE_VARIABLES if n in group.array_keys()]
    if names:
        group.attrs["coordinates"] = " ".join(names)


def upgrade_store(store: str | os.PathLike) -> None:
    """Give a store written before popstore consolidated its metadata what plain xarray needs.

    Lists ``split`` in the root ``coordinates`` attribute and consolidates the
    metadata, so ``xr.open_zarr`` opens it quietly; the data are not touched.
    (``popstore upgrade STORE``.)
    """
    if not store_exists(store):
        raise StoreNotFoundError(f"no store at {store}")
    check_schema(open_zarr(store, chunks=None), os.fspath(store))
    set_coordinates(store)
    consolidate(store)


def axis_coords(axis: Axis, cf_axis: Mapping[str, str] | None = None) -> dict[str, xr.Variable]:
    """The coordinate (and ``_bnds`` edges) variables of one axis; ``cf_axis``: extra CF attrs (``axis``...)."""
    values = axis.coord_values
    if values.dtype.kind in "US":
        values = text_array(values)
    attrs = {"units": axis.units, "long_name": axis.long_name or axis.name, **(cf_axis or {}), **axis.attrs}
    out = {}
    if axis.edges is not None:
        e = axis.bin_edges
        bnds = f"{axis.name}_bnds"
        attrs.update(bounds=bnds, scale="log" if axis.log else "linear")
        out[bnds] = xr.Variable((axis.name, "nv"), np.stack([e[:-1], e[1:]], axis=1))
    out[axis.name] = xr.Variable(axis.name, values, attrs)
    return out


def _is_spatial(units: str) -> bool:
    """Whether ``units`` measure a length or an angle (astropy)."""
    import astropy.units as u

    try:
        unit = u.Unit(units)
        return unit.is_equivalent(u.m) or unit.is_equivalent(u.rad)
    except ValueError:
        return False


def cf_axes(simulator: Simulator) -> dict[str, dict[str, str]]:
    """CF ``axis`` (and ``positive`` for Z) attrs of the binned axes the input maps lie on.

    Axes named x, y, z follow :data:`CF_AXES`; on other maps the last dim is X and
    the one before it Y (ra/dec, P/Pdot). Categorical axes (survey, band) get none.
    """
    binned = {a.name for a in simulator.axes if a.edges is not None and _is_spatial(a.units)}
    out: dict[str, dict[str, str]] = {}
    for o in simulator.outputs:
        if o.role != "input":
            continue
        for name, default in zip(o.dims[::-1][:2], ("X", "Y")):
            if name not in binned or name in out:
                continue
            axis = CF_AXES.get(name, default)
            out[name] = {"axis": axis, "positive": "up"} if axis == "Z" else {"axis": axis}
    return out


def fingerprint(simulator: Simulator, params: pd.DataFrame, seeds: np.ndarray, layout: Layout) -> str:
    """SHA-256 of everything that determines a store's content."""
    h = hashlib.sha256()
    h.update(_json([simulator.name, simulator.version, simulator.config, layout.chunk, layout.block]).encode())
    h.update(np.ascontiguousarray(params.to_numpy(dtype=float)).tobytes())
    h.update(_json(list(params.columns)).encode())
    h.update(np.ascontiguousarray(seeds, dtype=np.int64).tobytes())
    return h.hexdigest()


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Independent per-sample seeds (int64 >= 0) derived from one master ``seed``."""
    return (np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) >> np.uint64(1)).astype(np.int64)


def template(simulator: Simulator, params: pd.DataFrame, seeds: np.ndarray, layout: Layout,
             compression: str | Mapping[str, str] = "lz4") -> tuple[xr.Dataset, dict]:
    """The whole store as a lazy dataset (outputs and ``done`` as dask zeros) and its Zarr encoding.

    ``compression`` names a codec of :data:`COMPRESSION` for the outputs, or maps output names to
    codecs (outputs not named, and ``done``, get lz4): what ``"auto"`` resolves to
    (:func:`popstore.generation.resolve_compression`).
    """
    check_compression(compression if isinstance(compression, Mapping) else {"outputs": compression})
    codec_of = (lambda name: compression.get(name, "lz4")) if isinstance(compression, Mapping) \
        else (lambda name: compression)
    n = layout.n_samples
    sizes = simulator.dim_sizes()
    coords: dict[str, Any] = {"sample": ("sample", np.arange(n, dtype=np.int64), {"long_name": "sample index",
                                                                                  "units": "1"})}
    axes_cf = cf_axes(simulator)
    for axis in simulator.axes:
        coords.update(axis_coords(axis, axes_cf.get(axis.name)))
    data: dict[str, Any] = {}
    # CF: coordinates and cell bounds have no missing values, so no _FillValue
    encoding: dict[str, dict] = {k: {"_FillValue": None} for k in coords if k != "sample"}

    def chunking(name: str, shape_tail: tuple[int, ...]) -> dict:
        enc = {"chunks": (layout.chunk, *shape_tail), "compressors": checked(COMPRESSION[codec_of(name)])}
        if layout.sharded:
            enc["shards"] = (layout.block, *shape_tail)
        return enc

    for o in simulator.outputs:
        tail = tuple(sizes[d] for d in o.dims)
        arr = da.zeros((n, *tail), dtype=o.dtype, chunks=(layout.block, *tail))
        attrs = {"role": o.role, "units": o.units, "long_name": o.long_name or o.name, **o.attrs}
        data[o.name] = xr.Variable(("sample", *o.dims), arr, attrs)
        encoding[o.name] = chunking(o.name, tail)
        fill = o.fill_value if o.fill_value is not None else (np.nan if np.dtype(o.dtype).kind == "f" else None)
        if fill is not None:
            encoding[o.name]["_FillValue"] = fill
    ranges, fixed = params.attrs.get("ranges", {}), set(params.attrs.get("fixed", ()))
    for p in simulator.parameters:
        if p.name not in params:
            raise ValueError(f"parameter table lacks column {p.name!r}")
        low, high = ranges.get(p.name, (p.low, p.high))  # the prior drawn from (a pipeline may narrow it)
        attrs = {"role": "label", "units": p.units, "long_name": p.long_name or p.name,
                 "prior_low": float(low), "prior_high": float(high), "prior_log": int(p.log),
                 "prior_fixed": int(p.name in fixed)}
        data[p.name] = xr.Variable("sample", params[p.name].to_numpy(dtype=np.float64), attrs)
        encoding[p.name] = {"chunks": (layout.chunk,)}
    data["seed"] = xr.Variable("sample", np.asarray(seeds, dtype=np.int64), {"long_name": "simulator seed"})
    encoding["seed"] = {"chunks": (layout.chunk,)}
    data["done"] = xr.Variable("sample", da.zeros(n, dtype=bool, chunks=layout.block),
                               {"long_name": "sample written completely"})
    encoding["done"] = chunking("done", ())
    attrs = {
        "Conventions": CF_CONVENTIONS,
        "title": f"popstore {simulator.name} samples",
        "popstore_schema_version": SCHEMA_VERSION,
        "popstore_version": __version__,
        "simulator": simulator.name,
        "simulator_version": simulator.version,
        "simulator_config": _json(simulator.config),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples_per_chunk": layout.chunk,
        "samples_per_shard": layout.block if layout.sharded else 0,
        "compression": compression if isinstance(compression, str) else _json(dict(compression)),
        "config_fingerprint": fingerprint(simulator, params, seeds, layout),
        "chunks_always_written": 1,  # empty chunks are written too: an absent chunk is damage (popstore.verify)
        "labels": list(simulator.parameter_names),
        "inputs": [o.name for o in simulator.outputs if o.role == "input"],
        "finite_outputs": [o.name for o in simulator.outputs if o.must_be_finite],
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return ds, with_checksums(ds, encoding)


def with_checksums(ds: xr.Dataset, encoding: Mapping[str, dict]) -> dict[str, dict]:
    """``encoding`` with every variable of ``ds`` ending its codecs in ``crc32c`` (:func:`popstore.codecs.checked`).

    Variables without ``compressors`` get Zarr's default (Zstandard) first.
    """
    out = {name: dict(enc) for name, enc in encoding.items()}
    for name in ds.variables:
        enc = out.setdefault(str(name), {})
        if "compressors" not in enc:
            enc["compressors"] = checked(DEFAULT_SMALL_COMPRESSORS)
    return out


def create_store(
    path: str | Path,
    simulator: Simulator,
    params: pd.DataFrame,
    seeds: np.ndarray,
    layout: Layout,
    compression: str | Mapping[str, str] = "lz4",
) -> None:
    """Write the template of a new store: labels, seeds and coordinates now, outputs later.

    A local template is written under :func:`temporary_path` and renamed into place, so an
    interrupted creation (killed, disk full) leaves no store or a complete template, never a
    half-written one; a leftover temporary is removed first. An fsspec URL (see
    :func:`store_location`) is written in place: object stores have no atomic rename. Fails if
    ``path`` exists. Callers hold the store's lock (:class:`popstore.lock.StoreLock`).
    """
    if store_exists(path):
        raise FileExistsError(f"{path} exists")
    ds, encoding = template(simulator, params, seeds, layout, compression)
    with new_store(path) as target:
        ds.to_zarr(target, mode="w-", compute=False, zarr_format=3, consolidated=False, encoding=encoding,
                   write_empty_chunks=True)
        consolidate(target)


def temporary_path(path: str | Path) -> Path:
    """Where :func:`new_store` builds a local store before renaming it to ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.creating")


@contextlib.contextmanager
def new_store(path: str | os.PathLike) -> Iterator[str | Path]:
    """Where to build a new store at ``path``, so that a failure leaves nothing behind.

    A local store is built under :func:`temporary_path` (a leftover one from an earlier
    failure removed first) and renamed into place when the block succeeds, or removed
    when it fails; an fsspec URL is written in place, since object stores have no
    atomic rename.
    """
    loc = store_location(path)
    if "://" in loc:
        yield loc
        return
    target = temporary_path(loc)
    if target.exists():
        shutil.rmtree(target)
    try:
        yield target
    except BaseException:
        _settle_zarr_writes()
        shutil.rmtree(target, ignore_errors=True)
        raise
    os.replace(target, loc)


def _settle_zarr_writes(timeout: float = 60.0) -> None:
    """Wait (at most ``timeout`` s) for the writes still running on zarr's I/O event loop.

    zarr writes an array's chunks concurrently (``asyncio.gather``); when one fails, the
    others keep running and may create files after the caller has cleaned up.
    """
    from zarr.core.sync import sync

    async def others_done() -> None:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=timeout)

    sync(others_done())


def layout_of(ds: xr.Dataset) -> Layout:
    """The chunk/shard layout recorded in a store's attrs."""
    chunk = int(ds.attrs["samples_per_chunk"])
    shard = int(ds.attrs.get("samples_per_shard", 0))
    return Layout(ds.sizes["sample"], chunk, shard or chunk)


def open_store(path: str | os.PathLike, *, validate: bool = True) -> xr.Dataset:
    """Open a store (local path or fsspec URL) lazily, dask arrays chunked by writer block; check its schema.

    Stores written before consolidated metadata and the ``coordinates``
    attribute open too (``split`` is made a coordinate here).

    Raises
    ------
    SchemaError
        ``path`` does not exist or holds no Zarr group, or the store was written by a newer/unknown
        schema or lacks a required variable.
    """
    if not store_exists(path):
        raise StoreNotFoundError(f"no store at {path}")
    try:
        raw = open_zarr(path, chunks=None)
    except FileNotFoundError:  # zarr's GroupNotFoundError: a folder that holds no Zarr group
        raise SchemaError(f"{path}: not a Zarr (format 3) store") from None
    if validate:
        check_schema(raw, os.fspath(path))
    block = int(raw.attrs.get("samples_per_shard", 0)) or int(raw.attrs.get("samples_per_chunk", 0)) or None
    ds = open_zarr(path, chunks={"sample": block} if block else {})
    return ds.set_coords([n for n in COORDINATE_VARIABLES if n in ds.data_vars])


def check_schema(ds: xr.Dataset, where: str = "store") -> None:
    """Raise :class:`SchemaError` unless ``ds`` follows this version's schema."""
    version = ds.attrs.get("popstore_schema_version")
    if version is None:
        raise SchemaError(f"{where}: not a popstore store (no 'popstore_schema_version' attribute)")
    if not isinstance(version, (int, np.integer)) or version != SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: schema version {version!r} is not supported by popstore {__version__} "
            f"(supports {SCHEMA_VERSION}); upgrade popstore or regenerate the store"
        )
    missing = [v for v in ("seed", "done") if v not in ds.variables]
    for key in ("simulator", "simulator_config", "samples_per_chunk"):
        if key not in ds.attrs:
            missing.append(f"attr {key}")
    if not missing:
        check_attrs(ds.attrs, where)
    if not label_names(ds) and ds.attrs.get("labels") != []:  # [] : a simulator without parameters
        missing.append("label variables (role='label')")
    if missing:
        raise SchemaError(f"{where}: missing required {', '.join(missing)}")
    for name, var in ds.data_vars.items():
        if var.attrs.get("role") in ("input", "label") and var.dims[:1] != ("sample",):
            raise SchemaError(f"{where}: variable {name!r} has role {var.attrs['role']!r} but dims {var.dims}")


def check_attrs(attrs: Mapping[str, Any], where: str = "store") -> None:
    """Raise :class:`SchemaError` naming the first root attr whose value has the wrong type or range."""
    def bad(key: str, need: str) -> SchemaError:
        return SchemaError(f"{where}: attr {key!r} = {attrs.get(key)!r} is not {need}")

    def integer(key: str) -> int | None:
        value = attrs.get(key)
        return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None

    chunk, shard = integer("samples_per_chunk"), integer("samples_per_shard") if "samples_per_shard" in attrs else 0
    if chunk is None or chunk < 1:
        raise bad("samples_per_chunk", "an integer >= 1")
    if shard is None or shard < 0 or shard % chunk:
        raise bad("samples_per_shard", f"0 or a positive multiple of samples_per_chunk ({chunk})")
    try:
        config = json.loads(attrs["simulator_config"])
    except (TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise bad("simulator_config", "a JSON object")
    if not isinstance(attrs.get("simulator"), str):
        raise bad("simulator", "a string")
    for key in ("labels", "inputs", "finite_outputs"):
        value = attrs.get(key, [])
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            raise bad(key, "a list of variable names")


def _names_with_role(ds: xr.Dataset, role: str, order_attr: str) -> list[str]:
    names = [k for k, v in ds.data_vars.items() if v.attrs.get("role") == role]
    order = [n for n in ds.attrs.get(order_attr, []) if n in names]
    return order + [n for n in names if n not in order]


def label_names(ds: xr.Dataset) -> list[str]:
    """Names of the ``role="label"`` variables, in simulator order."""
    return _names_with_role(ds, "label", "labels")


def input_names(ds: xr.Dataset) -> list[str]:
    """Names of the ``role="input"`` variables (maps a network can read), in simulator order."""
    return _names_with_role(ds, "input", "inputs")


def simulator_config(ds: xr.Dataset) -> dict:
    """The simulator config stored with a dataset."""
    return json.loads(ds.attrs["simulator_config"])


def write_variables(path: str | Path, variables: Mapping[str, xr.DataArray | xr.Variable], attrs: Mapping | None = None) -> None:
    """Add or overwrite whole small variables (splits, statistics) and root attrs of an existing store.

    Variables along ``sample`` are chunked like the store's maps. Single
    writer only: call it from the driver, never from generation tasks. The
    metadata is consolidated again afterwards.
    """
    existing = open_zarr(path, chunks=None)
    layout = layout_of(existing)
    ds = xr.Dataset(dict(variables), attrs={**existing.attrs, **(attrs or {})})
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "US":
            ds[name] = var.copy(data=text_array(var.values))
        if "sample" in var.dims and name not in existing.variables:
            encoding[name] = {"chunks": tuple(layout.chunk if d == "sample" else n for d, n in var.sizes.items())}
    new = ds.drop_vars([n for n in ds.variables if n in existing.variables])
    encoding = {k: v for k, v in with_checksums(new, encoding).items() if k in new.variables}
    ds.to_zarr(store_location(path), mode="a", zarr_format=3, consolidated=False, encoding=encoding,
               write_empty_chunks=True)
    set_coordinates(path)
    consolidate(path)
