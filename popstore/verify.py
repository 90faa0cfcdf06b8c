"""A store scrub: read every chunk, check checksums, presence and finiteness; mark damaged blocks for regeneration.

:func:`verify` reads every chunk (every shard, in sharded stores) of every
array of a store and reports

- ``corrupt``: the chunk does not decode (``crc32c`` mismatch, truncated or
  invalid frame; see :mod:`popstore.codecs`);
- ``missing``: the chunk file is absent although it must exist (an output
  chunk holding ``done`` samples, or any chunk of a label, seed or
  coordinate); only for stores whose attrs say every chunk is written
  (``chunks_always_written``; older stores skip empty chunks);
- ``non-finite``: a ``done`` sample holds NaN or inf in an output the
  simulator declares finite (root attr ``finite_outputs``, see
  :attr:`popstore.Output.finite`; every ``role="input"`` map in older stores).

With ``repair=True`` the ``done`` flags of every writer block touched by a
problem in a per-sample variable the generator writes (outputs, labels,
seed, ``done``) are cleared, so that the next ``popstore generate`` remakes
exactly those blocks; since every sample's random numbers come from its
stored seed the repaired store is bit-identical to an undamaged one.
Problems elsewhere (coordinates, ``split``, ``label_stats``) are reported as
not repairable by ``generate``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from fsspec.core import url_to_fs

from popstore.codecs import CorruptChunkError
from popstore.lock import StoreLock
from popstore.store import Layout, SchemaError, StoreNotFoundError, check_attrs, store_exists, store_location

REGENERATED_ROLES = ("input", "diagnostic", "catalogue", "label")


@dataclass(frozen=True)
class Chunk:
    """One stored chunk (a shard in sharded arrays): its key in the store and the region it covers."""

    key: str
    selection: tuple[slice, ...]


def chunks_of(array: zarr.Array) -> Iterator[Chunk]:
    """Every chunk (outer chunk, i.e. shard, when sharded) of ``array`` with its key and region."""
    grid = array.metadata.chunk_grid.chunk_shape
    counts = [math.ceil(s / c) for s, c in zip(array.shape, grid)]
    for coords in itertools.product(*(range(n) for n in counts)):
        sel = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, grid, array.shape))
        yield Chunk(f"{array.path}/{array.metadata.encode_chunk_key(coords)}", sel)


def _regenerated(ds_attrs: dict, name: str) -> bool:
    return ds_attrs.get("role") in REGENERATED_ROLES or name in ("seed", "done")


@dataclass
class VerifyReport:
    """What :func:`verify` found: one row per problem, and the blocks cleared by ``repair``."""

    store: Path
    n_chunks: int
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["variable", "chunk", "samples", "problem", "repairable"]))
    repaired_blocks: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problems.empty

    def __str__(self) -> str:
        if self.ok:
            return f"{self.store}: {self.n_chunks} chunks checked, no problems"
        lines = [f"{self.store}: {self.n_chunks} chunks checked, {len(self.problems)} problems",
                 self.problems.to_string(index=False)]
        if self.repaired_blocks:
            lines.append(f"done cleared for blocks {self.repaired_blocks}: run `popstore generate` to remake them")
        elif self.problems["repairable"].any():
            lines.append("run `popstore verify --repair`, then `popstore generate`, to remake the damaged blocks")
        if not self.problems["repairable"].all():
            lines.append("problems marked not repairable need `popstore split` again (split, label_stats) "
                         "or a new store (coordinates)")
        return "\n".join(lines)


def _read_done(group: zarr.Group) -> np.ndarray:
    """The ``done`` flags, chunk by chunk: a corrupt chunk counts as not done (it is reported separately)."""
    array = group["done"]
    done = np.zeros(array.shape, dtype=bool)
    for chunk in chunks_of(array):
        try:
            done[chunk.selection] = array[chunk.selection]
        except CorruptChunkError:
            pass
    return done


def _samples(array: zarr.Array, sel: tuple[slice, ...]) -> slice | None:
    dims = array.metadata.dimension_names or ()
    return sel[0] if dims[:1] == ("sample",) else None


def verify(store: str | Path, repair: bool = False) -> VerifyReport:
    """Scrub ``store`` (a path or fsspec URL; see module docstring); with ``repair`` clear ``done`` of the
    damaged blocks (holding the store's lock, for a local store)."""
    if not store_exists(store):
        raise StoreNotFoundError(f"no store at {store}")
    loc = store_location(store)
    lock = StoreLock(Path(loc)) if repair and "://" not in loc else None
    if lock is not None:
        lock.acquire()
    try:
        return _verify(loc, repair)
    finally:
        if lock is not None:
            lock.release()


def _chunk_files(location: str):
    """``exists(key)`` for the chunk files of the store at ``location`` (a local path or URL), reading nothing."""
    fs, root = url_to_fs(location)
    return lambda key: fs.exists(f"{root}/{key}")


def _verify(path: str, repair: bool) -> VerifyReport:
    group = zarr.open_group(path, mode="r", zarr_format=3)
    exists = _chunk_files(path)
    attrs = dict(group.attrs)
    if "popstore_schema_version" not in attrs or "done" not in group:
        raise SchemaError(f"{path}: not a popstore store (no schema version or done flags)")
    check_attrs(attrs, str(path))
    per_chunk = int(attrs["samples_per_chunk"])
    layout = Layout(group["done"].shape[0], per_chunk, int(attrs.get("samples_per_shard", 0)) or per_chunk)
    always_written = bool(attrs.get("chunks_always_written", 0))
    finite_outputs = attrs.get("finite_outputs")
    if finite_outputs is None:  # stores older than the attr: the default of Output.finite (inputs are finite)
        finite_outputs = [name for name, a in group.arrays() if a.attrs.get("role") == "input"]
    finite_outputs = set(finite_outputs)
    done = _read_done(group)
    rows: list[dict] = []
    n_chunks = 0
    for name, array in sorted(group.arrays()):
        var_attrs = dict(array.attrs)
        finite = name in finite_outputs
        output = var_attrs.get("role") in ("input", "diagnostic", "catalogue")
        for chunk in chunks_of(array):
            n_chunks += 1
            samples = _samples(array, chunk.selection)
            problem = None
            has_done = samples is not None and bool(done[samples].any())
            if not exists(chunk.key):
                if always_written and name != "done" and (has_done or not output):
                    problem = "missing"
            else:
                try:
                    values = array[chunk.selection]
                except CorruptChunkError as err:
                    problem = f"corrupt: {str(err).split(' is corrupt: ', 1)[-1]}"
                else:
                    if finite and has_done:
                        bad = ~np.isfinite(values[done[samples]]).reshape(int(done[samples].sum()), -1).all(1)
                        if bad.any():
                            idx = np.flatnonzero(done[samples])[bad] + samples.start
                            problem = f"non-finite in done samples {idx.tolist()}"
            if problem:
                rows.append({"variable": name, "chunk": chunk.key,
                             "samples": f"{samples.start}-{samples.stop - 1}" if samples is not None else "-",
                             "problem": problem,
                             "repairable": samples is not None and _regenerated(var_attrs, name),
                             "_samples": samples})
    report = VerifyReport(path, n_chunks)
    if rows:
        table = pd.DataFrame(rows)
        report.problems = table.drop(columns="_samples")
        if repair:
            blocks = sorted({b for s in table.loc[table["repairable"], "_samples"]
                             for b in range(s.start // layout.block, math.ceil(s.stop / layout.block))})
            clear_done(path, layout, blocks)
            report.repaired_blocks = blocks
    return report


def clear_done(path: str | Path, layout: Layout, blocks: list[int]) -> None:
    """Set ``done = False`` for whole writer ``blocks`` (overwriting their ``done`` chunks unread)."""
    done = zarr.open_group(store_location(path), mode="r+", zarr_format=3)["done"]
    for b in blocks:
        region = layout.blocks()[b]
        done[region] = np.zeros(region.stop - region.start, dtype=bool)


def blocks_missing_chunks(path: str | Path, names: list[str], layout: Layout, done: np.ndarray) -> list[int]:
    """Writer blocks with ``done`` samples whose chunk files of ``names`` are absent (the cheap resume check).

    Only meaningful for stores with ``chunks_always_written``; looks at file
    names only, reads nothing.
    """
    loc = store_location(path)
    group = zarr.open_group(loc, mode="r", zarr_format=3)
    exists = _chunk_files(loc)
    bad: set[int] = set()
    for name in names:
        array = group[name]
        for chunk in chunks_of(array):
            s = chunk.selection[0]
            if done[s].any() and not exists(chunk.key):
                bad.update(range(s.start // layout.block, math.ceil(s.stop / layout.block)))
    return sorted(bad)
