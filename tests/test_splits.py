"""Splits: mlpoppyns fractions, disjointness, groups kept together; label statistics against numpy."""

import numpy as np
import pytest

import popstore
from popstore.priors import sample_table
from popstore.splits import assign_splits
from popstore.store import open_store
from toy_simulators import Ramp


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("split") / "s.zarr"
    params = sample_table(Ramp().parameters, 200, seed=4)
    popstore.generate(Ramp(n=4), params, path, client, samples_per_chunk=25, progress=False)
    return path


def test_fractions_follow_mlpoppyns_semantics():
    s = assign_splits(1000, test=0.2, valid=0.1, seed=0)
    assert (s == "test").sum() == 200          # 20% of the whole set
    assert (s == "valid").sum() == 80          # 10% of the remaining 800
    assert (s == "train").sum() == 720


def test_split_is_disjoint_and_stored_as_coordinate(store):
    popstore.split(store, test=0.1, valid=0.2, seed=5)
    ds = open_store(store)
    assert "split" in ds.coords and ds["split"].dims == ("sample",)
    subsets = {k: set(ds.sample.values[ds.split.values == k]) for k in ("train", "valid", "test")}
    assert sum(map(len, subsets.values())) == 200
    assert not (subsets["train"] & subsets["valid"] or subsets["train"] & subsets["test"]
                or subsets["valid"] & subsets["test"])
    assert len(subsets["test"]) == 20 and len(subsets["valid"]) == 36
    assert ds["split"].attrs["test_fraction"] == 0.1 and ds["split"].attrs["seed"] == 5
    assert ds.sel(sample=ds.split == "train").sizes["sample"] == 144


def test_split_is_reproducible_and_changes_with_seed(store):
    a = popstore.split(store, seed=1).values
    b = popstore.split(store, seed=1).values
    c = popstore.split(store, seed=2).values
    assert (a == b).all() and not (a == c).all()


def test_label_statistics_match_numpy(store):
    popstore.split(store, test=0.1, valid=0.1, seed=3)
    ds = open_store(store)
    train = ds.split.values == "train"
    for lab in ("a", "b"):
        v = ds[lab].values
        full = ds.label_stats.sel(subset="full", label=lab)
        np.testing.assert_allclose(full.sel(statistic=["mean", "std", "min", "max"]).values,
                                   [v.mean(), v.std(), v.min(), v.max()], rtol=1e-12)
        tr = ds.label_stats.sel(subset="train", label=lab)
        np.testing.assert_allclose(tr.sel(statistic=["mean", "std", "min", "max"]).values,
                                   [v[train].mean(), v[train].std(), v[train].min(), v[train].max()], rtol=1e-12)


def test_groups_are_never_split(store):
    groups = (np.arange(200) // 10).astype(np.int64)  # e.g. 10 maps per simulation
    popstore.store.write_variables(store, {"simulation": ("sample", groups)})
    popstore.split(store, test=0.1, valid=0.1, seed=0, groups="simulation")
    s = open_store(store)["split"].values.reshape(20, 10)
    assert (s == s[:, :1]).all()
    assert (s[:, 0] == "test").sum() == 2


def test_incomplete_store_is_refused(tmp_path, client):
    path = tmp_path / "s.zarr"
    params = sample_table(Ramp().parameters, 20, seed=4)
    threshold = float(np.sort(params["a"].values)[-2])
    popstore.generate(Ramp(n=4, fail_above=threshold), params, path, client, samples_per_chunk=5, progress=False)
    with pytest.raises(ValueError, match="1 samples are not done"):
        popstore.split(path)
    s = popstore.split(path, allow_incomplete=True).values
    assert (s == "excluded").sum() == 1


def test_flagged_samples_are_excluded(store):
    flags = np.zeros(200, dtype=np.int64)
    flags[[3, 50, 199]] = 1  # e.g. populations whose birth rate exceeded the maximum
    popstore.store.write_variables(store, {"aborted": ("sample", flags)})
    s = popstore.split(store, test=0.1, valid=0.1, seed=0, exclude="aborted").values
    assert (s == "excluded").sum() == 3 and (s[[3, 50, 199]] == "excluded").all()
    ds = open_store(store)
    a = np.delete(ds["a"].values, [3, 50, 199])
    assert float(ds.label_stats.sel(subset="full", label="a", statistic="mean")) == pytest.approx(a.mean())
