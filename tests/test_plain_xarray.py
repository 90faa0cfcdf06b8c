"""A store as a notebook user opens it: plain xarray (no popstore import needed), no warning; older stores."""

import json
import warnings

import numpy as np
import pytest
import xarray as xr

import popstore
from popstore.simulators import get_simulator
from popstore.cli import main
from popstore.store import open_store


@pytest.fixture(scope="module")
def fields(tmp_path_factory, client):
    sim = get_simulator("gaussian_fields", npix=16)
    path = tmp_path_factory.mktemp("plain") / "fields.zarr"
    popstore.generate(sim, sim.parameter_table(40, seed=1), path, client, samples_per_chunk=8, progress=False)
    popstore.split(path, test=0.25, valid=0.2, seed=2)
    return path


def test_notebook_opens_groups_by_split_and_plots_a_map(fields, tmp_path, monkeypatch):
    pytest.importorskip("cf_xarray")  # registers the .cf accessor
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(fields)  # dask-backed, as a notebook opens it
        assert "split" in ds.coords and ds.attrs["Conventions"] == "CF-1.10"
        test = ds.sel(sample=ds.split == "test")
        assert test.sizes["sample"] == 10 and set(test.split.values) == {"test"}
        mean_amp = ds.label_stats.sel(subset="train", label="amplitude", statistic="mean")
        eager = xr.open_zarr(fields, chunks=None)  # grouping needs the group values in memory
        grouped = eager.amplitude.groupby("split").mean()
        amp, split = eager.amplitude.values, eager.split.values
        for s in ("train", "valid", "test"):
            np.testing.assert_allclose(grouped.sel(split=s), amp[split == s].mean(), rtol=1e-12)
        np.testing.assert_allclose(mean_amp, grouped.sel(split="train"), rtol=1e-12)
        assert ds.density.cf["X"].name == "x" and ds.density.cf["Y"].name == "y"  # cf-xarray finds the axes
        fig, ax = plt.subplots()
        test.density.isel(sample=0).plot(ax=ax)
        assert ax.get_xlabel().startswith("comoving x") and "megaparsec" in ax.get_xlabel()
        fig.savefig(tmp_path / "map.png")
        plt.close(fig)
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_bounds_and_coordinates_carry_no_fill_value(fields):
    root = json.loads((fields / "zarr.json").read_text())
    arrays = root["consolidated_metadata"]["metadata"]
    assert root["attributes"]["coordinates"] == "split"
    for name in ("x_bnds", "y_bnds", "x", "y"):
        assert "_FillValue" not in arrays[name]["attributes"], name
    assert arrays["x"]["attributes"]["axis"] == "X" and arrays["y"]["attributes"]["axis"] == "Y"


def test_store_written_before_consolidation_still_opens_and_upgrades(fields, tmp_path):
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(fields, old)
    root = json.loads((old / "zarr.json").read_text())
    root.pop("consolidated_metadata")
    root["attributes"].pop("coordinates")
    (old / "zarr.json").write_text(json.dumps(root))
    ds = open_store(old)  # what popstore wrote before: no consolidated metadata, split a data variable
    assert "split" in ds.coords and ds.split.values.tolist() == open_store(fields).split.values.tolist()
    with pytest.warns(RuntimeWarning, match="consolidated"):
        xr.open_zarr(old)
    assert main(["upgrade", str(old)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "split" in xr.open_zarr(old).coords
    assert main(["upgrade", str(tmp_path / "missing.zarr")]) == 2  # a one-line user error
