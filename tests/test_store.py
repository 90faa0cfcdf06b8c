"""Store schema: labelled coordinates, attrs, labels and seeds round-trip; bad stores fail clearly."""

import json
import warnings

import numpy as np
import pytest
import zarr

import popstore
from popstore.errors import UserError
from popstore.priors import sample_table
from popstore.store import SchemaError, choose_layout, open_store, sample_seeds
from toy_simulators import Ramp


@pytest.fixture(scope="module")
def ramp_store(tmp_path_factory, client):
    sim = Ramp()
    params = sample_table(sim.parameters, 20, seed=3)
    path = tmp_path_factory.mktemp("store") / "ramp.zarr"
    report = popstore.generate(sim, params, path, client, seed=11, samples_per_chunk=4, progress=False)
    assert report.complete and report.n_written == 20
    return sim, params, path


def test_schema_round_trip(ramp_store):
    sim, params, path = ramp_store
    ds = open_store(path)
    assert ds.attrs["popstore_schema_version"] == 1
    assert ds.attrs["simulator"] == "ramp" and ds.attrs["simulator_version"] == "1"
    assert json.loads(ds.attrs["simulator_config"]) == {"n": 8}
    assert ds.attrs["labels"] == ["a", "b"]
    # bin centres, edges, units
    np.testing.assert_allclose(ds["y"].values, np.linspace(-1, 1, 9)[:-1] + 0.125)
    edges = np.logspace(0, 2, 9)
    np.testing.assert_allclose(ds["x_bnds"].values, np.stack([edges[:-1], edges[1:]], 1))
    np.testing.assert_allclose(ds["x"].values, np.sqrt(edges[:-1] * edges[1:]))
    assert ds["x"].attrs["units"] == "s" and ds["x"].attrs["bounds"] == "x_bnds" and ds["x"].attrs["scale"] == "log"
    assert list(ds["band"].values) == ["g", "r"]
    assert ds["image"].dims == ("sample", "band", "y", "x")
    assert ds["image"].attrs == {"role": "input", "units": "K", "long_name": "toy map"}
    assert ds["n_bright"].attrs["role"] == "diagnostic"
    # labels and seeds are exactly the table's
    for p in ("a", "b"):
        np.testing.assert_array_equal(ds[p].values, params[p].values)
        assert ds[p].attrs["role"] == "label"
    assert ds["b"].attrs["prior_log"] == 1 and ds["b"].attrs["units"] == "K"
    np.testing.assert_array_equal(ds["seed"].values, sample_seeds(11, 20))
    assert ds["done"].values.all()


def test_maps_equal_direct_simulation(ramp_store):
    sim, params, path = ramp_store
    ds = open_store(path)
    seeds = ds["seed"].values
    for i in (0, 7, 19):
        expected = sim.simulate(params.iloc[i].to_dict(), int(seeds[i]))
        np.testing.assert_array_equal(ds["image"].values[i], expected["image"].astype("float32"))
        assert ds["n_bright"].values[i] == expected["n_bright"]


def test_chunks_along_sample_and_done_chunked_like_maps(ramp_store):
    _, _, path = ramp_store
    group = zarr.open_group(str(path), mode="r")
    assert group["image"].chunks == (4, 2, 8, 8)
    assert group["done"].chunks == (4,)
    assert group["a"].chunks == (4,)


def test_unknown_schema_version_is_a_clear_error(ramp_store, tmp_path):
    import shutil

    _, _, path = ramp_store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    zarr.open_group(str(copy), mode="r+").attrs["popstore_schema_version"] = 99
    with pytest.raises(SchemaError, match="schema version 99 is not supported"):
        open_store(copy)


def test_missing_required_variable_is_a_clear_error(ramp_store, tmp_path):
    import shutil

    _, _, path = ramp_store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    del zarr.open_group(str(copy), mode="r+")["done"]
    with pytest.raises(SchemaError, match="missing required done"):
        open_store(copy)


def test_not_a_store(tmp_path):
    with pytest.raises(UserError, match="no store at"):
        open_store(tmp_path / "nothing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SchemaError, match="not a Zarr"):
        open_store(tmp_path / "folder")


def test_layout_targets_mib_chunks_and_shards_large_stores():
    sim = Ramp(n=256)  # 2 x 256 x 256 float32 = 512 KiB per sample
    layout = choose_layout(sim, 50_000)
    assert layout.chunk == 8 and not layout.sharded  # 4 MiB chunks, 6,250 chunk files
    big = choose_layout(sim, 1_000_000)  # 125,000 chunks: grouped into 1,000 shards of 125 chunks
    assert big.chunk == 8 and big.sharded and big.block == 1000
    small = choose_layout(sim, 20)  # few samples: >= 1 MiB chunks but several tasks
    assert small.chunk == 2


def test_sharded_store_round_trip(tmp_path, client):
    sim = Ramp()
    params = sample_table(sim.parameters, 12, seed=5)
    path = tmp_path / "sharded.zarr"
    popstore.generate(sim, params, path, client, samples_per_chunk=2, samples_per_shard=6, progress=False)
    arr = zarr.open_group(str(path), mode="r")["image"]
    assert arr.shards == (6, 2, 8, 8) and arr.chunks == (2, 2, 8, 8)
    ds = open_store(path)
    assert ds.chunks["sample"] == (6, 6)
    expected = sim.simulate(params.iloc[9].to_dict(), int(ds["seed"].values[9]))["image"]
    np.testing.assert_array_equal(ds["image"].values[9], expected.astype("float32"))


def test_no_warnings_in_normal_use(ramp_store, tmp_path):
    _, _, path = ramp_store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_store(path)
        ds["image"].mean().compute()
