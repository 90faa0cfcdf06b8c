"""compression="auto": lz4 only where it pays, raw (checksummed) chunks elsewhere; round trips and damage."""

import json

import numcodecs
import numpy as np
import pandas as pd
import pytest

import popstore
from popstore.codecs import CorruptChunkError
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.store import AUTO_MIN_RATIO, auto_compression, open_store
from popstore.torchdata import open_group
from popstore.zarrchunks import ChunkReader
from toy_simulators import Counts

N, CHUNK, SEED = 12, 4, 3


def lz4_ratio(a: np.ndarray) -> float:
    a = np.ascontiguousarray(a)
    return a.nbytes / len(numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE).encode(a))


def codecs(path, name: str) -> list[str]:
    return [c["name"] for c in json.loads((path / name / "zarr.json").read_text())["codecs"]]


@pytest.fixture(scope="module")
def table():
    return pd.DataFrame({"rate": np.linspace(0.01, 0.05, N), "level": np.linspace(0.1, 0.9, N)})


def test_auto_keeps_continuous_maps_raw_and_compresses_sparse_ones():
    sim = get_simulator("gaussian_fields", npix=64)
    field = sim.simulate(dict(sample_table(sim.parameters, 1, seed=0).iloc[0]), seed=1)["density"]
    field = np.asarray(field, dtype=np.float32)
    sparse = np.random.default_rng(0).poisson(0.05, (64, 64)).astype(np.float32)  # 95% empty bins
    half = np.where(np.arange(64 * 64).reshape(64, 64) % 2 == 0, 0.0, field).astype(np.float32)
    assert lz4_ratio(field) < AUTO_MIN_RATIO and auto_compression(field) == "none"
    assert lz4_ratio(sparse) > 5 and auto_compression(sparse) == "lz4"
    assert auto_compression(np.zeros((8, 8), np.float32)) == "lz4"  # a constant map: lz4 stores ~nothing
    # the rule follows the measured ratio on either side of the threshold
    for a in (field, sparse, half, np.random.default_rng(1).random((32, 32)).astype(np.float32)):
        assert auto_compression(a) == ("lz4" if lz4_ratio(a) >= AUTO_MIN_RATIO else "none")


def test_auto_picks_per_output_and_round_trips_bit_identically(tmp_path, table, client):
    auto, lz4 = tmp_path / "auto.zarr", tmp_path / "lz4.zarr"
    popstore.generate(Counts(), table, auto, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    popstore.generate(Counts(), table, lz4, client, seed=SEED, samples_per_chunk=CHUNK, compression="lz4",
                      progress=False)
    assert codecs(auto, "counts") == ["bytes", "blosc", "crc32c"]
    assert codecs(auto, "field") == ["bytes", "crc32c"]  # raw, still checksummed
    assert codecs(lz4, "field") == ["bytes", "blosc", "crc32c"]
    assert json.loads(open_store(auto).attrs["compression"]) == {"counts": "lz4", "field": "none"}
    a, b = open_store(auto).load(), open_store(lz4).load()
    for name in ("counts", "field", "rate", "level", "seed", "done"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    # the raw chunks: file size = the chunk's bytes + the 4-byte checksum
    assert (auto / "field/c/1/0/0").stat().st_size == CHUNK * 32 * 32 * 4 + 4
    data = popstore.MapDataset(auto, split=None, inputs=["counts", "field"], labels=["rate"], normalize="none")
    x, _ = data.batch(np.arange(N))
    np.testing.assert_array_equal(x[:, 1].numpy(), b["field"].values.astype(np.float32))
    # resuming keeps the codecs it was made with, whatever is asked now
    report = popstore.generate(Counts(), table, auto, client, seed=SEED, samples_per_chunk=CHUNK,
                               compression="zstd", progress=False)
    assert report.n_skipped == N and codecs(auto, "field") == ["bytes", "crc32c"]


def test_a_flipped_byte_in_a_raw_chunk_fails_its_checksum(tmp_path, table, client):
    path = tmp_path / "s.zarr"
    popstore.generate(Counts(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    chunk = path / "field/c/1/0/0"  # samples 4-7, stored raw
    good = open_store(path)["field"].values
    raw = bytearray(chunk.read_bytes())
    raw[1000] ^= 0x01  # one bit of one float: the value would be silently wrong without the checksum
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError, match="field/c/1/0/0"):
        open_store(path)["field"].values
    reader = ChunkReader(open_group(path)["field"])
    assert reader.raw_file  # the direct path: read into the output array, checksum on its bytes
    np.testing.assert_array_equal(reader.read(0), good[:CHUNK])
    with pytest.raises(CorruptChunkError, match=r"field/c/1/0/0 is corrupt: its crc32c checksum"):
        reader.read(1)
    with pytest.raises(CorruptChunkError, match="field/c/1/0/0"):
        popstore.MapDataset(path, split=None, inputs=["field"], labels=["rate"])[5]
    chunk.write_bytes(bytes(raw[:-10]))  # truncated
    with pytest.raises(CorruptChunkError, match=r"field/c/1/0/0 is corrupt: \d+ bytes, not 16388"):
        reader.read(1)


def test_auto_falls_back_to_lz4_when_the_first_sample_fails(tmp_path, table, client):
    path = tmp_path / "s.zarr"
    failing = table.assign(level=np.r_[0.95, table["level"].values[1:]])  # only sample 0 is unphysical
    report = popstore.generate(Counts(fail_above=0.92), failing, path, client, seed=SEED, samples_per_chunk=CHUNK,
                               progress=False)
    assert report.failed["sample"].tolist() == [0]
    assert codecs(path, "field") == ["bytes", "blosc", "crc32c"] and codecs(path, "counts")[1] == "blosc"


def test_unknown_compression_is_refused_before_anything_runs(tmp_path, table):
    with pytest.raises(ValueError, match="unknown compression 'gzip'"):
        popstore.generate(Counts(), table, tmp_path / "s.zarr", seed=SEED, compression="gzip", progress=False)
    assert not (tmp_path / "s.zarr").exists()
