"""Training throughput of the o3_err moment network: store-backed loader vs in-memory tensors.

Trains the same network for the same number of epochs twice, once fed by
:func:`popstore.make_loader` over a gaussian_fields store and once by a plain
``TensorDataset`` holding the same maps in memory, and prints samples/s of
both and their ratio (the store should cost little on top of the network).

    python benchmarks/bench_training.py --n 1024 --npix 32 --hidden 4 --epochs 2

Generates its store under a temporary folder unless ``--store`` is given.
Runs on CUDA when available (with mixed precision), CPU otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import popstore
from popstore.estimators.data import DataConfig, prepare
from popstore.estimators.train import TrainConfig, default_device, fit
from popstore.priors import sample_table
from popstore.simulators import get_simulator


def make_store(path: Path, n: int, npix: int) -> Path:
    from distributed import Client

    sim = get_simulator("gaussian_fields", npix=npix)
    params = sample_table(sim.parameters, n, seed=0, design="latin_hypercube")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        popstore.generate(sim, params, path, client=client, seed=0, progress=False)
    popstore.split(path, test=0.1, valid=0.1, seed=0)
    return path


def timed_fit(data, train_loader, epochs: int, hidden: int, threads: int | None, out: Path) -> float:
    torch.manual_seed(0)
    model = data.build_model(hidden, 0.1)
    t0 = time.perf_counter()
    fit(model, train_loader, data.valid_loader, TrainConfig(lr=1e-3, epochs=epochs, progress=False, threads=threads), out)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="existing split store (default: generate one)")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--npix", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = args.store or make_store(tmp / "bench.zarr", args.n, args.npix)
        data = prepare(store, DataConfig(inputs=["density"], labels=["amplitude", "slope"], batch_size=args.batch_size))
        x, y = data.train.batch(range(len(data.train)))
        memory = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(0))
        n_train = len(data.train) * args.epochs
        threads = args.threads or None
        timed_fit(data, memory, 1, args.hidden, threads, tmp / "warmup")  # first-call allocations, not timed
        t_store = timed_fit(data, data.train_loader, args.epochs, args.hidden, threads, tmp / "store")
        t_mem = timed_fit(data, memory, args.epochs, args.hidden, threads, tmp / "memory")
        print(f"device {default_device()} (torch threads {torch.get_num_threads()}), "
              f"{len(data.train)} training maps {'x'.join(map(str, data.train.map_shape))}, hidden {args.hidden}, {args.epochs} epochs")
        print(f"store loader : {n_train / t_store:8.1f} samples/s (incl. validation)")
        print(f"in memory    : {n_train / t_mem:8.1f} samples/s (incl. validation)")
        print(f"ratio store/in-memory throughput: {t_mem / t_store:.2f}")


if __name__ == "__main__":
    main()
