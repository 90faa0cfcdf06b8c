"""fsspec URLs wherever a store is named: generate, split, open_store, MapDataset, exports (memory:// and file://)."""

import logging

import fsspec
import numpy as np
import pytest
import xarray as xr

import popstore
from popstore.export import from_legacy, to_hdf5, to_legacy
from popstore.priors import sample_table
from popstore.store import store_location
from toy_simulators import Ramp


@pytest.fixture(scope="module")
def threads():
    """A threaded Dask client: memory:// lives in one process, so its workers must be threads."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0",
                silence_logs=logging.ERROR) as c:
        yield c


@pytest.fixture(scope="module")
def local(tmp_path_factory, threads):
    path = tmp_path_factory.mktemp("urls") / "ramp.zarr"
    popstore.generate(Ramp(n=6), sample_table(Ramp().parameters, 24, seed=3), path, threads, samples_per_chunk=5,
                      progress=False)
    popstore.split(path, test=0.25, valid=0.2, seed=1)
    return path


def generate_and_split(url, client):
    report = popstore.generate(Ramp(n=6), sample_table(Ramp().parameters, 24, seed=3), url, client,
                               samples_per_chunk=5, progress=False)
    assert report.complete and report.n_written == 24
    popstore.split(url, test=0.25, valid=0.2, seed=1)
    return popstore.open_store(url)


def test_memory_url_store_equals_the_local_store(local, threads):
    local = popstore.open_store(local).load()
    url = "memory://urls/ramp.zarr"
    ds = generate_and_split(url, threads)
    xr.testing.assert_identical(ds.load().drop_attrs(), local.drop_attrs())
    assert fsspec.filesystem("memory").exists("/urls/ramp.zarr/zarr.json")
    # resuming a finished store writes nothing
    assert popstore.generate(Ramp(n=6), sample_table(Ramp().parameters, 24, seed=3), url, threads,
                             samples_per_chunk=5, progress=False).n_skipped == 24


def test_map_dataset_reads_a_memory_url_store(local, threads):
    local = popstore.open_store(local).load()
    url = "memory://urls/ramp.zarr"
    if not fsspec.filesystem("memory").exists("/urls/ramp.zarr"):
        generate_and_split(url, threads)
    data = popstore.MapDataset(url, split="train", inputs=["image"], normalize="none")
    train = np.flatnonzero(local.split.values == "train")
    np.testing.assert_array_equal(data.indices, train)
    x, y = data.batch(list(range(len(data))))
    np.testing.assert_array_equal(x.numpy().reshape(len(train), *local.image.shape[1:]), local.image.values[train])
    np.testing.assert_allclose(y.numpy()[:, 0], local.a.values[train], rtol=1e-6)


def test_file_url_generate_split_and_exports(local, threads, tmp_path):
    local = popstore.open_store(local).load()
    url = f"file://{tmp_path}/ramp.zarr"
    assert store_location(url) == f"{tmp_path}/ramp.zarr"
    ds = generate_and_split(url, threads)
    xr.testing.assert_identical(ds.load().drop_attrs(), local.drop_attrs())
    h5 = to_hdf5(url, f"file://{tmp_path}/ramp.nc")
    with xr.open_dataset(h5, engine="h5netcdf") as f:
        np.testing.assert_array_equal(f.image.values, local.image.values)
        assert list(f.split.values) == list(local.split.values)


def test_exports_to_and_from_memory_urls(local):
    ref = popstore.open_store(local).load()
    assert to_hdf5(local, "memory://out/ramp.nc") == "memory://out/ramp.nc"
    with fsspec.open("memory://out/ramp.nc") as f, xr.open_dataset(f, engine="h5netcdf") as h5:
        np.testing.assert_array_equal(h5.image.values, ref.image.values)
    folder = to_legacy(local, "memory://out/legacy", progress=False)
    back = from_legacy(folder, "memory://out/back.zarr").load()
    np.testing.assert_array_equal(back.image.values, ref.image.values)
    assert list(back.split.values) == list(ref.split.values)
