"""Training-loader throughput: chunk-aware store reads vs loose .npy files vs an in-memory array.

Builds one gaussian_fields dataset three ways (a popstore store, the legacy
loose-file layout of one .npy per map + CSV index, and a tensor in memory) and
times shuffled epochs through a torch DataLoader for each:

- ``in-memory``: ``TensorDataset`` over the whole array (the usual baseline; with
  workers it measures the cost of moving batches between processes);
- ``chunk-aware store``: :class:`popstore.MapDataset` + :func:`popstore.make_loader`,
  decoding ahead on ``--read-threads`` background threads. Its first epoch
  decodes every chunk; later epochs are served from the decoded-chunk cache
  (this split fits in the default budget);
- ``chunk-aware, streaming``: the same with a cache of two buffers only, so
  every epoch decodes every chunk again (a dataset larger than memory);
- ``loose .npy + CSV``: the research codes' Dataset (a CSV row and one
  ``np.load`` per map per sample);
- ``naive per-sample store``: one store read per sample, no chunk cache (what
  a plain map-style Dataset over Zarr does); a few batches, after the others.

Epochs of the other loaders are interleaved round-robin, so that the drifts of a
shared machine hit every loader alike; one-process loaders run before the
multi-worker ones. The first epoch is reported apart from the later ones
(training runs many epochs, so the later epochs are the training throughput),
and those by their median and by their best (timeit's convention: slower runs
measure interference). On small VMs much of the interference is glibc handing
freed batch memory back to the kernel and faulting it in afresh for the next
batch. MapDataset reuses its own arrays; for the other loaders
``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=1073741824`` in the
environment keeps freed memory for reuse.

Targets (issue 2): chunk-aware >= 10x loose files and >= 0.5x in-memory.

    python benchmarks/bench_loading.py [--n 2048] [--npix 128] [--workers 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import popstore
from popstore.export import to_legacy
from popstore.priors import sample_table
from popstore.simulators import get_simulator

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


class PerSample(Dataset):
    """One store read per sample (no chunk cache, no batched reads)."""

    def __init__(self, data: popstore.MapDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i]


def epoch_rate(loader: DataLoader, max_batches: int | None = None) -> float:
    """Samples per second over one pass (after the first batch, which includes worker start-up)."""
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for b, (x, _) in enumerate(it):
        n += len(x)
        if max_batches and b + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="samples")
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8, help="epochs per loader (>= 2)")
    ap.add_argument("--read-threads", type=int, default=2, help="MapDataset background decode threads")
    ap.add_argument("--chunk", type=int, default=64, help="samples per store chunk")
    ap.add_argument("--compression", default="lz4", choices=["zstd", "lz4", "none"])
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is reported apart)")
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="popstore-bench-"))
    try:
        store = work / "fields.zarr"
        sim = get_simulator("gaussian_fields", npix=args.npix)
        t0 = time.perf_counter()
        popstore.generate(sim, sample_table(sim.parameters, args.n, seed=0), store, samples_per_chunk=args.chunk,
                          compression=args.compression)
        popstore.split(store, test=0.0, valid=0.0, seed=0)
        print(f"generated {args.n} samples of 2 x {args.npix}^2 ({args.compression}, {args.chunk} per chunk) "
              f"in {time.perf_counter() - t0:.1f} s")
        folder = to_legacy(store, work / "loose")
        reader = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none", cache_chunks=0,
                                     read_threads=0)
        memory = TensorDataset(torch.from_numpy(reader.read_inputs(np.arange(len(reader)))), reader.y)

        def chunk_aware(cache_chunks: int | None = None) -> popstore.MapDataset:
            return popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none",
                                       cache_chunks=cache_chunks, read_threads=args.read_threads)

        buffer_chunks = 4
        rates, naive_rate = {}, {}
        for nw in sorted({0, args.workers}):  # one process first: forked workers would share its pages
            loaders = {
                f"in-memory, {nw} workers": DataLoader(memory, batch_size=args.batch, shuffle=True, num_workers=nw,
                                                      persistent_workers=nw > 0),
                f"chunk-aware store, {nw} workers": popstore.make_loader(
                    chunk_aware(), args.batch, num_workers=nw, seed=1, buffer_chunks=buffer_chunks),
                f"chunk-aware, streaming, {nw} workers": popstore.make_loader(
                    chunk_aware(2 * buffer_chunks), args.batch, num_workers=nw, seed=1, buffer_chunks=buffer_chunks),
                f"loose .npy + CSV, {nw} workers": DataLoader(LooseFiles(folder), batch_size=args.batch, shuffle=True,
                                                             num_workers=nw, persistent_workers=nw > 0),
            }
            for name in loaders:
                rates[name] = []
            for _ in range(args.epochs):
                for name, loader in loaders.items():
                    rates[name].append(epoch_rate(loader))
            del loaders  # stops persistent workers
            # an abandoned multi-worker epoch leaves its workers busy for a while, so this comes last
            naive_rate[nw] = epoch_rate(DataLoader(PerSample(reader), batch_size=args.batch, shuffle=True,
                                                   num_workers=nw), max_batches=8)
        first = {name: r[0] for name, r in rates.items()}
        median = {name: float(np.median(r[1:])) for name, r in rates.items()}
        best = {name: max(r[1:]) for name, r in rates.items()}

        print(f"\n{'loader (samples/s)':<44}{'first epoch':>12}{'later: median':>15}{'best':>9}")
        for name in rates:
            print(f"{name:<44}{first[name]:>12.0f}{median[name]:>15.0f}{best[name]:>9.0f}")

        print("\nratios, same number of DataLoader workers (targets: >= 10x loose files, >= 0.5x in-memory)")
        for nw in sorted({0, args.workers}):
            mem, loose = f"in-memory, {nw} workers", f"loose .npy + CSV, {nw} workers"
            for kind in ("chunk-aware store", "chunk-aware, streaming"):
                name = f"{kind}, {nw} workers"
                print(f"{name:<38} later epochs (median | best): {median[name] / median[loose]:5.1f}x | "
                      f"{best[name] / best[loose]:5.1f}x loose, {median[name] / median[mem]:.2f}x | "
                      f"{best[name] / best[mem]:.2f}x in-memory; first epoch: {first[name] / first[loose]:.1f}x loose, "
                      f"{first[name] / first[mem]:.2f}x in-memory")
            in_memory = f"{median[mem] / median[loose]:5.1f}x | {best[mem] / best[loose]:5.1f}x loose"
            print(f"{'in-memory':<38} later epochs (median | best): {in_memory}")
            naive = naive_rate[nw]
            print(f"{'naive per-sample store':<38} {naive:.0f} samples/s = {naive / median[loose]:.2f}x loose")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
