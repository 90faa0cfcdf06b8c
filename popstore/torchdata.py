"""PyTorch access to a store: a chunk-aware map-style Dataset and its loader.

Random single-sample reads from a chunked store decompress a whole chunk per
sample (measured ~4x slower than loose ``.npy`` files, see
``benchmarks/bench_loading.py``). :class:`MapDataset` instead reads whole
chunks, keeps the most recent ones decoded in a per-process cache and serves
batches through ``__getitems__``; :class:`ChunkBatchSampler` shuffles the order
of chunks, then samples within a buffer of chunks, and hands every buffer to a
single DataLoader worker so each chunk is decompressed once per epoch.

Chunks are read by :class:`popstore.zarrchunks.ChunkReader`: the chunk's bytes
go through every codec of the array's own codec pipeline (checksums included)
without zarr's async machinery, into recycled arrays. Each batch from the
sampler names the chunks its worker will need a few batches later and the
worker's next batches (:class:`ChunkBatch`); the dataset decodes those chunks on
a pool of threads, one per core (Blosc and file reads release the GIL), so
reading overlaps the training step; with ``gather_ahead`` (the default on CUDA
machines) a batch thread also gathers the next batches from the decoded chunks,
and the training thread only claims finished batches. Each input of a chunk is
decoded straight into its own block of one array, and a batch takes every map
from there into its channel slot with one copy (never a stacked copy of the
chunk first). Uncompressed (checksummed) chunk files are not decoded: in a
stream that fits the cache budget the cache keeps them memory-mapped
(:meth:`popstore.zarrchunks.ChunkReader.map`, checksum checked once), so every
epoch gathers each sample with one copy out of the OS page cache, without a
system call; in a stream larger than the cache each shuffle buffer's chunk
files are read straight into the slots of its batches with ``os.preadv`` on the
read threads (:meth:`MapDataset.fill`), a sample costing one copy plus its
checksum. Batches and decoded
chunks reuse arrays that nothing holds any more, so memory is not faulted in afresh for every batch; on
CUDA machines the batch arrays are page-locked, so ``.to(device,
non_blocking=True)`` copies asynchronously.

Any Zarr store xarray can read works (explicit ``inputs``/``labels``); popstore
stores supply defaults. For distributed data-parallel training each rank's
sampler takes a disjoint share of the chunks (:class:`ChunkBatchSampler`).

The store is opened lazily in each process: a dataset holds only a path and
small index/label arrays, so it pickles for spawn/forkserver workers.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from operator import itemgetter
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import xarray as xr
import zarr
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from popstore.errors import UserError
from popstore.splits import SUBSETS, label_statistics
from popstore.store import STATISTICS, check_schema, input_names, label_names, store_location
from popstore.zarrchunks import ChunkReader

Normalize = Literal["minmax", "standard", "none"]
#: Default memory budget of the decoded-chunk cache, per process.
CACHE_BYTES = 2**30
#: Batch arrays kept for reuse in the training process (see :meth:`MapDataset.batch`).
BATCH_BUFFERS = 4
#: Batches gathered ahead on the batch thread, per process (see :meth:`MapDataset.prepare`).
PREPARE_BATCHES = 2
#: Most chunk files a process keeps memory-mapped (Linux allows 65,530 mappings per process by default);
#: beyond it uncompressed chunks are read into the cache's arrays, as compressed ones are decoded.
MAX_MAPPED = 2**14


def open_group(path: str | Path) -> zarr.Group:
    """The root group of a Zarr store, read-only: the one place this module opens a store."""
    try:
        return zarr.open_group(store_location(path), mode="r")
    except FileNotFoundError:  # zarr's GroupNotFoundError
        raise UserError(f"no Zarr store at {path}") from None


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _selection(ds: xr.Dataset, split: str | Sequence[int] | np.ndarray | None, split_variable: str,
               dim: str, where: str) -> np.ndarray:
    """Boolean mask along ``dim`` of the samples a dataset serves (see :class:`MapDataset`)."""
    n = ds.sizes[dim]
    selected = ds["done"].values.astype(bool) if "done" in ds.variables and ds["done"].dims == (dim,) \
        else np.ones(n, dtype=bool)
    if split is None:
        return selected
    if isinstance(split, str):
        if split in ds.variables and ds[split].dtype == bool and ds[split].dims == (dim,):
            return selected & ds[split].values
        if split_variable not in ds.variables:
            raise UserError(f"{where}: no variable {split_variable!r} to take split {split!r} from "
                            "(run popstore.split, name a boolean variable, or pass sample indices)")
        values = ds[split_variable].values
        if split not in SUBSETS and split not in set(values.tolist()):  # a typo ("training", "Train") is no subset
            raise UserError(f"{where}: split must be one of {list(SUBSETS)} or None (every done sample), a value of "
                            f"{split_variable!r} or a boolean variable; got {split!r}")
        return selected & (values == split)
    split = np.asarray(split)
    if split.dtype == bool:
        if split.shape != (n,):
            raise UserError(f"{where}: a boolean split needs {n} values, got shape {split.shape}")
        return selected & split
    if split.dtype.kind not in "iu" or split.ndim != 1 or (split.size and not 0 <= split.min() <= split.max() < n):
        raise UserError(f"{where}: split indices must be integers in [0, {n}), got {split.dtype} values")
    mask = np.zeros(n, dtype=bool)
    mask[split] = True
    return selected & mask


class MapDataset(Dataset):
    """Samples ``(x, y)`` of one split of a Zarr store.

    Parameters
    ----------
    store
        Path of a popstore store, or of any Zarr store xarray can open (then
        name ``inputs`` and ``labels``).
    split
        Which samples: ``"train"``, ``"valid"``, ``"test"`` (the values of
        ``split_variable``, written by :func:`popstore.split`); the name of a
        boolean variable along the sample dimension; an array of sample indices
        or a boolean mask; or ``None`` for every sample. Samples whose ``done``
        flag is false (popstore stores being generated) are left out.
    inputs
        Input variables stacked as channels, in this order (default: every
        ``role="input"`` variable). Dims of a variable beyond its last
        ``spatial_ndim`` are folded into channels (e.g. ``survey``). The sample
        dimension must be each variable's first.
    labels
        Label variables along the sample dimension (default: every ``role="label"`` variable).
    normalize
        ``"minmax"`` maps each label's training range to [0, 1],
        ``"standard"`` subtracts the training mean and divides by the training
        std, ``"none"`` keeps physical units.
    transform
        Optional callable applied to each batch of inputs ``(B, C, ...)``
        (e.g. log10 and standardisation).
    spatial_ndim
        Number of trailing dims of each variable that are not channels.
    cache_chunks
        Chunks kept decoded per process; ``None`` keeps as many as fit in
        :data:`CACHE_BYTES`, ``0`` disables the cache. Uncompressed chunks
        are kept memory-mapped instead (the OS page cache holds their bytes);
        a stream larger than this budget reads them straight into the batches
        (see :meth:`fill`).
    read_threads
        Threads per process that decode the chunks named by
        :attr:`ChunkBatch.read_ahead` (``None``: one per core; ``0``: read
        and gather only on demand, in the calling thread).
    gather_ahead
        Gather the batches named by :attr:`ChunkBatch.prepare` on a further
        thread (needs ``read_threads``), so the training thread only claims
        finished batches: what a GPU training loop wants. A CPU training step
        uses every core itself, so there the overlap gains little and the
        thread hand-offs can cost CPU (``benchmarks/bench_loading.py`` prints
        streaming with and without it). Default: when CUDA is available.
    split_variable
        The variable holding subset names for a string ``split``.
    label_stats
        Label statistics ``(L, 4)``: mean, std, min, max per label, used for
        ``normalize``. Default: the store's ``label_stats`` (training split)
        if it has them for these labels, else computed from the samples whose
        ``split_variable`` is ``"train"``, else from the selected samples (pass
        ``label_stats=train.stats`` to normalise a validation set alike).
    pin_memory
        Put batches made in the training process in page-locked memory, so
        copies to the GPU can be asynchronous (default: when CUDA is available).
    """

    def __init__(
        self,
        store: str | Path,
        split: str | Sequence[int] | np.ndarray | None = "train",
        inputs: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        normalize: Normalize = "minmax",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        spatial_ndim: int = 2,
        cache_chunks: int | None = None,
        read_threads: int | None = None,
        split_variable: str = "split",
        label_stats: np.ndarray | None = None,
        pin_memory: bool | None = None,
        gather_ahead: bool | None = None,
    ) -> None:
        group = open_group(store)
        ds = xr.open_zarr(group.store_path, consolidated=False, chunks=None)
        if "popstore_schema_version" in ds.attrs:
            check_schema(ds, str(store))
        self.path = str(store)
        self.inputs = list(inputs) if inputs is not None else input_names(ds)
        self.labels = list(labels) if labels is not None else label_names(ds)
        missing = [v for v in self.inputs + self.labels if v not in ds.variables]
        if missing:
            raise UserError(f"{store}: no variables {missing}; data variables: {list(ds.data_vars)}")
        if not self.inputs or not self.labels:
            raise UserError(f"{store}: no {'input' if not self.inputs else 'label'} variables given or marked "
                            f"(role attribute); pass inputs=[...] and labels=[...] from {list(ds.data_vars)}")
        self.sample_dim = ds[self.inputs[0]].dims[0]
        wrong = [v for v in self.inputs if ds[v].dims[:1] != (self.sample_dim,) or ds[v].ndim <= spatial_ndim]
        wrong += [v for v in self.labels if ds[v].dims != (self.sample_dim,)]
        if wrong:
            raise UserError(f"{store}: variables {wrong} do not run along {self.sample_dim!r} first "
                            f"(inputs: ({self.sample_dim}, ..., {spatial_ndim} map dims); labels: ({self.sample_dim},))")
        shapes = {v: ds[v].shape[1:] for v in self.inputs}
        spatial = {s[len(s) - spatial_ndim:] for s in shapes.values()}
        if len(spatial) != 1:
            raise UserError(f"{store}: inputs have different map shapes: {shapes}")
        self.map_shape = spatial.pop()
        #: channels of each input (its dims between the sample dim and the map dims, folded)
        self.input_channels = [int(np.prod(s[:len(s) - spatial_ndim])) for s in shapes.values()]
        self.channels = [f"{v}[{i}]" if k > 1 else v for v, k in zip(self.inputs, self.input_channels)
                         for i in range(k)]
        self.split = split if isinstance(split, str) or split is None else "indices"
        selected = _selection(ds, split, split_variable, self.sample_dim, str(store))
        self.indices = np.flatnonzero(selected)
        self.chunk = int(group[self.inputs[0]].chunks[0])
        # item (row r, channel c) of a decoded chunk is _item_start[c] + r * _item_step[c] (see _decode_chunk)
        self._item_step = np.repeat(self.input_channels, self.input_channels)
        first = np.repeat(np.cumsum([0, *self.input_channels[:-1]]), self.input_channels)
        self._item_start = first * self.chunk + np.arange(len(self.channels)) - first
        table = np.stack([ds[n].values for n in self.labels], axis=1).astype(np.float64)
        self.stats = self._training_stats(ds, table, selected, split_variable, label_stats)
        self.normalize = normalize
        self.y = torch.from_numpy(self.normalize_labels(table[self.indices])).float()
        self.transform = transform
        self.spatial_ndim = spatial_ndim
        chunk_bytes = 4 * self.chunk * len(self.channels) * int(np.prod(self.map_shape))
        self.cache_chunks = max(1, CACHE_BYTES // chunk_bytes) if cache_chunks is None else cache_chunks
        self.read_threads = _cores() if read_threads is None else read_threads
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.gather_ahead = torch.cuda.is_available() if gather_ahead is None else gather_ahead
        self._reset_process_state()

    # -- labels ------------------------------------------------------------
    def _training_stats(self, ds: xr.Dataset, table: np.ndarray, selected: np.ndarray, split_variable: str,
                        given: np.ndarray | None) -> np.ndarray:
        if given is not None:
            given = np.asarray(given, dtype=np.float64)
            if given.shape != (len(self.labels), len(STATISTICS)):
                raise UserError(f"label_stats must have shape ({len(self.labels)}, {len(STATISTICS)}) "
                                f"({', '.join(STATISTICS)} per label), got {given.shape}")
            return given
        if "label_stats" in ds and set(self.labels) <= set(ds["label_stats"].label.values.tolist()):
            return ds["label_stats"].sel(subset="train", label=self.labels, statistic=list(STATISTICS)).values
        train = selected
        if split_variable in ds.variables and ds[split_variable].dims == (self.sample_dim,):
            train = ds[split_variable].values == "train"
        if not train.any():
            raise UserError(f"{self.path}: no samples to compute label statistics from; pass label_stats=")
        return label_statistics(table[train])

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        mean, std, lo, hi = self.stats.T
        if self.normalize == "minmax":
            return lo, hi - lo
        if self.normalize == "standard":
            return mean, std
        if self.normalize == "none":
            return np.zeros_like(mean), np.ones_like(std)
        raise UserError(f"normalize must be 'minmax', 'standard' or 'none', got {self.normalize!r}")

    def normalize_labels(self, y: np.ndarray) -> np.ndarray:
        """Physical labels (n, L) -> network targets."""
        offset, scale = self._scale()
        return (np.asarray(y, dtype=np.float64) - offset) / scale

    def denormalize_labels(self, y: np.ndarray | torch.Tensor) -> np.ndarray:
        """Network targets (n, L) -> physical labels (the exact inverse of :meth:`normalize_labels`)."""
        offset, scale = self._scale()
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        return y.astype(np.float64) * scale + offset

    def denormalize_sigma(self, sigma: np.ndarray | torch.Tensor) -> np.ndarray:
        """Standard deviations in target units -> physical units."""
        sigma = sigma.detach().cpu().numpy() if isinstance(sigma, torch.Tensor) else np.asarray(sigma)
        return sigma.astype(np.float64) * self._scale()[1]


    # -- per-process store access ---------------------------------------------
    def _reset_process_state(self) -> None:
        self._pid: int | None = None
        self._readers: dict[str, ChunkReader] = {}
        self._cache: OrderedDict[int, np.ndarray | tuple[list[np.ndarray], ...]] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()  # guards _cache and _pending (the batch thread reads chunks too)
        self._assembler: ThreadPoolExecutor | None = None
        self._prepared: OrderedDict[tuple[int, ...], Future] = OrderedDict()
        self._filling: OrderedDict[tuple[int, ...], _Filling] = OrderedDict()
        self._scratch = threading.local()  # per read thread: rows of a chunk that no batch of a group takes
        self._direct = self._mapped = False
        self._fill_limit = 0  # unclaimed batches kept by fill: three of the largest group's
        self._batch_arrays = _ArrayPool(BATCH_BUFFERS + PREPARE_BATCHES,
                                        pinned=self.pin_memory and get_worker_info() is None)
        # cached + decoding ahead + in use: evicted chunks are decoded into again
        in_flight = 2 * max(self.read_threads, 1) + 8
        self._chunk_arrays = _ArrayPool(self.cache_chunks + in_flight)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_pid=None, _readers={}, _cache=OrderedDict(), _pool=None, _pending={}, _lock=None,
                     _assembler=None, _prepared=OrderedDict(), _batch_arrays=None, _chunk_arrays=None,
                     _filling=OrderedDict(), _scratch=None, _direct=False, _mapped=False)
        return state

    def _open(self) -> None:
        if self._pid != os.getpid():  # first use in this process (or a forked worker): nothing inherited
            self._reset_process_state()
            group = open_group(self.path)
            self._readers = {v: ChunkReader(group[v]) for v in self.inputs}
            if self.read_threads > 0:
                self._pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix="popstore-read")
            if self.read_threads > 0 and self.gather_ahead:
                # one thread gathers prepared batches in order; it waits on the read pool, never the reverse
                self._assembler = ThreadPoolExecutor(1, thread_name_prefix="popstore-batch")
            # uncompressed float32 chunks, chunked alike: mapped, not decoded (up to MAX_MAPPED files);
            # read-group chunk files go straight into batches (fill)
            raw = all(r.raw_file and r.chunk == self.chunk and r.dtype == np.float32 for r in self._readers.values())
            held = min(self.cache_chunks, len(np.unique(self.indices // self.chunk))) * len(self.inputs)
            self._mapped = raw and held <= MAX_MAPPED
            self._direct = self._pool is not None and raw
            self._pid = os.getpid()

    def _read_part(self, v: str, c: int, out: np.ndarray) -> None:
        """Rows of store chunk ``c`` of input ``v`` into ``out`` ``(chunk, channels of v, *map_shape)``."""
        reader = self._readers[v]
        n = min(self.chunk, reader.array.shape[0] - c * self.chunk)
        if reader.chunk == self.chunk and reader.dtype == np.float32:
            a = reader.read(c, lambda shape, dtype: out.reshape(shape))  # decoded in place where it can
            if np.may_share_memory(a, out):
                return
        else:  # chunked differently from the first input, or not float32: zarr assembles the rows
            a = np.asarray(reader.array[c * self.chunk:c * self.chunk + n], dtype=np.float32)
        out[:n] = a.reshape(n, -1, *self.map_shape)

    def _decode_chunk(self, c: int) -> np.ndarray | tuple[list[np.ndarray], ...]:
        """Store chunk ``c`` decoded: one float32 array of ``chunk x C`` maps, in which each input
        ``v`` fills its own block ``(chunk, channels of v, *map_shape)``, one after the other (the
        codecs decode straight into it; the channels are interleaved only when a batch is gathered).
        Uncompressed chunk files are mapped instead (:meth:`~popstore.zarrchunks.ChunkReader.map`):
        per input, the list of its samples: read-only arrays ``(1, channels of v, *map_shape)``."""
        self._open()
        if self._mapped:
            return tuple(list(self._readers[v].map(c).reshape(self.chunk, 1, k, *self.map_shape))
                         for v, k in zip(self.inputs, self.input_channels))
        out = self._chunk_arrays.empty((self.chunk * len(self.channels), *self.map_shape))
        start = 0
        for v, k in zip(self.inputs, self.input_channels):
            self._read_part(v, c, out[start:start + self.chunk * k].reshape(self.chunk, k, *self.map_shape))
            start += self.chunk * k
        return out

    def read_ahead(self, chunks: Iterable[int]) -> None:
        """Start decoding store chunks on the background threads (those not cached or already started)."""
        self._open()
        if self._pool is None:
            return
        with self._lock:
            for c in map(int, chunks):
                if c not in self._cache and c not in self._pending:
                    self._pending[c] = self._pool.submit(self._decode_chunk, c)

    def fill(self, groups: Iterable[ReadGroup]) -> bool:
        """Start reading the chunk files of shuffle buffers straight into their batches' arrays.

        For each :class:`ReadGroup`, every chunk file is read with ``os.preadv`` on the read threads,
        each sample's bytes going to its slot in the batch that takes it
        (:meth:`popstore.zarrchunks.ChunkReader.read_into`: one copy per sample, the crc32c checked over
        the pieces before a batch of the chunk can be claimed); rows no batch takes go to scratch memory.
        :meth:`batch` claims such a batch once all its chunks are in. :class:`ChunkBatchSampler` names
        read groups only for streams larger than the cache budget (a stream that fits is mapped into the
        cache and gathered, see :meth:`_decode_chunk`). At most three groups' batches are kept unclaimed
        (older ones, of an epoch left early, are dropped). Returns whether this dataset reads this batch
        this way: uncompressed float32 inputs chunked alike, with ``read_threads``, and read groups named
        now or batches still filling.
        """
        self._open()
        if not self._direct or not (groups or self._filling):
            return False
        for group in groups:
            self._fill_limit = max(self._fill_limit, 3 * len(group.batches) + 1)  # (groups differ in size)
            self._batch_arrays.size = max(self._batch_arrays.size,
                                          BATCH_BUFFERS + PREPARE_BATCHES + self._fill_limit)
            targets: dict[int, list[tuple[_Filling, int, np.ndarray]]] = {c: [] for c in group.chunks}
            for positions in group.batches:
                sample = self.indices[np.asarray(positions, dtype=np.int64)]
                chunk_of = sample // self.chunk
                starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
                filling = self._filling.get(positions)
                if filling is None:  # (a batch straddling two buffers is named by both)
                    filling = self._filling[positions] = _Filling(positions, self._batch_tensor(len(sample)),
                                                                  chunk_of[starts].tolist(), self._lock)
                for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(sample)]):
                    c = int(chunk_of[a])
                    if c in targets:
                        targets[c].append((filling, a, sample[a:b] - c * self.chunk))
            for c, dests in targets.items():
                if dests:
                    self._pool.submit(self._read_slots, c, dests)
            while len(self._filling) > self._fill_limit:  # never claimed (an epoch left early)
                self._filling.popitem(last=False)
        return True

    def _read_slots(self, c: int, dests: list[tuple["_Filling", int, np.ndarray]]) -> None:
        """Chunk ``c`` of every input read into the batch slots ``dests`` (filling batch, first slot,
        chunk rows of its samples) by :meth:`~popstore.zarrchunks.ChunkReader.read_into`, then those
        batches told that the chunk arrived, or that it failed (see :meth:`fill`)."""
        spare = getattr(self._scratch, "rows", None)
        if spare is None:
            spare = self._scratch.rows = np.empty((self.chunk * max(self.input_channels), *self.map_shape),
                                                  dtype=np.float32)
        channel = 0
        try:
            for v, k in zip(self.inputs, self.input_channels):
                pieces = list(spare[:self.chunk * k].reshape(self.chunk, k, *self.map_shape))
                taken, repeats = set(), []
                for filling, a, chunk_rows in dests:
                    x = filling.x.numpy()
                    for slot, r in enumerate(chunk_rows.tolist(), start=a):
                        if r not in taken:
                            pieces[r] = x[slot, channel:channel + k]
                            taken.add(r)
                        else:  # a sample served twice (a padded stream): copied once it is read
                            repeats.append((x[slot, channel:channel + k], r))
                self._readers[v].read_into(c, pieces)
                for piece, r in repeats:
                    piece[...] = pieces[r]
                channel += k
        except Exception as err:  # a corrupt chunk: the batches it feeds raise it when claimed
            for filling, _, _ in dests:
                filling.failed(err)
            return
        for filling, _, _ in dests:
            filling.arrived(c)

    def _chunks(self, chunks: Sequence[int], then: Iterable[int] = ()) -> dict[int, np.ndarray]:
        """Decoded store chunks by index: from the cache, from a read started earlier, or read now
        (several missing chunks are decoded concurrently); the chunks ``then`` start decoding next."""
        chunks = [int(c) for c in chunks]
        self.read_ahead([*chunks, *then])
        with self._lock:
            found = {c: self._cache.get(c, self._pending.get(c)) for c in chunks}
        out = {c: f.result() if isinstance(f, Future) else f if f is not None else self._decode_chunk(c)
               for c, f in found.items()}
        with self._lock:
            for c in chunks:
                self._pending.pop(c, None)
                if self.cache_chunks > 0:
                    self._cache[c] = out[c]
                    self._cache.move_to_end(c)
            while len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        return out

    def read_inputs(self, positions: Sequence[int] | np.ndarray, out: np.ndarray | None = None,
                    read_ahead: Iterable[int] = ()) -> np.ndarray:
        """Input arrays ``(n, C, ...)`` (float32) of dataset positions, reading each chunk once.

        Positions that share a chunk and follow each other (as in :class:`ChunkBatchSampler`
        batches) are copied in one go. ``out``, if given, is filled in place. The store chunks
        ``read_ahead`` start decoding in the background once this call's own are under way.
        """
        sample = self.indices[np.asarray(positions, dtype=np.int64)]
        chunk_of = sample // self.chunk
        if out is None:
            out = np.empty((len(sample), len(self.channels), *self.map_shape), dtype=np.float32)
        elif not (out.flags.c_contiguous and out.dtype == np.float32):
            raise UserError("read_inputs: out must be a C-contiguous float32 array")
        if not len(sample):
            return out
        new_run = np.empty(len(sample), dtype=bool)  # runs of positions in one chunk
        new_run[0] = True
        np.not_equal(chunk_of[1:], chunk_of[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        runs = chunk_of[starts].tolist()
        decoded = self._chunks(runs, then=read_ahead)
        # every map of the batch is one item, taken from its item of the decoded chunk
        items = (self._item_start + (sample - chunk_of * self.chunk)[:, None] * self._item_step).ravel()
        n_c = len(self.channels)
        target = _as_items(out, len(out) * n_c)
        for c, a, b in zip(runs, starts.tolist(), [*starts[1:].tolist(), len(sample)]):
            if isinstance(decoded[c], tuple):  # mapped chunk files: each input's maps into its channel slots
                self._gather_mapped(decoded[c], sample[a:b] - c * self.chunk, out[a:b])
                continue
            # one memcpy per map, straight into the batch: no temporary, no stacked copy of the chunk
            np.take(_as_items(decoded[c], self.chunk * n_c), items[a * n_c:b * n_c], out=target[a * n_c:b * n_c],
                    mode="clip")
        return out

    def _gather_mapped(self, mapped: tuple[list[np.ndarray], ...], rows: np.ndarray, out: np.ndarray) -> None:
        """Chunk ``rows`` of mapped chunk files (:meth:`_decode_chunk`) into ``out`` ``(len(rows), C, ...)``:
        one memcpy per sample and input from the page cache straight into its channel slots."""
        rows = rows.tolist()
        pick = itemgetter(*rows) if len(rows) > 1 else lambda samples: (samples[rows[0]],)
        channel = 0
        for samples, k in zip(mapped, self.input_channels):
            np.concatenate(pick(samples), out=out[:, channel:channel + k])
            channel += k

    # -- torch Dataset protocol -------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([i])
        return x[0], y[0]

    def batch(self, positions: Sequence[int], read_ahead: Iterable[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``(x, y)`` of several positions, inputs transformed (``read_ahead``: see :meth:`read_inputs`).

        A batch named earlier to :meth:`fill` is taken as its chunk files were read into it, one
        named to :meth:`prepare` as the batch thread gathered it.
        In a DataLoader worker ``x`` lives in shared memory, as torch's own collate does, so
        sending it to the training process copies nothing. In the training process ``x`` reuses
        the array of one of the last :data:`BATCH_BUFFERS` batches once nothing holds that batch
        any more (no tensor, view or array of it), instead of faulting in fresh pages every batch.
        """
        self._open()  # per-process state first: a new process starts with no arrays to reuse
        key = tuple(map(int, positions))
        filling = self._filling.pop(key, None) if self._filling else None
        prepared = filling.done if filling is not None else self._prepared.pop(key, None) if self._prepared else None
        if prepared is None:
            x = self._gather(positions, read_ahead)
        else:
            self.read_ahead(read_ahead)
            x = prepared.result()
        if self.transform is not None:
            x = self.transform(x)
        return x, self.y[np.asarray(positions, dtype=np.int64)]

    def _batch_tensor(self, n: int) -> torch.Tensor:
        """An empty batch of ``n`` samples' inputs: a recycled array (training process) or shared memory (worker)."""
        shape = (n, len(self.channels), *self.map_shape)
        if get_worker_info() is None:
            return torch.from_numpy(self._batch_arrays.empty(shape))  # the tensor holds the array until freed
        return _shared_tensor(shape)

    def _gather(self, positions: Sequence[int], read_ahead: Iterable[int] = ()) -> torch.Tensor:
        """Untransformed inputs of a batch, gathered from decoded chunks."""
        x = self._batch_tensor(len(positions))
        self.read_inputs(positions, out=x.numpy(), read_ahead=read_ahead)
        return x

    def prepare(self, batches: Iterable[Sequence[int]]) -> None:
        """Start gathering ``batches`` (lists of positions) on the batch thread, in order, so that
        :meth:`batch` finds them ready: gathering overlaps the training step. At most
        :data:`PREPARE_BATCHES` + 1 unclaimed batches (those named ahead and the one about to be
        claimed) are kept; older ones are dropped."""
        self._open()
        if self._assembler is None:
            return
        for positions in batches:
            key = tuple(map(int, positions))
            if key not in self._prepared and key not in self._filling:  # (a filling batch is read already)
                self._prepared[key] = self._assembler.submit(self._gather, key)
        while len(self._prepared) > PREPARE_BATCHES + 1:  # never claimed (an epoch left early)
            self._prepared.popitem(last=False)[1].cancel()

    def __getitems__(self, positions: Sequence[int]) -> "_Batch":
        # shuffle buffers read straight into their batches replace decoding chunks ahead
        read_ahead = () if self.fill(getattr(positions, "fill", ())) else getattr(positions, "read_ahead", ())
        self.read_ahead(read_ahead)  # decoding starts before the batch thread needs the chunks
        self.prepare(getattr(positions, "prepare", ()))
        return _Batch(*self.batch(positions, read_ahead))

    def chunk_groups(self) -> list[np.ndarray]:
        """Dataset positions grouped by the store chunk that holds them."""
        chunk_of = self.indices // self.chunk
        bounds = np.flatnonzero(np.diff(chunk_of)) + 1
        return np.split(np.arange(len(self.indices)), bounds)


class _Filling:
    """A batch being read straight from chunk files (:meth:`MapDataset.fill`): its positions and
    tensor ``x``, the store chunks still to arrive and ``done``, a future that gives ``x`` once none is
    left (or raises the error of a chunk that failed)."""

    def __init__(self, positions: tuple[int, ...], x: torch.Tensor, chunks: Iterable[int],
                 lock: threading.Lock) -> None:
        self.positions, self.x, self.waiting, self._lock = positions, x, set(chunks), lock
        self.done: Future = Future()

    def arrived(self, c: int) -> None:
        """Chunk ``c``'s samples are in their slots."""
        with self._lock:
            self.waiting.discard(c)
            if not self.waiting and not self.done.done():
                self.done.set_result(self.x)

    def failed(self, err: Exception) -> None:
        """A chunk of this batch could not be read: claiming it raises ``err``."""
        with self._lock:
            if not self.done.done():
                self.done.set_exception(err)


class _ArrayPool:
    """Float32 arrays for reuse. :meth:`empty` hands out again an array that nothing but the pool
    holds any more (no tensor made by ``torch.from_numpy``, view, cache entry or caller): on
    machines where fresh pages are expensive to fault in, this keeps batches and decoded chunks
    in memory that is already mapped. Keeps the ``size`` most recently handed-out arrays;
    ``pinned`` ones live in page-locked memory (CUDA's host allocator)."""

    def __init__(self, size: int, pinned: bool = False) -> None:
        self.size, self.pinned = size, pinned
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` with undefined values, recycled when one is free."""
        with self._lock:
            for i in range(len(self._arrays)):
                a = self._arrays[i]
                if a.shape == shape and sys.getrefcount(a) == 3:  # this list, `a`, getrefcount's argument
                    self._arrays.insert(0, self._arrays.pop(i))
                    return a
            if self.pinned:
                a = torch.empty(int(np.prod(shape)), dtype=torch.float32, pin_memory=True).numpy().reshape(shape)
            else:
                a = np.empty(shape, dtype=np.float32)
            self._arrays = [a, *self._arrays[:self.size - 1]]
            return a


def _as_items(a: np.ndarray, n: int) -> np.ndarray:
    """Contiguous ``a`` viewed as ``n`` opaque items of equal size (a gather copies each with one memcpy)."""
    return a.reshape(n, -1).view(np.dtype((np.void, a.nbytes // n)))[:, 0]


def _shared_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float32 tensor in shared memory."""
    proto = torch.empty(0, dtype=torch.float32)
    storage = proto._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
    return proto.new(storage).resize_(shape)


class _Batch(Sequence):
    """A batch read in one go. It behaves as the list of ``(x_i, y_i)`` that torch's default collate
    expects, and :func:`collate` passes its stacked ``x`` and ``y`` on without copying them again."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.x[i], self.y[i]


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function of :func:`make_loader`: stacked batches pass through, others use torch's default."""
    if isinstance(batch, _Batch):
        return batch.x, batch.y
    return default_collate(batch)


class ReadGroup(NamedTuple):
    """One shuffle buffer of a :class:`ChunkBatchSampler` stream, for :meth:`MapDataset.fill`:
    its store ``chunks`` and the ``batches`` (tuples of dataset positions, grouped by chunk) that hold
    its samples."""

    chunks: tuple[int, ...]
    batches: tuple[tuple[int, ...], ...]


class ChunkBatch(list):
    """Dataset positions of one batch (a list), grouped by store chunk, with :attr:`read_ahead`:
    the store chunks the same worker reads a few batches later, which :class:`MapDataset`
    starts decoding in the background, :attr:`prepare`: the positions of the same worker's
    next batches, which it gathers in the background, and :attr:`fill`: the shuffle buffers
    (:class:`ReadGroup`) whose chunk files it reads straight into their batches. It pickles,
    so the hints reach DataLoader workers."""

    def __init__(self, positions: Iterable[int], read_ahead: Iterable[int] = (),
                 prepare: Iterable[Sequence[int]] = (), fill: Iterable[ReadGroup] = ()) -> None:
        super().__init__(positions)
        self.read_ahead = tuple(read_ahead)
        self.prepare = tuple(tuple(p) for p in prepare)
        self.fill = tuple(fill)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: as given, else from an initialised ``torch.distributed`` group, else ``(0, 1)``."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    if not 0 <= rank < world_size:
        raise UserError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    return rank, world_size


def _deal(sizes: np.ndarray, n_slots: int, rng: np.random.Generator) -> np.ndarray:
    """Slot of each chunk: chunks in random order, each to the slot holding the fewest samples so far."""
    slot = np.empty(len(sizes), dtype=np.int64)
    load = np.zeros(n_slots, dtype=np.int64)
    for c in rng.permutation(len(sizes)):  # one step per chunk, not per sample
        slot[c] = np.argmin(load)
        load[slot[c]] += sizes[c]
    return slot


class ChunkBatchSampler(Sampler[ChunkBatch]):
    """Batches that keep reads chunk-aligned, for one rank of a distributed job.

    Chunks are dealt once (with ``seed``) to ``world_size * num_workers``
    streams, balancing their sample counts: rank ``r`` owns streams
    ``r * num_workers ...``, one per DataLoader worker, so the ranks' shares of
    chunks are disjoint and fixed across epochs (each process's chunk cache stays
    useful). Each epoch, every stream shuffles the order of its chunks, cuts it
    into buffers of ``buffer_chunks`` chunks, shuffles the samples inside each
    buffer and cuts batches; the streams' batches are interleaved in the order
    DataLoader dispatches them to workers, so each worker reads, decodes and
    caches its own chunks only. Inside a batch the positions are grouped by chunk
    (the order within a batch does not change a gradient), and each batch names
    the chunks of the batch one buffer ahead in its stream as
    :attr:`ChunkBatch.read_ahead` and the batch :data:`PREPARE_BATCHES` ahead
    as :attr:`ChunkBatch.prepare`.

    With ``world_size > 1`` every stream of every rank serves the same number of
    samples, so all ranks run the same number of batches (DDP needs this):
    ``drop_last=False`` pads a short stream with samples drawn again from its
    own last buffer (every sample is seen at least once per epoch; the padding
    is less than one chunk per stream), ``drop_last=True`` drops the surplus
    samples of the longer streams (those are not seen that epoch) and the last
    partial batch. ``rank`` and ``world_size`` default to those of an
    initialised ``torch.distributed`` process group.
    """

    def __init__(self, dataset: MapDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 buffer_chunks: int = 4, num_workers: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if batch_size < 1 or buffer_chunks < 1:
            raise UserError("batch_size and buffer_chunks must be >= 1")
        self.groups = dataset.chunk_groups()
        self.chunk_of = dataset.indices // dataset.chunk
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.buffer_chunks, self.n_streams, self.drop_last = buffer_chunks, max(num_workers, 1), drop_last
        self.rank, self.world_size = _distributed(rank, world_size)
        if len(self.groups) < self.world_size * self.n_streams and self.world_size > 1:
            raise UserError(f"{len(self.groups)} chunks cannot be shared among {self.world_size} ranks x "
                            f"{self.n_streams} workers; use fewer workers or smaller chunks")
        self.lookahead = max(1, -(-buffer_chunks * dataset.chunk // batch_size))  # batches per buffer
        self.epoch = 0
        # chunk -> stream assignment is fixed for all epochs, so caches stay warm
        sizes = np.array([len(g) for g in self.groups], dtype=np.int64)
        self.stream_of = _deal(sizes, self.world_size * self.n_streams, np.random.default_rng(self.seed))
        load = np.bincount(self.stream_of, weights=sizes, minlength=self.world_size * self.n_streams).astype(np.int64)
        #: samples per stream and epoch (``None``: as many as the stream holds)
        self.per_stream = None if self.world_size == 1 else int(load.min() if drop_last else load.max())
        #: whether each process's cache budget holds all chunks of its stream (else batches name :class:`ReadGroup`)
        self.keep = dataset.cache_chunks >= np.bincount(self.stream_of).max(initial=0)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose shuffle comes next (it advances by one per iteration)."""
        self.epoch = epoch

    def _stream(self, k: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple[list[int], range]]]:
        """The batches of stream ``k`` this epoch, and its buffers: the chunks of each and the
        indices of the batches that hold its samples (a batch can straddle two buffers)."""
        chunks = np.flatnonzero(self.stream_of == k)
        if self.shuffle:
            chunks = rng.permutation(chunks)
        buffers = [np.concatenate([self.groups[g] for g in chunks[i:i + self.buffer_chunks]])
                   for i in range(0, len(chunks), self.buffer_chunks)]
        buffers = [rng.permutation(b) if self.shuffle else b for b in buffers]
        pos = np.concatenate(buffers) if buffers else np.empty(0, dtype=np.int64)
        ends = np.cumsum([len(b) for b in buffers], dtype=np.int64)
        if self.per_stream is not None:
            pad = self.per_stream - len(pos)
            pos = np.concatenate([pos, np.resize(buffers[-1], max(pad, 0))])[:self.per_stream]
            ends[-1] = max(ends[-1], len(pos))  # the padding repeats samples of the last buffer
        n_full = len(pos) // self.batch_size
        batches = np.split(pos[:n_full * self.batch_size], n_full) if n_full else []
        if not self.drop_last and len(pos) % self.batch_size:
            batches.append(pos[n_full * self.batch_size:])
        served = sum(map(len, batches))
        starts = [0, *np.minimum(ends[:-1], served).tolist()]
        spans = [(chunks[i * self.buffer_chunks:(i + 1) * self.buffer_chunks].tolist(),
                  range(lo // self.batch_size, (hi - 1) // self.batch_size + 1))
                 for i, (lo, hi) in enumerate(zip(starts, np.minimum(ends, served).tolist())) if lo < hi]
        return [b[np.argsort(self.chunk_of[b], kind="stable")] for b in batches], spans

    def _streams(self) -> list[tuple[list[np.ndarray], list[tuple[list[int], range]]]]:
        """This rank's streams this epoch, as :meth:`_stream` (the same shuffles on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = [self._stream(k, rng) for k in range(self.world_size * self.n_streams)]
        return streams[self.rank * self.n_streams:(self.rank + 1) * self.n_streams]

    def _batches(self) -> list[list[np.ndarray]]:
        """This rank's streams of batches this epoch."""
        return [batches for batches, _ in self._streams()]

    def _with_read_ahead(self, batches: list[np.ndarray], spans: list[tuple[list[int], range]]) -> list[ChunkBatch]:
        """Batch ``i`` of a stream names the chunks of batch ``i + lookahead`` (the first: all up to it),
        batch ``i + PREPARE_BATCHES`` to gather (the first: all up to it) and, if it is the first batch
        of buffer ``k`` of a stream larger than the cache budget, buffer ``k + 1`` as a :class:`ReadGroup`
        (the first batch: buffers 0 and 1)."""
        chunks = [np.unique(self.chunk_of[b]) for b in batches]
        ahead = [chunks[i + self.lookahead] if i + self.lookahead < len(chunks) else () for i in range(len(chunks))]
        if chunks:
            ahead[0] = np.unique(np.concatenate(chunks[1:self.lookahead + 1] or [np.empty(0, dtype=np.int64)]))
        lists = [b.tolist() for b in batches]
        prepare = [lists[1:PREPARE_BATCHES + 1] if i == 0 else lists[i + PREPARE_BATCHES:i + PREPARE_BATCHES + 1]
                   for i in range(len(lists))]
        fill: list[list[ReadGroup]] = [[] for _ in lists]
        for k, (chunks_k, held) in enumerate(() if self.keep else spans):
            fill[spans[k - 1][1][0] if k else 0].append(
                ReadGroup(tuple(chunks_k), tuple(tuple(lists[j]) for j in held)))
        return [ChunkBatch(b, map(int, a), p, f) for b, a, p, f in zip(lists, ahead, prepare, fill)]

    def __iter__(self) -> Iterator[ChunkBatch]:
        streams = [self._with_read_ahead(*s) for s in self._streams()]
        self.epoch += 1
        for i in range(max(map(len, streams), default=0)):
            for s in streams:
                if i < len(s):
                    yield s[i]

    def __len__(self) -> int:
        return sum(map(len, self._batches()))

    def chunks_per_batch(self) -> float:
        """Mean number of store chunks a batch of the next epoch mixes (shuffling quality)."""
        return float(np.mean([len(np.unique(self.chunk_of[b])) for s in self._batches() for b in s]))


def make_loader(dataset: MapDataset, batch_size: int = 64, shuffle: bool = True, num_workers: int = 0,
                seed: int = 0, buffer_chunks: int = 4, drop_last: bool = False, rank: int | None = None,
                world_size: int | None = None, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`ChunkBatchSampler` (extra kwargs go to DataLoader).

    ``num_workers=0`` (the default) reads in the training process, with the dataset's
    ``read_threads`` decoding ahead (and, with ``gather_ahead``, its batch thread gathering the next
    batches) while the training step runs; worker processes add the cost of moving every batch
    between processes (``benchmarks/bench_loading.py``), so they pay off only when a
    ``transform`` is expensive. ``rank``/``world_size`` (default: from ``torch.distributed``)
    give this process its share of the chunks; see :class:`ChunkBatchSampler` for how
    ranks are kept to equal batch counts. Batches are pinned when CUDA is available.
    """
    sampler = ChunkBatchSampler(dataset, batch_size, shuffle, seed, buffer_chunks, num_workers, drop_last,
                                rank, world_size)
    if num_workers > 0:
        kwargs.setdefault("persistent_workers", True)
    kwargs.setdefault("collate_fn", collate)
    kwargs.setdefault("pin_memory", dataset.pin_memory)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, **kwargs)
