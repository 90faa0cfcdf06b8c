"""The main job: a small end-to-end run on a LocalCluster.

1. draw a Latin-hypercube parameter table for ``gaussian_fields``;
2. generate the store on a ``distributed.LocalCluster`` (resumable: rerun the
   demo after killing it and it finishes the missing chunks);
3. split it into train/valid/test and store label statistics;
4. read one training batch through :class:`popstore.MapDataset`;
5. draw example maps across the parameter range to ``examples.png``;
6. train a small moment-network CNN (:mod:`popstore.estimators`) to infer the
   amplitude and slope from the two fields, and print its test-split metrics
   (files in ``model/``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from popstore.generation import generate
from popstore.estimators.data import DataConfig, train_on_store
from popstore.estimators.evaluate import make_test_report
from popstore.estimators.train import TrainConfig
from popstore.info import describe
from popstore.plotting import coordinate_edges, figure
from popstore.cluster import cluster_client
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.splits import split
from popstore.store import open_store
from popstore.torchdata import MapDataset, make_loader

log = logging.getLogger(__name__)
INPUTS = ["density", "temperature"]


def run_demo(output: Path, n_samples: int = 2048, npix: int = 32, n_workers: int = 2, epochs: int = 15,
             seed: int = 0) -> Path:
    """Run the demo into ``output``; returns the store path."""
    output.mkdir(parents=True, exist_ok=True)
    store = output / "gaussian_fields.zarr"
    sim = get_simulator("gaussian_fields", npix=npix)
    params = sample_table(sim.parameters, n_samples, seed=seed, design="latin_hypercube")
    with cluster_client({"kind": "local", "n_workers": n_workers}) as client:
        print(f"LocalCluster: {client}")
        report = generate(sim, params, store, client, seed=seed)
    print(report)
    if not report.complete:
        raise RuntimeError(f"{len(report.failed)} samples failed; rerun to retry them")
    split(store, test=0.1, valid=0.1, seed=seed)
    print(describe(store))

    train = MapDataset(store, split="train", inputs=INPUTS)
    x, y = next(iter(make_loader(train, batch_size=32, seed=seed)))
    print(f"one training batch: inputs {tuple(x.shape)} {x.dtype}, labels {tuple(y.shape)} "
          f"(min-max normalised, range {float(y.min()):.2f}..{float(y.max()):.2f})")

    ds = open_store(store)
    order = np.argsort(ds["slope"].values)
    png = plot_examples(ds, order[np.linspace(0, n_samples - 1, 4).astype(int)], output / "examples.png")
    print(f"example maps: {png}")

    if epochs > 0:
        print(f"training the o3_err moment network for {epochs} epochs on {len(train)} maps (CPU: about a minute)")
        result = train_on_store(store, output / "model", hidden=4, dropout=0.1,
                                data=DataConfig(inputs=INPUTS, labels=["amplitude", "slope"], batch_size=32, seed=seed),
                                train=TrainConfig(epochs=epochs, lr=2e-3, seed=seed, threads=1, progress=False))
        table = make_test_report(result.checkpoint, store).metrics
        print(f"test split ({output / 'model'}):")
        print(table[["rmse", "rel_error", "r2", "chi2", "coverage_1sigma"]].to_string(float_format="%.3f"))
    return store


def plot_examples(ds: xr.Dataset, samples: np.ndarray, path: Path) -> Path:
    """log10 density and temperature maps of a few samples, titled with their labels."""
    fig, axes = figure(len(INPUTS), len(samples), figsize=(3.2 * len(samples), 6.4))
    x_edges, y_edges = coordinate_edges(ds, "x"), coordinate_edges(ds, "y")
    for col, i in enumerate(samples):
        s = ds.isel(sample=int(i))
        for row, var in enumerate(INPUTS):
            ax = axes[row, col]
            im = ax.pcolormesh(x_edges, y_edges, np.log10(s[var].values), cmap="magma" if row else "viridis")
            fig.colorbar(im, ax=ax, shrink=0.8, label=f"log10 {var} [{ds[var].attrs['units']}]")
            ax.set_xlabel(f"x [{ds.x.attrs['units']}]")
            ax.set_ylabel(f"y [{ds.y.attrs['units']}]")
            ax.set_aspect("equal")
        axes[0, col].set_title(f"A={float(s.amplitude):.2f}  n={float(s.slope):.2f}  s={float(s.smoothing):.2f}")
    names = ", ".join(f"{sym} = {ds[k].attrs.get('long_name', k)}" + (f" [{ds[k].attrs['units']}]"
                                                                     if ds[k].attrs.get("units", "1") != "1" else "")
                      for sym, k in (("A", "amplitude"), ("n", "slope"), ("s", "smoothing")))
    fig.suptitle(f"gaussian_fields samples across the prior; labels: {names}", fontsize=9)
    fig.savefig(path, dpi=110)
    return path
