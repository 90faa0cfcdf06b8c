"""Training-loader throughput: chunk-aware store reads vs loose .npy files vs an in-memory array.

Builds one gaussian_fields dataset three ways (a popstore store, the legacy
loose-file layout of one .npy per map + CSV index, and a tensor in memory) and
times one shuffled epoch through a torch DataLoader for each:

- ``in-memory``: ``TensorDataset`` over the whole array (the ceiling; with
  workers it measures the cost of moving batches between processes);
- ``chunk-aware store``: :class:`popstore.MapDataset` + :func:`popstore.make_loader`,
  first epoch (every chunk decoded) and a second epoch (decoded chunks cached:
  this split fits in the default cache budget);
- ``loose .npy + CSV``: the research codes' Dataset (a CSV row and one
  ``np.load`` per map per sample);
- ``naive per-sample store``: one store read per sample, no chunk cache (what
  a plain map-style Dataset over Zarr does).

Targets (issue 2): chunk-aware >= 10x loose files and >= 0.5x in-memory.

    python benchmarks/bench_loading.py [--n 2048] [--npix 128] [--workers 2]
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
    ap.add_argument("--chunk", type=int, default=64, help="samples per store chunk")
    ap.add_argument("--compression", default="lz4", choices=["zstd", "lz4", "none"])
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="popstore-bench-"))
    try:
        store = work / "fields.zarr"
        sim = get_simulator("gaussian_fields", npix=args.npix)
        t0 = time.perf_counter()
        popstore.generate(sim, sample_table(sim.parameters, args.n, seed=0), store, samples_per_chunk=args.chunk,
                          compression=args.compression)
        popstore.split(store, test=0.0, valid=0.0, seed=0)
        print(f"generated {args.n} samples of 2 x {args.npix}^2 in {time.perf_counter() - t0:.1f} s")
        folder = to_legacy(store, work / "loose")
        reader = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none", cache_chunks=0)
        memory = TensorDataset(torch.from_numpy(reader.read_inputs(np.arange(len(reader)))), reader.y)
        chunk_aware = popstore.MapDataset(store, split="train", inputs=INPUTS, normalize="none")  # cold cache
        w = args.workers
        naive = PerSample(reader)
        loaders = {}
        for nw in sorted({0, w}):
            loaders[f"in-memory, {nw} workers"] = DataLoader(memory, batch_size=args.batch, shuffle=True,
                                                            num_workers=nw)
            loaders[f"chunk-aware store, {nw} workers"] = popstore.make_loader(chunk_aware, args.batch, num_workers=nw,
                                                                             seed=1)
            loaders[f"loose .npy + CSV, {nw} workers"] = DataLoader(LooseFiles(folder), batch_size=args.batch,
                                                                   shuffle=True, num_workers=nw)
            loaders[f"naive per-sample store, {nw} workers"] = DataLoader(naive, batch_size=args.batch,
                                                                         shuffle=True, num_workers=nw)
        rates = {name: epoch_rate(loader, max_batches=8 if "naive" in name else None)
                 for name, loader in loaders.items()}
        for nw in sorted({0, w}):  # a second epoch: decoded chunks are cached (the split fits in memory)
            rates[f"chunk-aware store, warm cache, {nw} workers"] = epoch_rate(loaders[f"chunk-aware store, {nw} workers"])
        print(f"\n{'loader':<46}{'samples/s':>12}")
        for name, r in rates.items():
            print(f"{name:<46}{r:>12.0f}")
        print()
        for nw in sorted({0, w}):
            loose, mem = rates[f"loose .npy + CSV, {nw} workers"], rates[f"in-memory, {nw} workers"]
            for kind in ("", "warm cache, "):
                ca = rates[f"chunk-aware store, {kind}{nw} workers"]
                print(f"{nw} workers, chunk-aware {kind or 'first epoch, '}: / loose files = {ca / loose:5.1f}x "
                      f"(target >= 10x); / in-memory = {ca / mem:.2f}x (target >= 0.5x)")
            print(f"{nw} workers, naive / loose = {rates[f'naive per-sample store, {nw} workers'] / loose:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
