"""Training-loader throughput against the read+decode limit, in-memory tensors and loose .npy files.

Builds one gaussian_fields dataset three ways (a popstore store, the legacy
loose-file layout of one .npy per map + CSV index, and a tensor in memory), then
measures, round-robin so that the drifts of a shared machine hit every figure
alike (``--rounds`` rounds; median and best of them are printed):

- ``read+decode limit``: the store's input chunk files read with plain file
  reads into a reused buffer, their crc32c checksum verified (the same
  implementation as the loader's, :func:`popstore.codecs.crc32c`) and decoded with the
  same Blosc codec, if any, into a reused array (the store's whole codec chain, as a loader
  must run it), in a tight loop on a pool of one thread per core (and on one
  thread). It is the hardware's rate for this data and codec;
- ``in-memory``: what users run when the data fits in memory: ``TensorDataset``
  over the whole array and ``DataLoader(batch_size=..., shuffle=True)``;
- ``chunk-aware, first epoch``: a fresh :class:`popstore.MapDataset` +
  :func:`popstore.make_loader` every round with the default cache budget, which
  holds the split: every chunk is read (the files are in the OS page cache, as
  they are for the limit) and checked; raw chunk files are memory-mapped into the
  cache (:meth:`popstore.zarrchunks.ChunkReader.map`), compressed ones decoded into
  it, and batches gathered from there. And the same with a cache of two buffers
  (``streaming cache``), the first epoch of a dataset larger than the cache: raw
  chunks go straight into the batches' slots (:meth:`popstore.MapDataset.fill`);
- ``chunk-aware, later epochs``: one loader past its first epoch whose cache budget
  holds the split: batches gathered from the cache (raw chunks: from the mapped
  files, checked once);
- ``chunk-aware, streaming``: a cache of two buffers (by default 8 of the 32 chunks), so
  every epoch reads and checks every chunk again, as for a dataset larger than memory;
  and the same with ``gather_ahead=True`` (the default on CUDA machines: batches of
  decoded chunks gathered on a background thread; raw chunks are read as without it);
- ``loose .npy + CSV``: the research codes' Dataset (a CSV row and one
  ``np.load`` per map per sample).

Every rate comes with the CPU time of the whole process per sample (all its
threads) and of the training thread alone (what a training step waits for; the
rest overlaps it). Then it prints how many store chunks a batch mixes (shuffling
quality), and where the streaming time goes: the cost of each stage per chunk in
tight loops (file read, checksum, codec decode through
:class:`popstore.zarrchunks.ChunkReader`, a raw chunk read and checked straight
into the shuffled slots of a batch (``ChunkReader.read_into``) or mapped and checked
(``ChunkReader.map``), gathering batches as
:meth:`popstore.MapDataset.read_inputs` does; and what the same chunk costs
through ``zarr.Array.__getitem__`` and xarray, the earlier read path), and a
cProfile of a streaming epoch (the training thread and one read thread).

On small VMs fresh memory is expensive to fault in; MapDataset reuses its
arrays, and for the other loaders ``MALLOC_MMAP_THRESHOLD_=67108864
MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment keeps freed memory for
reuse. Targets (issue 20): streaming and first epochs >= 0.5x in-memory, >= 10x
loose files and >= 50% of the read+decode limit.

    python benchmarks/bench_loading.py [--n 2048] [--npix 128] [--rounds 8] [--compression auto]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numcodecs
import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr
from torch.utils.data import DataLoader, Dataset, TensorDataset

import popstore
from popstore.export import to_legacy
from popstore.codecs import crc32c
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.store import COMPRESSION_CHOICES
from popstore.torchdata import ChunkBatchSampler, _cores
from popstore.zarrchunks import ChunkReader

INPUTS = ["density", "temperature"]


class LooseFiles(Dataset):
    """The research-code baseline: a CSV index of per-map .npy paths, one file read per map per sample."""

    def __init__(self, folder: Path, subset: str = "train") -> None:
        self.folder = folder
        self.table = pd.read_csv(folder / f"dataset_{subset}.csv")
        self.map_cols = [f"input:{v}" for v in INPUTS]
        self.label_cols = [c for c in self.table.columns if not c.startswith("input:")]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        row = self.table.iloc[i]
        x = np.stack([np.load(self.folder / row[c]).T for c in self.map_cols]).astype(np.float32)
        return torch.from_numpy(x), torch.tensor(row[self.label_cols].to_numpy(dtype=np.float32))


class RawLimit:
    """Plain file reads + the store's own Blosc settings in a tight loop, buffers reused: the ceiling."""

    def __init__(self, store: Path, threads: int) -> None:
        self.files = sorted(f for v in INPUTS for f in (store / v / "c").rglob("*") if f.is_file())
        meta = json.loads((store / INPUTS[0] / "zarr.json").read_text())
        blosc = [c["configuration"] for c in meta["codecs"] if c["name"] == "blosc"]
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
        self.codec = numcodecs.Blosc(cname=blosc[0]["cname"], clevel=blosc[0]["clevel"],
                                     shuffle=shuffle[blosc[0]["shuffle"]]) if blosc else None
        self.checksum = any(c["name"] == "crc32c" for c in meta["codecs"])
        self.codecs = [c["name"] for c in meta["codecs"]]
        self.chunk_shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
        self.decoded_bytes = 4 * int(np.prod(self.chunk_shape)) * len(self.files)
        self.pool = ThreadPoolExecutor(threads)
        self.threads = threads
        numcodecs.blosc.use_threads = False  # one core per decode, as in the loader (zarr sets the same)

    def _work(self, files: list[Path]) -> None:
        raw = np.empty(max(f.stat().st_size for f in self.files), dtype=np.uint8)
        out = np.empty(self.chunk_shape, dtype=np.float32)
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                n = fh.readinto(raw)
            if self.checksum:
                n -= 4
                if crc32c(raw[:n]) != raw[n:n + 4].tobytes():
                    raise ValueError(f"{f}: checksum mismatch")
            if self.codec is not None:
                self.codec.decode(raw[:n], out=out.reshape(-1).view(np.uint8))

    def rate(self, threads: int | None = None) -> tuple[float, float]:
        """Decoded bytes per second over every input chunk file, and CPU seconds (all threads) per byte."""
        threads = threads or self.threads
        t0, c0 = time.perf_counter(), time.process_time()
        list(self.pool.map(self._work, [self.files[i::threads] for i in range(threads)]))
        return self.decoded_bytes / (time.perf_counter() - t0), (time.process_time() - c0) / self.decoded_bytes


def epoch_rate(loader: DataLoader) -> tuple[float, float, float]:
    """Samples per second over one pass (after the first batch, which includes worker start-up);
    CPU seconds of this process (all its threads) per sample: the work done, which other users of a
    shared machine slow down far less than the rate; and CPU seconds of the training thread per sample."""
    it = iter(loader)
    next(it)
    n, t0, c0, m0 = 0, time.perf_counter(), time.process_time(), time.thread_time()
    for x, _ in it:
        n += len(x)
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n, (time.thread_time() - m0) / n


def per_chunk_ms(stages: dict, n_chunks: int, repeats: int = 5) -> dict[str, float]:
    """Best mean milliseconds of each ``fn(c)`` over all chunks, the stages measured round-robin."""
    best = dict.fromkeys(stages, np.inf)
    for _ in range(repeats):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            for c in range(n_chunks):
                fn(c)
            best[name] = min(best[name], (time.perf_counter() - t0) / n_chunks)
    return {name: 1e3 * t for name, t in best.items()}


def breakdown(store: Path, chunk: int, npix: int) -> None:
    """Single-thread cost of each stage of a streaming read, per chunk of ``chunk`` samples."""
    group = zarr.open_group(store, mode="r")
    readers = [ChunkReader(group[v]) for v in INPUTS]
    n_chunks = readers[0].n_chunks
    part = np.empty((chunk, npix, npix), dtype=np.float32)
    batch = np.empty((chunk, len(INPUTS), npix, npix), dtype=np.float32)
    ds = xr.open_zarr(store, consolidated=False, chunks=None)
    cached = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none", read_threads=0)
    cached.read_inputs(np.arange(len(cached)))  # every chunk decoded into the cache
    batches = list(ChunkBatchSampler(cached, chunk, seed=0))  # batches of one chunk's size, mixing 4 chunks
    files = [[store / v / "c" / str(c) / "0" / "0" for v in INPUTS] for c in range(n_chunks)]
    # each input's rows of a chunk into the batch slots of a shuffled order, one piece per sample (MapDataset.fill)
    slot = np.random.default_rng(0).permutation(chunk)
    pieces = [[batch[s, i] for s in slot] for i in range(len(INPUTS))]
    stages = {
        "file read (np.fromfile)": lambda c: [np.fromfile(f, np.uint8) for f in files[c]],
        "file read + crc32c (google_crc32c, zarr's)": lambda c: [google_crc32c.value(np.fromfile(f, np.uint8))
                                                                for f in files[c]],
        "file read + crc32c (crc32c package, popstore's)": lambda c: [crc32c(np.fromfile(f, np.uint8))
                                                                     for f in files[c]],
        "read + check + decode (ChunkReader, recycled)": lambda c: [r.read(c, lambda s, d: part) for r in readers],
        "read + check + decode (ChunkReader, fresh)": lambda c: [r.read(c) for r in readers],
        **({"read + check into batch slots (read_into)":
            lambda c: [r.read_into(c, p) for r, p in zip(readers, pieces)],
            "map + check (ChunkReader.map)": lambda c: [r.map(c) for r in readers]} if readers[0].raw_file else {}),
        "gather into channel slots (read_inputs)": lambda c: cached.read_inputs(batches[c % len(batches)], out=batch),
        "earlier path: zarr.Array.__getitem__": lambda c: [group[v][c * chunk:(c + 1) * chunk] for v in INPUTS],
        "earlier path: xarray .isel().values": lambda c: [ds[v].isel(sample=slice(c * chunk, (c + 1) * chunk)).values
                                                          for v in INPUTS],
    }
    print(f"\nwhere the time goes: one thread, ms per chunk of {chunk} samples x {len(INPUTS)} inputs "
          f"({chunk * len(INPUTS) * npix * npix * 4 / 2**20:.0f} MiB decoded)")
    for name, ms in per_chunk_ms(stages, n_chunks).items():
        print(f"  {name:<48}{ms:8.2f}")


def profile_streaming(store: Path, batch: int) -> None:
    """cProfile of one streaming epoch with one read thread: the training thread and the read thread together."""
    data = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none", cache_chunks=8, read_threads=1)
    loader = popstore.make_loader(data, batch, seed=3)
    for _ in loader:  # first epoch: open the store, fill the pools
        pass
    profiles = [cProfile.Profile(), cProfile.Profile()]
    profiles[0].enable()
    data._pool.submit(profiles[1].enable).result()  # a profiler is per thread: the read thread starts its own
    for _ in loader:
        pass
    data._pool.submit(profiles[1].disable).result()
    profiles[0].disable()
    out = io.StringIO()
    pstats.Stats(*profiles, stream=out).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    print("\ncProfile of one streaming epoch, the training thread and its one read thread, top 8 by own time:")
    print("\n".join(lines[:start] + lines[start:start + 9]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="samples")
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8, help="measurements of every figure, interleaved (>= 2)")
    ap.add_argument("--read-threads", type=int, default=None, help="MapDataset decode threads (default: cores)")
    ap.add_argument("--chunk", type=int, default=64, help="samples per store chunk (0: popstore's default layout)")
    ap.add_argument("--buffer-chunks", type=int, default=4, help="chunks shuffled together (streaming cache: 2 buffers)")
    ap.add_argument("--compression", default="auto", choices=list(COMPRESSION_CHOICES),
                    help="store codec (default: popstore's default, auto: raw chunks for these maps)")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be >= 2 (medians and bests over rounds)")
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="popstore-bench-"))
    try:
        store = work / "fields.zarr"
        sim = get_simulator("gaussian_fields", npix=args.npix)
        t0 = time.perf_counter()
        popstore.generate(sim, sample_table(sim.parameters, args.n, seed=0), store, samples_per_chunk=args.chunk or None,
                          compression=args.compression, progress=False)
        popstore.split(store, test=0.0, valid=0.0, seed=0)
        sample_bytes = len(INPUTS) * args.npix ** 2 * 4
        folder = to_legacy(store, work / "loose", progress=False)
        reader = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none", cache_chunks=0,
                                     read_threads=0)
        print(f"generated {args.n} samples of {len(INPUTS)} x {args.npix}^2 float32 ({args.compression}, "
              f"{reader.chunk} per chunk = {reader.chunk * sample_bytes / len(INPUTS) / 2**20:.2f} MiB per variable) "
              f"in {time.perf_counter() - t0:.1f} s; {_cores()} cores")
        memory = TensorDataset(torch.from_numpy(reader.read_inputs(np.arange(len(reader)))), reader.y)

        def chunk_aware(cache_chunks: int | None = None, gather_ahead: bool | None = None) -> DataLoader:
            data = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none",
                                       cache_chunks=cache_chunks, read_threads=args.read_threads,
                                       gather_ahead=gather_ahead)
            return popstore.make_loader(data, args.batch, seed=1, buffer_chunks=args.buffer_chunks)

        limit = RawLimit(store, _cores())
        disk = sum(f.stat().st_size for f in limit.files)
        print(f"input chunks on disk: {disk / 2**20:.1f} MiB for {limit.decoded_bytes / 2**20:.1f} MiB of maps "
              f"({limit.decoded_bytes / disk:.2f}x smaller than raw; codecs {limit.codecs})")
        cached = chunk_aware()
        fresh = {  # a fresh loader every round: its cache holds the split (and the reads fill it), or two buffers
            "chunk-aware, first epoch": chunk_aware,
            "chunk-aware, first epoch, streaming cache": lambda: chunk_aware(2 * args.buffer_chunks),
        }
        loaders = {
            "in-memory tensor": DataLoader(memory, batch_size=args.batch, shuffle=True),
            **dict.fromkeys(fresh),
            "chunk-aware, later epochs": cached,
            "chunk-aware, streaming": chunk_aware(2 * args.buffer_chunks),
            "chunk-aware, streaming, gather_ahead": chunk_aware(2 * args.buffer_chunks, gather_ahead=True),
            "loose .npy + CSV": DataLoader(LooseFiles(folder), batch_size=args.batch, shuffle=True),
        }
        rates = {"read+decode limit": [], "read+decode limit, 1 thread": [], **{k: [] for k in loaders}}
        epoch_rate(cached)  # its first epoch fills its cache
        cpu = {k: [] for k in rates}
        train_cpu = {k: [] for k in loaders}
        for _ in range(args.rounds):
            for name, threads in (("read+decode limit", None), ("read+decode limit, 1 thread", 1)):
                r, c = limit.rate(threads)
                rates[name].append(r / sample_bytes)
                cpu[name].append(c * sample_bytes)
            for name, loader in loaders.items():
                r, c, m = epoch_rate(loader or fresh[name]())
                rates[name].append(r)
                cpu[name].append(c)
                train_cpu[name].append(m)
        median = {k: float(np.median(r)) for k, r in rates.items()}
        best = {k: max(r) for k, r in rates.items()}
        cost = {k: 1e6 * float(np.median(c)) for k, c in cpu.items()}

        print(f"\n{'samples/s (' + str(args.rounds) + ' rounds, interleaved)':<44}{'median':>10}{'best':>10}"
              f"{'MB/s median':>14}{'CPU us/sample':>15}{'training thread':>17}")
        for name in rates:
            train = f"{1e6 * np.median(train_cpu[name]):>17.1f}" if name in train_cpu else ""
            print(f"{name:<44}{median[name]:>10.0f}{best[name]:>10.0f}{median[name] * sample_bytes / 1e6:>14.0f}"
                  f"{cost[name]:>15.1f}{train}")
        print("(CPU time: every thread of this process, and the training thread alone (what a training step waits "
              "for), medians)")
        print("per-round ratios to in-memory (streaming, first epoch): "
              + ", ".join(f"{s / m:.2f}/{f / m:.2f}" for s, f, m in zip(
                  rates["chunk-aware, streaming"], rates["chunk-aware, first epoch"], rates["in-memory tensor"])))

        print("\nratios of median rates (targets for streaming and first epochs: >= 0.5x in-memory, >= 10x loose, "
              ">= 0.5x the limit); last column: the limit's CPU cost per sample / the loader's")
        mem, loose, lim = median["in-memory tensor"], median["loose .npy + CSV"], median["read+decode limit"]
        for name in ("chunk-aware, first epoch", "chunk-aware, first epoch, streaming cache", "chunk-aware, streaming",
                     "chunk-aware, streaming, gather_ahead",
                     "chunk-aware, later epochs", "in-memory tensor"):
            r = median[name]
            print(f"  {name:<42}{r / mem:6.2f}x in-memory {r / loose:7.1f}x loose {r / lim:6.2f}x the limit"
                  f"{cost['read+decode limit'] / cost[name]:8.2f}")

        data = cached.dataset
        n_chunks = len(np.unique(data.indices // data.chunk))
        uniform = n_chunks * (1 - (1 - 1 / n_chunks) ** args.batch)
        print(f"\nshuffling: a batch of {args.batch} mixes {cached.batch_sampler.chunks_per_batch():.1f} of "
              f"{n_chunks} chunks with buffer_chunks={args.buffer_chunks} (a uniform shuffle: {uniform:.1f}); "
              + ", ".join(f"buffer_chunks={b}: {ChunkBatchSampler(data, args.batch, buffer_chunks=b).chunks_per_batch():.1f}"
                          for b in (1, 8, 16)))
        breakdown(store, reader.chunk, args.npix)
        profile_streaming(store, args.batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
