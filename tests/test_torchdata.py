"""MapDataset and the chunk-aware loader: batches equal the stored arrays, labels invert exactly."""

import pickle
import threading

import numpy as np
import pytest
import torch

import popstore
from popstore.errors import UserError
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.store import open_store
from popstore.torchdata import ChunkBatch, ChunkBatchSampler, _ArrayPool
from toy_simulators import Ramp


@pytest.fixture(scope="module")
def fields_store(tmp_path_factory, client):
    """Two input variables (density, temperature), so chunks are stacked into pooled arrays."""
    sim = get_simulator("gaussian_fields", npix=8)
    path = tmp_path_factory.mktemp("torch") / "fields.zarr"
    popstore.generate(sim, sample_table(sim.parameters, 60, seed=2), path, client, samples_per_chunk=8,
                      progress=False)
    popstore.split(path, test=0.0, valid=0.0, seed=0)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("torch") / "s.zarr"
    params = sample_table(Ramp().parameters, 90, seed=8)
    popstore.generate(Ramp(n=8), params, path, client, samples_per_chunk=8, progress=False)
    popstore.split(path, test=0.1, valid=0.1, seed=0)
    return path


def test_items_equal_stored_arrays(store):
    data = popstore.MapDataset(store, split="valid", normalize="none")
    ds = open_store(store).load()
    idx = np.flatnonzero(ds.split.values == "valid")
    assert len(data) == len(idx) and data.channels == ["image[0]", "image[1]"]
    for pos in (0, len(data) - 1):
        x, y = data[pos]
        np.testing.assert_array_equal(x.numpy(), ds["image"].values[idx[pos]])
        np.testing.assert_allclose(y.numpy(), [ds["a"].values[idx[pos]], ds["b"].values[idx[pos]]], rtol=1e-6)


@pytest.mark.parametrize("cache_chunks", [None, 1])  # 1: chunk arrays are evicted and decoded into again
def test_loader_batches_cover_the_split_once_and_equal_the_store(store, cache_chunks):
    data = popstore.MapDataset(store, split="train", normalize="none", cache_chunks=cache_chunks)
    ds = open_store(store).load()
    idx = np.flatnonzero(ds.split.values == "train")
    loader = popstore.make_loader(data, batch_size=10, seed=3)
    for _ in range(2):
        xs, ys = [], []
        for x, y in loader:
            xs.append(x)
            ys.append(y)
        x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy()
        assert len(x) == len(idx)
        order = np.argsort(y[:, 0])  # labels identify samples (a is continuous)
        truth = np.argsort(ds["a"].values[idx])
        np.testing.assert_array_equal(x[order], ds["image"].values[idx][truth])


def test_multi_worker_loader_matches_single_process(store):
    data = popstore.MapDataset(store, split="train")
    single = torch.cat([x for x, _ in popstore.make_loader(data, batch_size=7, seed=1, num_workers=2)])
    again = torch.cat([x for x, _ in popstore.make_loader(data, batch_size=7, seed=1, num_workers=0)])
    # same sampler seed -> same sample set; worker interleaving keeps batch order
    assert single.shape == again.shape
    torch.testing.assert_close(single.sum(dim=(1, 2, 3)).sort().values, again.sum(dim=(1, 2, 3)).sort().values)


@pytest.mark.parametrize("normalize", ["minmax", "standard"])
def test_label_normalisation_inverts_exactly(store, normalize):
    data = popstore.MapDataset(store, split="test", normalize=normalize)
    ds = open_store(store)
    idx = np.flatnonzero(ds.split.values == "test")
    physical = np.stack([ds["a"].values[idx], ds["b"].values[idx]], 1)
    np.testing.assert_allclose(data.denormalize_labels(data.normalize_labels(physical)), physical, rtol=1e-14)
    stats = ds.label_stats.sel(subset="train")
    if normalize == "minmax":  # the training split spans exactly [0, 1]
        train = popstore.MapDataset(store, split="train", normalize=normalize)
        np.testing.assert_allclose(train.y.min(0).values.numpy(), 0, atol=1e-7)
        np.testing.assert_allclose(train.y.max(0).values.numpy(), 1, atol=1e-6)
    else:
        expected = (physical - stats.sel(statistic="mean").values) / stats.sel(statistic="std").values
        np.testing.assert_allclose(data.y.numpy(), expected, rtol=1e-6)


def test_sampler_keeps_batches_within_buffers_and_workers(store):
    data = popstore.MapDataset(store, split=None)
    sampler = ChunkBatchSampler(data, batch_size=4, seed=0, buffer_chunks=2, num_workers=2)
    batches = list(sampler)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(len(data)))
    # a worker (every other batch) sees only the chunks of its own buffers
    chunks = [set((data.indices[b] // data.chunk).tolist()) for b in batches]
    w0 = set().union(*chunks[0::2][:-1])
    w1 = set().union(*chunks[1::2][:-1])
    assert not w0 & w1
    assert list(sampler) != batches  # the next epoch reshuffles


def test_chunk_aware_reads_decompress_each_chunk_once(store, monkeypatch):
    data = popstore.MapDataset(store, split=None, cache_chunks=4)
    calls = []
    original = type(data)._decode_chunk

    def counting(self, c):
        calls.append(c)  # also on the read-ahead threads (list.append is atomic)
        return original(self, c)

    monkeypatch.setattr(type(data), "_decode_chunk", counting)
    for _ in popstore.make_loader(data, batch_size=5, seed=0, buffer_chunks=2):
        pass
    assert sorted(calls) == sorted(set(calls)) and len(calls) == int(np.ceil(90 / 8))


def test_dataset_pickles_without_open_store(store):
    data = popstore.MapDataset(store, split="train")
    data[0]
    clone = pickle.loads(pickle.dumps(data))
    assert not clone._readers and not clone._cache
    torch.testing.assert_close(clone[3][0], data[3][0])


def test_clear_errors(store, tmp_path):
    with pytest.raises(UserError, match="no variables"):
        popstore.MapDataset(store, inputs=["nope"])
    with pytest.raises(ValueError, match="normalize"):
        popstore.MapDataset(store, normalize="zscore")


def test_plain_dataloader_with_default_collate(store):
    from torch.utils.data import DataLoader

    data = popstore.MapDataset(store, split="train")
    x, y = next(iter(DataLoader(data, batch_size=6, shuffle=False)))
    ref = data.batch(list(range(6)))
    torch.testing.assert_close(x, ref[0])
    torch.testing.assert_close(y, ref[1])


def test_cache_keeps_a_split_that_fits_in_memory_across_epochs(store, monkeypatch):
    data = popstore.MapDataset(store, split=None)  # default budget: every chunk of this store fits
    decoded = []
    original = type(data)._decode_chunk

    def counting(self, c):
        decoded.append(c)
        return original(self, c)

    monkeypatch.setattr(type(data), "_decode_chunk", counting)
    loader = popstore.make_loader(data, batch_size=5, seed=0)
    first = torch.cat([x for x, _ in loader])
    second = torch.cat([x for x, _ in loader])
    assert len(decoded) == int(np.ceil(90 / 8))  # second epoch: no chunk decoded again
    torch.testing.assert_close(first.sum(), second.sum())


def test_batches_group_chunks_and_name_the_chunks_read_next(store):
    data = popstore.MapDataset(store, split=None)  # 12 chunks of 8 samples (the last holds 2)
    sampler = ChunkBatchSampler(data, batch_size=4, seed=0, buffer_chunks=2)
    assert sampler.lookahead == 4  # batches per buffer of 2 x 8 samples
    batches = list(sampler)
    assert all(isinstance(b, ChunkBatch) for b in batches)
    chunks = [data.indices[b] // data.chunk for b in batches]
    for c in chunks:  # each chunk is one run of the batch, so it is copied in one go
        runs = c[np.flatnonzero(np.diff(c, prepend=-1))]
        assert len(runs) == len(set(runs.tolist()))
    for i, c in enumerate(chunks[1:], start=1):  # named ahead: by batch 0, or by the batch one buffer earlier
        hinted = batches[0].read_ahead if i <= sampler.lookahead else batches[i - sampler.lookahead].read_ahead
        assert set(c.tolist()) <= set(hinted)
    clone = pickle.loads(pickle.dumps(batches[0]))  # how a hint reaches a DataLoader worker
    assert clone == batches[0] and clone.read_ahead == batches[0].read_ahead


@pytest.mark.parametrize("num_workers", [0, 2])
def test_read_ahead_gives_the_same_batches_and_leaves_nothing_pending(store, num_workers, monkeypatch):
    threads = []
    original = popstore.MapDataset._decode_chunk

    def recording(self, c):
        threads.append((self.read_threads, threading.current_thread().name))
        return original(self, c)

    monkeypatch.setattr(popstore.MapDataset, "_decode_chunk", recording)
    kwargs = dict(split="train", normalize="none")
    on_demand = popstore.MapDataset(store, read_threads=0, **kwargs)
    ahead = popstore.MapDataset(store, read_threads=2, **kwargs)
    for a, b in zip(popstore.make_loader(on_demand, batch_size=6, seed=4, num_workers=num_workers),
                    popstore.make_loader(ahead, batch_size=6, seed=4, num_workers=num_workers), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if num_workers == 0:
        assert ahead._pending == {} and len(ahead._cache) == len(np.unique(ahead.indices // ahead.chunk))
        assert {name for n, name in threads if n == 0} == {"MainThread"}
        assert all(name.startswith("popstore-read") for n, name in threads if n == 2)


def test_batch_arrays_are_reused_only_once_released(store):
    data = popstore.MapDataset(store, split=None, normalize="none")
    first, _ = data.batch(list(range(8)))
    second, _ = data.batch(list(range(8, 16)))
    assert first.data_ptr() != second.data_ptr()  # a batch that is held is never written over
    address, kept = first.data_ptr(), second.clone()
    del first
    third, _ = data.batch(list(range(16, 24)))
    assert third.data_ptr() == address  # nothing holds the first batch any more: its array is reused
    for holder in (lambda x: x[0], lambda x: x.numpy(), lambda x: [x]):  # a view, an array, a container
        held, address = holder(second), second.data_ptr()
        del second
        second, _ = data.batch(list(range(8, 16)))
        assert second.data_ptr() != address
        torch.testing.assert_close(second, kept)
        del held
    np.testing.assert_array_equal(third.numpy(), open_store(store)["image"].values[16:24])


def test_streaming_reads_decode_into_recycled_chunk_arrays(fields_store, monkeypatch):
    data = popstore.MapDataset(fields_store, split=None, normalize="none", cache_chunks=2)  # decodes every epoch
    ds = open_store(fields_store)
    truth = np.stack([ds["density"].values, ds["temperature"].values], axis=1)
    recycled = []
    original = _ArrayPool.empty

    def recording(self, shape):
        pooled = {id(a) for a in self._arrays}  # ids only: holding the arrays would keep them busy
        out = original(self, shape)
        if self is data._chunk_arrays:  # (the batches are all kept below, so never recycled)
            recycled.append(id(out) in pooled)
        return out

    monkeypatch.setattr(_ArrayPool, "empty", recording)
    loader = popstore.make_loader(data, batch_size=7, seed=5, buffer_chunks=2)
    for _ in range(5):
        xs, ys = zip(*loader)
        x, a = torch.cat(xs).numpy(), torch.cat(ys)[:, 0].numpy()
        order = np.argsort(a)  # the amplitude label identifies a sample
        np.testing.assert_array_equal(x[order], truth[np.argsort(ds[data.labels[0]].values)])
    assert len(recycled) >= 5 * 8  # every epoch decodes all 8 chunks ...
    # ... into arrays already in memory: fresh ones only for those alive at once (cache, read-ahead, in use)
    assert recycled.count(False) <= data.cache_chunks + 2 * 4
