"""``popstore generate`` then ``popstore kilonova train|evaluate`` on a tiny pipeline (threads-only Dask cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from popstore.cli import main
from popstore.estimators.emulator import CurveEmulator
from popstore.store import open_store

PIPELINE = """
[simulator]
name = "kilonova_du17"
[simulator.config]
dt = 0.05
[priors]
n_samples = 60
design = "latin_hypercube"
seed = 3
[store]
path = "kn.zarr"
samples_per_chunk = 20
[split]
test = 0.2
valid = 0.2
seed = 0
[cluster]
kind = "local"
n_workers = 1
processes = false
[emulator]
output = "emu.pt"
snapshots = "snaps"
snapshot_every = 1
factor = 24
n_layers = 2
hidden = 16
n_blocks = 1
epochs = 2
batch_size = 16
[evaluate]
n_draws = 5
n_timing = 20
"""



def test_kilonova_cli_end_to_end(tmp_path: Path, capsys):
    pipe = tmp_path / "kilonova.toml"
    pipe.write_text(PIPELINE)
    assert main(["generate", str(pipe), "-q"]) == 0  # ordered binaries from the simulator's own prior
    ds = open_store(tmp_path / "kn.zarr")
    assert bool(ds["done"].all()) and set(np.unique(ds["split"].values)) == {"train", "valid", "test"}
    assert (ds["m1"].values >= ds["m2"].values).all() and (ds["lambda1"].values <= ds["lambda2"].values).all()

    assert main(["kilonova", "train", str(pipe), "-q"]) == 0
    emu = CurveEmulator.load(tmp_path / "emu.pt")
    assert emu.curve_shape == (4, 10) and emu.label_names == ("m1", "m2", "lambda1", "lambda2")
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["epoch_0001.png", "epoch_0002.png", "loss.png"]

    capsys.readouterr()
    assert main(["kilonova", "evaluate", str(pipe)]) == 0
    out = capsys.readouterr().out
    for band in "griz":
        assert re.search(rf"^{band}\s+\d+\.\d+\s+\d+\.\d+\s+\d+$", out, re.M), out
    assert "du17_vectorised" in out and "emulator" in out
