"""``popstore generate`` then ``popstore kilonova train|evaluate`` on a tiny pipeline (threads-only Dask cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xarray as xr

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
    assert "DU17 vectorised" in out and "emulator central curve (T=0)" in out
    assert "5-95% band coverage" in out and "by ejecta-mass quartile" in out

    # kilonova fit: a synthetic photometry file of DU17 at 40 Mpc, with DU17 and with the emulator just trained
    from popstore.kilonova.lightcurve import light_curves

    times = np.array([2.5, 3.5, 5.0, 7.0])
    mags = light_curves([1.45], [1.25], [250.0], [700.0], times, ("g", "r", "i", "z"))[0] + 5 * np.log10(4e6)
    rows = [f"{(np.datetime64('2017-08-17T12:41:04') + np.timedelta64(int(t * 86400), 's'))} ps1::{b} "
            f"{mags[k, j]:.3f} 0.05" for k, b in enumerate("griz") for j, t in enumerate(times) if np.isfinite(mags[k, j])]
    (tmp_path / "kn.dat").write_text("\n".join(rows) + "\n")
    for extra, name in (([], "du17.nc"), (["--emulator", str(tmp_path / "emu.pt")], "emu.nc")):
        assert main(["kilonova", "fit", str(tmp_path / "kn.dat"), "-o", str(tmp_path / name), "--walkers", "12",
                     "--steps", "40", "--burn", "10", "--thin", "2", *extra]) == 0
        post = xr.open_dataset(tmp_path / name)
        assert post.sizes["draw"] == 12 * 15 and {"chirp_mass", "ejecta_mass", "log_posterior"} <= set(post.data_vars)
        assert (post["m1"].values >= post["m2"].values).all()
        post.close()
    capsys.readouterr()
    assert main(["kilonova", "fit", str(tmp_path / "kn.dat"), "-o", str(tmp_path / "du17.nc")]) == 2  # exists
    assert "exists" in capsys.readouterr().err
