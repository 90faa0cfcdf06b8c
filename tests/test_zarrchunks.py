"""ChunkReader: whole chunks equal zarr's own reads for every codec chain, checksums verified."""

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

from popstore.codecs import CorruptChunkError
from popstore.zarrchunks import ChunkReader

CHAINS = {
    "blosc-lz4": dict(compressors=[BloscCodec(cname="lz4", shuffle="shuffle")]),
    "blosc+crc32c": dict(compressors=[BloscCodec(cname="zstd", shuffle="bitshuffle"), Crc32cCodec()]),
    "crc32c-only": dict(compressors=[Crc32cCodec()]),
    "zstd": dict(compressors=[ZstdCodec(level=3, checksum=True)]),
    "gzip": dict(compressors=[GzipCodec()]),
    "none": dict(compressors=None),
    "big-endian": dict(compressors=[BloscCodec(cname="lz4")], serializer={"name": "bytes", "configuration": {"endian": "big"}}),
    "sharded": dict(compressors=[BloscCodec(cname="lz4")], shards=(16, 3, 4)),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_chunks_equal_zarr_reads(tmp_path, chain):
    values = np.random.default_rng(0).normal(size=(37, 3, 4)).astype(np.float32)
    array = zarr.create_array(tmp_path / "a.zarr", shape=values.shape, chunks=(8, 3, 4), dtype="float32",
                              fill_value=-1.0, **CHAINS[chain])
    array[:32] = values[:32]  # the last chunk (rows 32-36) is never written: the fill value
    reader = ChunkReader(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert reader.direct == (chain != "sharded")  # sharded arrays go through zarr's own __getitem__
    pooled = np.empty((8, 3, 4), dtype=np.float32)
    for c in range(5):
        expected = array[8 * c:8 * c + 8]
        np.testing.assert_array_equal(reader.read(c), expected)
        into = reader.read(c, lambda shape, dtype: pooled)
        np.testing.assert_array_equal(into, expected)
        if c < 4:  # written chunks: decoded (or read) straight into the given array where the chain allows
            assert np.shares_memory(into, pooled) == (chain in ("blosc-lz4", "blosc+crc32c", "crc32c-only", "zstd", "none"))
    assert reader.rows(4) == 5 and (reader.read(4) == -1).all()


def test_arrays_chunked_along_other_axes_fall_back_to_zarr(tmp_path):
    values = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)
    array = zarr.create_array(tmp_path / "b.zarr", shape=values.shape, chunks=(10, 3), dtype="float32")
    array[:] = values
    reader = ChunkReader(array)
    assert not reader.direct
    np.testing.assert_array_equal(reader.read(2), values[20:30])


def test_a_corrupted_chunk_fails_its_checksum(tmp_path):
    array = zarr.create_array(tmp_path / "c.zarr", shape=(16, 5), chunks=(8, 5), dtype="float64",
                              compressors=[BloscCodec(cname="lz4"), Crc32cCodec()])
    array[:] = np.arange(80.0).reshape(16, 5)
    path = tmp_path / "c.zarr" / "c" / "1" / "0"
    data = bytearray(path.read_bytes())
    data[5] ^= 0x10
    path.write_bytes(bytes(data))
    reader = ChunkReader(array)
    np.testing.assert_array_equal(reader.read(0), np.arange(40.0).reshape(8, 5))
    with pytest.raises(ValueError, match="checksum"):
        reader.read(1)


def test_stores_other_than_local_files_are_read_through_the_store(tmp_path):
    """A memory store has no files: chunk bytes come from the store's own ``get``, then the same codecs."""
    values = np.random.default_rng(2).normal(size=(20, 6)).astype(np.float32)
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=values.shape, chunks=(8, 6), dtype="float32",
                              compressors=[BloscCodec(cname="lz4"), Crc32cCodec()])
    array[:] = values
    reader = ChunkReader(array)
    assert reader.direct and reader._path is None
    pooled = np.empty((8, 6), dtype=np.float32)
    for c in range(3):
        np.testing.assert_array_equal(reader.read(c, lambda shape, dtype: pooled), values[8 * c:8 * c + 8])


def test_truncated_blosc_chunk_without_checksum_is_a_named_error(tmp_path):
    """The direct Blosc path checks the frame header first (popstore.codecs): a truncated chunk of a store
    written before checksums is a CorruptChunkError naming the chunk, never a read past the buffer."""
    from popstore.codecs import CorruptChunkError

    values = np.random.default_rng(1).random((8, 64, 64)).astype(np.float32)  # incompressible: a memcpyed frame
    zarr.create_array(tmp_path / "c.zarr", shape=values.shape, chunks=(4, 64, 64), dtype="float32",
                      compressors=[BloscCodec(cname="lz4")])[:] = values
    key = tmp_path / "c.zarr" / "c" / "1" / "0" / "0"
    key.write_bytes(key.read_bytes()[: key.stat().st_size // 2])
    reader = ChunkReader(zarr.open_array(tmp_path / "c.zarr", mode="r"))
    np.testing.assert_array_equal(reader.read(0), values[:4])
    with pytest.raises(CorruptChunkError, match=r"c/1/0/0 is corrupt: blosc header claims"):
        reader.read(1)


def test_read_into_scatters_rows_in_file_order_and_checks_them(tmp_path):
    """1,500 rows of a raw chunk to shuffled places: more pieces than one preadv takes, each checked."""
    values = np.random.default_rng(1).normal(size=(3000, 2, 2)).astype(np.float32)
    path = tmp_path / "raw.zarr"
    array = zarr.create_array(path, shape=values.shape, chunks=(1500, 2, 2), dtype="float32",
                              compressors=[Crc32cCodec()])
    array[:] = values
    reader = ChunkReader(zarr.open_array(path, mode="r"))
    assert reader.raw_file
    out = np.empty((1500, 2, 2), dtype=np.float32)
    order = np.random.default_rng(2).permutation(1500)
    reader.read_into(1, [out[i] for i in order])  # row r of the chunk goes to out[order[r]]
    np.testing.assert_array_equal(out[order], values[1500:])
    chunk_file = path / "c" / "1" / "0" / "0"
    good = chunk_file.read_bytes()
    corrupted = bytearray(good)
    corrupted[16 * 1400 + 3] ^= 0x01  # row 1400: in the second preadv
    for damaged, message in ((bytes(corrupted), "c/1/0/0 is corrupt: its crc32c"),
                             (good[:-8], "c/1/0/0 is corrupt: 23996 bytes")):
        chunk_file.write_bytes(damaged)
        with pytest.raises(CorruptChunkError, match=message):
            reader.read_into(1, [out[i] for i in order])


def test_map_gives_the_checked_chunk_file_as_a_read_only_array(tmp_path):
    """A raw chunk mapped: its rows exactly (the short last chunk padded as stored), read-only; a chunk never
    written is the fill value; a flipped byte or a truncated file is an error naming the chunk; a file renamed
    over the mapped one (as Zarr writes) leaves the mapped bytes."""
    values = np.random.default_rng(3).normal(size=(10, 3, 2)).astype(np.float32)
    path = tmp_path / "raw.zarr"
    array = zarr.create_array(path, shape=values.shape, chunks=(4, 3, 2), dtype="float32", fill_value=-1.0,
                              compressors=[Crc32cCodec()])
    array[:8] = values[:8]
    array[8:] = values[8:]
    reader = ChunkReader(zarr.open_array(path, mode="r"))
    mapped = reader.map(1)
    assert mapped.shape == (4, 3, 2) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, values[4:8])
    np.testing.assert_array_equal(reader.map(2)[:2], values[8:])
    (path / "c" / "1" / "0" / "0").rename(tmp_path / "chunk1")
    np.testing.assert_array_equal(reader.map(1), np.full((4, 3, 2), -1.0, dtype=np.float32))
    good = (tmp_path / "chunk1").read_bytes()
    corrupted = bytearray(good)
    corrupted[30] ^= 0x04
    replacement = tmp_path / "new"
    for damaged, message in ((bytes(corrupted), "c/1/0/0 is corrupt: its crc32c"),
                             (good[:-8], "c/1/0/0 is corrupt: 92 bytes, not 100")):
        replacement.write_bytes(damaged)
        replacement.rename(path / "c" / "1" / "0" / "0")
        with pytest.raises(CorruptChunkError, match=message):
            reader.map(1)
    np.testing.assert_array_equal(mapped, values[4:8])  # the first mapping still holds the checked bytes
