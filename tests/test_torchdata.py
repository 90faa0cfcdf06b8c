"""MapDataset and the chunk-aware loader: batches equal the stored arrays, labels invert exactly."""

import pickle
import threading
import tracemalloc

import numpy as np
import pytest
import torch
import xarray as xr

import popstore
from popstore.codecs import CorruptChunkError
from popstore.errors import UserError
from popstore.priors import sample_table
from popstore.splits import label_statistics
from popstore.simulators import get_simulator
from popstore.store import open_store
from popstore.torchdata import BATCH_BUFFERS, PREPARE_BATCHES, ChunkBatch, ChunkBatchSampler, _ArrayPool, open_group
from popstore.zarrchunks import ChunkReader
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


@pytest.fixture(scope="module")
def lz4_store(tmp_path_factory, client):
    """The samples of ``store``, in lz4-compressed chunks (decoded and gathered, not read into the batches)."""
    path = tmp_path_factory.mktemp("torch") / "lz4.zarr"
    params = sample_table(Ramp().parameters, 90, seed=8)
    popstore.generate(Ramp(n=8), params, path, client, samples_per_chunk=8, compression="lz4", progress=False)
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


def counting_chunk_reads(monkeypatch) -> list[int]:
    """The chunks read from their files (by ``ChunkReader.read_into`` or mapped by ``ChunkReader.map``, on
    any thread), in order."""
    calls = []
    for name in ("read_into", "map"):
        original = getattr(ChunkReader, name)

        def counting(self, c, *args, original=original):
            calls.append(c)  # also on the read threads (list.append is atomic)
            return original(self, c, *args)

        monkeypatch.setattr(ChunkReader, name, counting)
    return calls


@pytest.mark.parametrize("read_threads", [0, 2])  # 0: chunks mapped and gathered; 2: read into the batches
def test_chunk_aware_reads_read_each_chunk_once(store, monkeypatch, read_threads):
    assert ChunkReader(open_group(store)["image"]).raw_file  # this store keeps raw (checksummed) chunks
    data = popstore.MapDataset(store, split=None, cache_chunks=4, read_threads=read_threads)
    calls = counting_chunk_reads(monkeypatch)
    for _ in popstore.make_loader(data, batch_size=5, seed=0, buffer_chunks=2):
        pass
    assert sorted(calls) == list(range(int(np.ceil(90 / 8))))


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


def test_cache_keeps_a_split_that_fits_in_memory_across_epochs(tmp_path, monkeypatch):
    from zarr.codecs import BloscCodec, Crc32cCodec

    maps = np.random.default_rng(4).random((90, 1, 6, 6), dtype=np.float32)
    path = tmp_path / "lz4.zarr"
    xr.Dataset({"m": (("s", "c", "y", "x"), maps), "a": ("s", np.arange(90.0))}).to_zarr(
        path, encoding={"m": {"chunks": (8, 1, 6, 6), "compressors": (BloscCodec(cname="lz4"), Crc32cCodec())}})
    data = popstore.MapDataset(path, split=None, inputs=["m"], labels=["a"], normalize="none")  # every chunk fits
    decoded = []
    original = popstore.MapDataset._decode_chunk

    def counting(self, c):
        decoded.append(c)
        return original(self, c)

    monkeypatch.setattr(popstore.MapDataset, "_decode_chunk", counting)
    loader = popstore.make_loader(data, batch_size=5, seed=0)
    for _ in range(2):  # second epoch: no chunk decoded again
        np.testing.assert_array_equal(np.sort(served_samples(loader, np.arange(90.0, dtype=np.float32), maps)),
                                      np.arange(90))
    assert sorted(decoded) == list(range(12)) and not data._direct


def test_raw_chunks_that_fit_the_cache_are_mapped_and_checked_once(store, monkeypatch):
    """A split that fits the cache budget: each raw chunk file is mapped and its checksum checked once, and
    every epoch gathers from the mappings. A file replaced as Zarr writes (a temporary file renamed over it)
    leaves the mapped, checked bytes; a fresh dataset maps the new file and catches a flipped byte."""
    data = popstore.MapDataset(store, split=None, normalize="none", read_threads=2)
    ds = open_store(store)
    truth, labels = ds["image"].values, ds["a"].values.astype(np.float32)
    checked = []
    original = popstore.zarrchunks.crc32c

    def counting(data):
        checked.append(len(data))
        return original(data)

    monkeypatch.setattr(popstore.zarrchunks, "crc32c", counting)
    mapped = counting_chunk_reads(monkeypatch)
    loader = popstore.make_loader(data, batch_size=5, seed=0)
    assert loader.batch_sampler.keep and not any(b.fill for b in loader.batch_sampler)  # no read groups
    chunk_bytes = 8 * truth[0].nbytes
    for epoch in range(2):
        np.testing.assert_array_equal(np.sort(served_samples(loader, labels, truth)), np.arange(90))
        assert sum(checked) == (12 * chunk_bytes if epoch == 0 else 0)  # every chunk once, then none
        assert sorted(mapped) == (list(range(12)) if epoch == 0 else [])
        checked.clear(), mapped.clear()
    assert all(isinstance(data._cache[c], tuple) for c in range(12))
    chunk_file = store / "image" / "c" / "3" / "0" / "0" / "0"
    good = chunk_file.read_bytes()
    corrupted = bytearray(good)
    corrupted[100] ^= 0x01
    replacement = chunk_file.with_name("new")
    replacement.write_bytes(bytes(corrupted))
    try:
        replacement.replace(chunk_file)
        served_samples(loader, labels, truth)  # exact values: the mapping keeps the checked bytes
        fresh = popstore.make_loader(popstore.MapDataset(store, split=None, normalize="none", read_threads=2), 5)
        with pytest.raises(CorruptChunkError, match="image/c/3/0/0/0 is corrupt: its crc32c"):
            served_samples(fresh, labels, truth)
    finally:
        chunk_file.write_bytes(good)


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
@pytest.mark.parametrize("codec", ["raw", "lz4"])  # raw: mapped ahead, gathered; lz4: decoded ahead, gathered
def test_read_ahead_gives_the_same_batches_and_leaves_nothing_pending(request, codec, num_workers, monkeypatch):
    store = request.getfixturevalue({"raw": "store", "lz4": "lz4_store"}[codec])
    reads = []
    original = ChunkReader.map if codec == "raw" else popstore.MapDataset._decode_chunk

    def recording(*args, **kwargs):
        reads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(*((ChunkReader, "map") if codec == "raw" else (popstore.MapDataset, "_decode_chunk")),
                        recording)
    gathered = []
    original_gather = popstore.MapDataset.read_inputs

    def recording_gather(self, *args, **kwargs):
        gathered.append(threading.current_thread().name)
        return original_gather(self, *args, **kwargs)

    monkeypatch.setattr(popstore.MapDataset, "read_inputs", recording_gather)
    kwargs = dict(split="train", normalize="none")
    on_demand = popstore.make_loader(popstore.MapDataset(store, read_threads=0, **kwargs), batch_size=6, seed=4,
                                     num_workers=num_workers)
    ahead = popstore.MapDataset(store, read_threads=2, gather_ahead=True, **kwargs)
    loader = popstore.make_loader(ahead, batch_size=6, seed=4, num_workers=num_workers)
    n_chunks = len(np.unique(ahead.indices // ahead.chunk))
    for epoch in range(2):
        reads.clear()
        expected = list(on_demand)
        assert set(reads) <= {"MainThread"}  # read_threads=0: read and gathered on demand
        reads.clear()
        gathered.clear()
        for a, b in zip(expected, loader, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        if num_workers:
            continue
        assert ahead._pending == {} and ahead._filling == {} and ahead._prepared == {}
        assert ahead._direct == (codec == "raw")
        # the split fits the cache: decoded (raw: mapped) once on the read threads; every batch but the first
        # gathered on the batch thread, while the previous one is in use
        assert len(ahead._cache) == n_chunks
        assert len(reads) == (n_chunks if epoch == 0 else 0) and all(n.startswith("popstore-read") for n in reads)
        assert gathered.count("MainThread") == 1 and len(gathered) == len(loader)
        assert all(name.startswith("popstore-batch") for name in gathered if name != "MainThread")


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


def served_samples(loader, labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Store indices of the samples an epoch of ``loader`` serves (identified by their first label, unique in
    ``labels``), after checking that every input it served equals the stored maps ``truth`` of that sample."""
    order = np.argsort(labels)
    served = []
    for x, y in loader:
        sample = order[np.searchsorted(labels[order], y[:, 0].numpy())]
        np.testing.assert_array_equal(x.numpy(), truth[sample])
        served.append(sample)
    return np.concatenate(served)


@pytest.mark.parametrize("batch_size", [7, 8, 20])  # batches straddling buffers, aligned with them, spanning them
def test_streaming_reads_go_straight_into_batch_slots(fields_store, monkeypatch, batch_size):
    """Streaming (cache smaller than the store): each chunk file read once per epoch into the batches, and no
    chunk arrays."""
    data = popstore.MapDataset(fields_store, split=None, normalize="none", cache_chunks=2, read_threads=2)
    ds = open_store(fields_store)
    truth = np.stack([ds["density"].values, ds["temperature"].values], axis=1)
    labels = ds[data.labels[0]].values.astype(np.float32)
    reads = counting_chunk_reads(monkeypatch)
    loader = popstore.make_loader(data, batch_size=batch_size, seed=5, buffer_chunks=2)
    assert not loader.batch_sampler.keep
    epochs = [served_samples(loader, labels, truth) for _ in range(3)]
    for served in epochs:
        assert sorted(served.tolist()) == list(range(60))  # every sample once per epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    assert sorted(reads) == sorted(list(range(8)) * 2 * 3)  # 8 chunks x 2 inputs, once per epoch
    assert data._direct and data._cache == {} and data._chunk_arrays._arrays == [] and data._filling == {}
    addresses = set()  # where the chunk files were read to: every map served must be one of them (one copy)
    original = ChunkReader.read_into

    def recording(self, c, pieces, **kwargs):
        addresses.update(p.__array_interface__["data"][0] for p in pieces)
        return original(self, c, pieces, **kwargs)

    monkeypatch.setattr(ChunkReader, "read_into", recording)
    for x, _ in loader:
        assert {x[i, j].data_ptr() for i in range(len(x)) for j in range(2)} <= addresses


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_read_straight_into_batches_with_repeats_and_drops(store, drop_last):
    """A rank of three: padded streams serve some samples twice, drop_last leaves rows of a chunk unserved."""
    ds = open_store(store)
    labels = ds["a"].values.astype(np.float32)
    served = []
    for rank in range(3):
        data = popstore.MapDataset(store, split="train", normalize="none", cache_chunks=1, read_threads=2)
        loader = popstore.make_loader(data, batch_size=5, seed=2, rank=rank, world_size=3, drop_last=drop_last)
        served.append(served_samples(loader, labels, ds["image"].values))
        assert data._direct and data._filling == {}
    train = np.flatnonzero(ds.split.values == "train")
    everything = np.concatenate(served)
    assert len({len(s) for s in served}) == 1 and set(everything.tolist()) <= set(train.tolist())
    if not drop_last:  # every training sample at least once, some twice
        assert set(everything.tolist()) == set(train.tolist()) and len(everything) > len(train)


def test_streaming_reads_decode_into_recycled_chunk_arrays(lz4_store, monkeypatch):
    # read_threads=0: compressed chunks decoded into the chunk arrays, then gathered into batches, every epoch
    data = popstore.MapDataset(lz4_store, split=None, normalize="none", cache_chunks=2, read_threads=0)
    ds = open_store(lz4_store)
    truth, labels = ds["image"].values, ds["a"].values.astype(np.float32)
    n_chunks = len(np.unique(data.indices // data.chunk))
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
        np.testing.assert_array_equal(np.sort(served_samples(loader, labels, truth)), np.arange(len(data)))
    assert len(recycled) >= 5 * n_chunks  # every epoch decodes every chunk ...
    # ... into arrays already in memory: fresh ones only for those alive at once (cache, read-ahead, in use)
    assert recycled.count(False) <= data.cache_chunks + 2 * 4


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory):
    """A store written by plain xarray (no popstore attributes): 3 fields per map, chunks of 8 along ``sim``."""
    rng = np.random.default_rng(3)
    n = 50
    ds = xr.Dataset({
        "maps": (("sim", "field", "y", "x"), rng.random((n, 3, 4, 5), dtype=np.float32)),
        "omega_m": ("sim", rng.uniform(0.1, 0.5, n)),
        "sigma_8": ("sim", rng.uniform(0.6, 1.0, n)),
        "subset": ("sim", np.where(np.arange(n) % 5 == 0, "valid", "train").astype(object)),
        "is_train": ("sim", np.arange(n) % 5 != 0),
    })
    path = tmp_path_factory.mktemp("plain") / "plain.zarr"
    ds.to_zarr(path, encoding={"maps": {"chunks": (8, 3, 4, 5)}})
    return path, ds


def test_dataset_on_a_store_written_by_plain_xarray(plain_store):
    path, ds = plain_store
    kwargs = dict(inputs=["maps"], labels=["omega_m", "sigma_8"])
    train = popstore.MapDataset(path, split="train", split_variable="subset", **kwargs)
    train_idx = np.flatnonzero(ds.subset.values == "train")
    np.testing.assert_array_equal(train.indices, train_idx)
    assert train.chunk == 8 and train.channels == ["maps[0]", "maps[1]", "maps[2]"]
    # no label_stats in the store: computed from the training rows, so minmax spans [0, 1] exactly there
    np.testing.assert_allclose(train.y.min(0).values.numpy(), 0, atol=1e-7)
    np.testing.assert_allclose(train.y.max(0).values.numpy(), 1, atol=1e-6)
    valid = popstore.MapDataset(path, split="valid", split_variable="subset", **kwargs)
    np.testing.assert_array_equal(valid.stats, train.stats)  # validation normalised like training
    by_flag = popstore.MapDataset(path, split="is_train", **kwargs)  # a boolean variable names the split
    np.testing.assert_array_equal(by_flag.indices, train_idx)
    chosen = np.array([3, 17, 18, 40])
    by_index = popstore.MapDataset(path, split=chosen, normalize="none", **kwargs)
    np.testing.assert_array_equal(by_index.indices, chosen)
    expected_stats = label_statistics(np.stack([ds.omega_m.values, ds.sigma_8.values], 1)[chosen])
    np.testing.assert_allclose(by_index.stats, expected_stats)
    x, y = by_index.batch([0, 1, 2, 3])
    np.testing.assert_array_equal(x.numpy(), ds.maps.values[chosen])
    np.testing.assert_allclose(y.numpy()[:, 1], ds.sigma_8.values[chosen], rtol=1e-6)
    xs, ys = zip(*popstore.make_loader(train, batch_size=6, seed=2))  # a loader epoch covers the split once
    x, om = torch.cat(xs).numpy(), train.denormalize_labels(torch.cat(ys))[:, 0]
    order = np.argsort(om)
    np.testing.assert_allclose(om[order], np.sort(ds.omega_m.values[train_idx]), rtol=1e-6)
    np.testing.assert_array_equal(x[order], ds.maps.values[train_idx][np.argsort(ds.omega_m.values[train_idx])])


def test_inputs_with_different_channel_counts_interleave_as_stacked(tmp_path):
    """A 3-channel input, a map chunked differently and a float64 one: batches equal numpy's stacking."""
    rng = np.random.default_rng(4)
    n = 45
    ds = xr.Dataset({
        "maps": (("s", "f", "y", "x"), rng.random((n, 3, 4, 5), dtype=np.float32)),
        "mask": (("s", "y", "x"), rng.random((n, 4, 5), dtype=np.float32)),
        "dens": (("s", "y", "x"), rng.random((n, 4, 5))),
        "a": ("s", np.arange(n, dtype=float)),
    })
    path = tmp_path / "mixed.zarr"
    ds.to_zarr(path, encoding={"maps": {"chunks": (8, 3, 4, 5)}, "mask": {"chunks": (5, 4, 5)},
                               "dens": {"chunks": (8, 4, 5)}})
    truth = np.concatenate([ds.maps.values, ds.mask.values[:, None], ds.dens.values[:, None]], axis=1)
    for threads in (0, 2):
        data = popstore.MapDataset(path, split=None, inputs=["maps", "mask", "dens"], labels=["a"],
                                   normalize="none", cache_chunks=2, read_threads=threads)
        assert data.input_channels == [3, 1, 1] and len(data.channels) == 5
        positions = rng.permutation(n)
        np.testing.assert_array_equal(data.read_inputs(positions), truth[positions].astype(np.float32))
        xs, ys = zip(*popstore.make_loader(data, batch_size=7, seed=1, buffer_chunks=2))
        order = torch.cat(ys)[:, 0].numpy().astype(int)
        np.testing.assert_array_equal(torch.cat(xs).numpy(), truth[order].astype(np.float32))


def test_raw_inputs_with_different_channel_counts_are_mapped_and_interleaved(tmp_path):
    """Raw (crc32c) chunks of a 3-channel and a 1-channel input, the short last chunk included: gathered from
    the mapped files (the split fits the cache) or read into the batches (streaming), batches equal numpy's
    stacking, every sample once per epoch."""
    from zarr.codecs import Crc32cCodec

    rng = np.random.default_rng(6)
    n = 45
    maps, mask = rng.random((n, 3, 4, 5), dtype=np.float32), rng.random((n, 4, 5), dtype=np.float32)
    path = tmp_path / "raw.zarr"
    xr.Dataset({"maps": (("s", "f", "y", "x"), maps), "mask": (("s", "y", "x"), mask),
                "a": ("s", np.arange(n, dtype=float))}).to_zarr(
        path, encoding={v: {"chunks": (8, *shape), "compressors": (Crc32cCodec(),)}
                        for v, shape in (("maps", (3, 4, 5)), ("mask", (4, 5)))})
    truth = np.concatenate([maps, mask[:, None]], axis=1)
    for cache_chunks, mapped in ((None, True), (2, False)):
        data = popstore.MapDataset(path, split=None, inputs=["maps", "mask"], labels=["a"], normalize="none",
                                   cache_chunks=cache_chunks, read_threads=2)
        loader = popstore.make_loader(data, batch_size=7, seed=2, buffer_chunks=2)
        for _ in range(2):
            np.testing.assert_array_equal(np.sort(served_samples(loader, np.arange(n, dtype=np.float32), truth)),
                                          np.arange(n))
        assert loader.batch_sampler.keep == mapped and data._mapped
        assert all(isinstance(c, tuple) for c in data._cache.values()) and (len(data._cache) == 6) == mapped


def test_raw_chunks_beyond_the_mapping_limit_are_read_into_the_cache(store, monkeypatch):
    """More chunk files than a process may keep mapped: raw chunks are read into the cache's arrays instead."""
    monkeypatch.setattr(popstore.torchdata, "MAX_MAPPED", 11)  # 12 chunks of one input
    data = popstore.MapDataset(store, split=None, normalize="none", read_threads=2)
    ds = open_store(store)
    loader = popstore.make_loader(data, batch_size=5, seed=0)
    for _ in range(2):
        np.testing.assert_array_equal(np.sort(served_samples(loader, ds["a"].values.astype(np.float32),
                                                             ds["image"].values)), np.arange(90))
    assert data._direct and not data._mapped and len(data._cache) == 12
    assert all(isinstance(c, np.ndarray) for c in data._cache.values())


def test_plain_store_errors_name_the_fix(plain_store):
    path, _ = plain_store
    with pytest.raises(UserError, match="no Zarr store at"):
        popstore.MapDataset(path.parent / "absent.zarr", inputs=["maps"], labels=["omega_m"])
    with pytest.raises(UserError, match="pass inputs"):
        popstore.MapDataset(path, split=None)
    with pytest.raises(UserError, match="no variable 'split'"):
        popstore.MapDataset(path, split="train", inputs=["maps"], labels=["omega_m"])
    with pytest.raises(UserError, match=r"split indices must be integers in \[0, 50\)"):
        popstore.MapDataset(path, split=[0, 50], inputs=["maps"], labels=["omega_m"])


def test_reads_verify_crc32c_checksums(tmp_path):
    """Chunks go through the store's whole codec pipeline: a flipped byte fails the checksum."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    maps = np.random.default_rng(0).random((20, 1, 6, 6), dtype=np.float32)
    ds = xr.Dataset({"m": (("s", "c", "y", "x"), maps), "a": ("s", np.arange(20.0))})
    path = tmp_path / "crc.zarr"
    ds.to_zarr(path, encoding={"m": {"chunks": (5, 1, 6, 6), "compressors": (BloscCodec(cname="lz4"), Crc32cCodec())}})
    data = popstore.MapDataset(path, split=None, inputs=["m"], labels=["a"], normalize="none", read_threads=0)
    np.testing.assert_array_equal(data.read_inputs(np.arange(20)), maps)
    chunk_file = path / "m" / "c" / "1" / "0" / "0" / "0"
    corrupted = bytearray(chunk_file.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    chunk_file.write_bytes(bytes(corrupted))
    fresh = popstore.MapDataset(path, split=None, inputs=["m"], labels=["a"], normalize="none", read_threads=0)
    np.testing.assert_array_equal(fresh.read_inputs(np.arange(5)), maps[:5])
    with pytest.raises(ValueError, match="checksum"):
        fresh.read_inputs([7])


@pytest.mark.parametrize("row", [0, 1, 2, 5, None])  # the row of chunk 3 with a flipped byte (None: its checksum)
def test_reads_into_batches_name_a_corrupt_or_truncated_chunk(tmp_path, row):
    """Raw checksummed chunks read straight into the batch slots: the crc32c over the pieces catches a flipped
    byte wherever it lands (a sample of any batch, the checksum itself) and a truncated chunk."""
    from zarr.codecs import Crc32cCodec

    maps = np.random.default_rng(0).random((40, 1, 6, 6), dtype=np.float32)
    ds = xr.Dataset({"m": (("s", "c", "y", "x"), maps), "a": ("s", np.arange(40.0))})
    path = tmp_path / "raw.zarr"
    ds.to_zarr(path, encoding={"m": {"chunks": (8, 1, 6, 6), "compressors": (Crc32cCodec(),)}})
    data = popstore.MapDataset(path, split=None, inputs=["m"], labels=["a"], normalize="none", cache_chunks=1,
                               read_threads=2)
    loader = popstore.make_loader(data, batch_size=4, seed=1, buffer_chunks=2)
    np.testing.assert_array_equal(np.sort(served_samples(loader, ds["a"].values.astype(np.float32), maps)),
                                  np.arange(40))
    assert data._direct
    chunk_file = path / "m" / "c" / "3" / "0" / "0" / "0"
    good = chunk_file.read_bytes()
    corrupted = bytearray(good)
    corrupted[-1 if row is None else 144 * row + 7] ^= 0x10  # rows of 1 x 6 x 6 float32: 144 bytes
    for damaged in (bytes(corrupted), good[:-30]):
        chunk_file.write_bytes(damaged)
        with pytest.raises(CorruptChunkError, match="m/c/3/0/0/0 is corrupt"):
            for _ in loader:
                pass
    chunk_file.write_bytes(good)
    assert len(list(loader)) == 10  # and the store reads again


@pytest.mark.parametrize("compressors", ["default", "crc32c"])  # zstd (decoded, gathered), raw (into the batches)
def test_streaming_memory_stays_bounded_for_a_store_much_larger_than_the_cache(tmp_path, compressors):
    """125 chunks of 256 KiB through a 2-chunk cache: traced allocations stay at the pools' size."""
    from zarr.codecs import Crc32cCodec

    n, chunk = 2000, 16
    maps = np.random.default_rng(1).random((n, 64, 64), dtype=np.float32)  # 31 MiB
    path = tmp_path / "big.zarr"
    encoding = {"chunks": (chunk, 64, 64)} | ({"compressors": (Crc32cCodec(),)} if compressors == "crc32c" else {})
    xr.Dataset({"m": (("s", "y", "x"), maps), "a": ("s", np.arange(n, dtype=float))}).to_zarr(
        path, encoding={"m": encoding})
    data = popstore.MapDataset(path, split=None, inputs=["m"], labels=["a"], normalize="none", cache_chunks=2,
                               read_threads=2)
    loader = popstore.make_loader(data, batch_size=8, seed=0, buffer_chunks=1)
    chunk_bytes = chunk * 64 * 64 * 4
    tracemalloc.start()
    total = 0.0
    for x, y in loader:
        total += float(x.double().sum())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(total, maps.sum(dtype=np.float64), rtol=1e-9)  # every sample read once
    assert data._direct == (compressors == "crc32c")
    # pools: cache + in-flight chunk arrays, batch arrays (recycled, gathered ahead, being read into), a compressed
    # chunk (decoding) or a chunk's unserved rows (reading into batches) per thread
    assert data._batch_arrays.size <= BATCH_BUFFERS + PREPARE_BATCHES + 3 * 2 + 1  # buffer: 2 batches of 8
    bound = (data.cache_chunks + 2 * data.read_threads + 8) * chunk_bytes \
        + data._batch_arrays.size * 8 * 64 * 64 * 4 \
        + (data.read_threads + 1) * chunk_bytes
    assert peak < bound < maps.nbytes / 5


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_disjoint_chunks_and_equal_batch_counts(store, drop_last):
    data = popstore.MapDataset(store, split="train")  # 72 samples, unevenly spread over 12 chunks
    world = 3
    samplers = [ChunkBatchSampler(data, batch_size=5, seed=1, num_workers=2, drop_last=drop_last, rank=r,
                                  world_size=world) for r in range(world)]
    for epoch in range(2):
        batches = [list(s) for s in samplers]
        assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(samplers[0])
        chunk_sets = [set((data.indices[np.concatenate(b)] // data.chunk).tolist()) for b in batches]
        assert all(not chunk_sets[i] & chunk_sets[j] for i in range(world) for j in range(i))
        seen = np.concatenate([np.concatenate(b) for b in batches])
        per_stream = samplers[0].per_stream
        if drop_last:  # every stream trimmed to the shortest, then whole batches only
            assert len(set(seen.tolist())) == len(seen) and len(seen) == world * 2 * (per_stream // 5 * 5)
        else:  # every sample at least once; the padding repeats fewer than a chunk per stream
            assert set(seen.tolist()) == set(range(len(data)))
            assert len(seen) == world * 2 * per_stream and len(seen) - len(data) < world * 2 * data.chunk


def _rank_epochs(rank: int, world_size: int, store: str, init_file: str, out: str) -> None:
    """One process of a 2-rank gloo job: two epochs through make_loader, rank and world size from torch.distributed."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    data = popstore.MapDataset(store, split="train", normalize="none", read_threads=1)
    loader = popstore.make_loader(data, batch_size=5, seed=7)
    for epoch in range(2):
        labels = torch.cat([y[:, 0] for _, y in loader])
        counts = [None] * world_size
        torch.distributed.all_gather_object(counts, len(loader))
        gathered = [torch.zeros_like(labels) for _ in range(world_size)]
        torch.distributed.all_gather(gathered, labels)  # equal lengths on every rank, as DDP needs
        if rank == 0:
            np.savez(f"{out}/epoch{epoch}.npz", labels=torch.stack(gathered).numpy(), counts=counts)
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_together_see_every_training_sample_each_epoch(store, tmp_path):
    torch.multiprocessing.start_processes(_rank_epochs, args=(2, str(store), str(tmp_path / "init"), str(tmp_path)),
                                          nprocs=2, start_method="spawn")
    ds = open_store(store)
    train_a = ds["a"].values[ds.split.values == "train"].astype(np.float32)
    previous = None
    for epoch in range(2):
        result = np.load(tmp_path / f"epoch{epoch}.npz")
        labels, counts = result["labels"], result["counts"]
        assert counts[0] == counts[1]
        # padding (drop_last=False): each sample at least once, the repeats come from a rank's own chunks
        assert set(labels.ravel().tolist()) == set(train_a.tolist())
        assert not set(labels[0].tolist()) & set(labels[1].tolist())
        assert labels.size - len(train_a) < 2 * 8
        if previous is not None:
            assert not np.array_equal(labels, previous)  # reshuffled
        previous = labels
