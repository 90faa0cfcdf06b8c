"""HDF5 export, legacy export -> import round trip, import of research-code folders without metadata."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import popstore
from popstore.export import from_legacy, to_hdf5, to_legacy
from popstore.priors import sample_table
from popstore.store import open_store
from toy_simulators import Ramp


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("export") / "s.zarr"
    popstore.generate(Ramp(n=6), sample_table(Ramp().parameters, 30, seed=1), path, client,
                      samples_per_chunk=7, progress=False)
    popstore.split(path, test=0.2, valid=0.2, seed=4)
    return path


def test_hdf5_has_same_variables_and_attrs(store, tmp_path):
    h5 = to_hdf5(store, tmp_path / "s.h5")
    ref = open_store(store).load()
    with xr.open_dataset(h5, engine="h5netcdf") as ds:
        assert set(ds.variables) == set(ref.variables)
        np.testing.assert_array_equal(ds["image"].values, ref["image"].values)
        assert ds["done"].dtype == bool and ds["done"].values.all()
        assert list(ds["split"].values) == list(ref["split"].values)
        assert ds.attrs["simulator_config"] == ref.attrs["simulator_config"]
        assert ds["x"].attrs["units"] == "s"


def test_legacy_layout(store, tmp_path):
    folder = to_legacy(store, tmp_path / "legacy", progress=False)
    table = pd.read_csv(folder / "dataset_full.csv")
    assert list(table.columns) == ["input:image_g", "input:image_r", "a", "b"]
    ds = open_store(store)
    arr = np.load(folder / table["input:image_r"].iloc[5])
    np.testing.assert_array_equal(arr, ds["image"].sel(band="r").values[5].T)  # x on axis 0
    stats = json.loads((folder / "statistics_full.json").read_text())
    assert stats["a"]["max"] == pytest.approx(ds["a"].values.max())
    train = pd.read_csv(folder / "dataset_train.csv")
    assert len(train) == int((ds.split.values == "train").sum())
    tstats = json.loads((folder / "statistics_train.json").read_text())
    assert tstats["b"]["mean"] == pytest.approx(train["b"].mean())


def test_legacy_round_trip(store, tmp_path):
    folder = to_legacy(store, tmp_path / "legacy", progress=False)
    back = from_legacy(folder, tmp_path / "back.zarr").load()
    ref = open_store(store).load()
    for name in ["image", "a", "b", "x", "y", "band", "x_bnds", "split", "seed"]:
        np.testing.assert_array_equal(back[name].values, ref[name].values, err_msg=name)
    for key in ("test_fraction", "valid_fraction", "seed"):
        assert back["split"].attrs[key] == ref["split"].attrs[key], key
    np.testing.assert_allclose(back["label_stats"].values, ref["label_stats"].values, rtol=1e-14)
    assert back["image"].dims == ref["image"].dims
    assert back["image"].attrs == ref["image"].attrs and back["a"].attrs["role"] == "label"
    assert back.attrs["simulator"] == "ramp"


def test_import_research_folder_without_metadata(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "research"
    (folder / "maps").mkdir(parents=True)
    rows = []
    for i in range(5):
        arr = rng.random((4, 3))  # x on axis 0
        np.save(folder / "maps" / f"{i}.npy", arr)
        rows.append({"input:ppdot_map": f"maps/{i}.npy", "mu_logB": 13.0 + i})
    pd.DataFrame(rows).to_csv(folder / "dataset_full.csv", index=False)
    ds = from_legacy(folder, tmp_path / "imported.zarr")
    assert ds["ppdot_map"].dims == ("sample", "ppdot_map_y", "ppdot_map_x")
    np.testing.assert_array_equal(ds["ppdot_map"].values[2], np.load(folder / "maps" / "2.npy").T)
    np.testing.assert_array_equal(ds["mu_logB"].values, 13.0 + np.arange(5))
    assert ds["done"].values.all()


@pytest.mark.parametrize("outside", ["../secret.npy", "/ABS/secret.npy", "maps/link.npy"])
def test_import_refuses_map_paths_outside_the_folder(tmp_path, capsys, outside):
    """A CSV row naming ``..``, an absolute path or a symlink out of the folder is refused, naming the row."""
    from popstore.cli import main

    folder = tmp_path / "research"
    (folder / "maps").mkdir(parents=True)
    secret = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "secret.npy", secret)
    (folder / "maps" / "link.npy").symlink_to(tmp_path / "secret.npy")
    paths = ["maps/0.npy", "maps/1.npy", outside.replace("/ABS", str(tmp_path))]
    for i in range(2):
        np.save(folder / "maps" / f"{i}.npy", secret + i)
    pd.DataFrame({"input:ppdot_map": paths, "mu_logB": [13.0, 14.0, 15.0]}).to_csv(folder / "dataset_full.csv",
                                                                                  index=False)
    assert main(["import", str(folder), "-o", str(tmp_path / "refused.zarr"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 3, input:ppdot_map" in err and "--allow-outside" in err
    assert not (tmp_path / "refused.zarr").exists()
    ds = from_legacy(folder, tmp_path / "allowed.zarr", allow_outside=True)
    np.testing.assert_array_equal(ds["ppdot_map"].values[2], secret.T)
