"""Chunk integrity: checksummed codecs, a Blosc decoder that cannot read past its input, named chunk errors.

Every array popstore writes ends its codec chain with Zarr 3's ``crc32c``
codec, after the compressor (:func:`checked`). Zarr decodes bytes-to-bytes
codecs in reverse order, so the checksum of a chunk is verified before the
decompressor sees a single byte: a truncated chunk or a flipped bit is an
error, never silently wrong numbers.

The checksum alone does not make decoding safe for every chunk content (a
crafted chunk can carry a valid checksum). numcodecs' Blosc wrapper
(numcodecs 0.16, c-blosc 1.21) trusts the 16-byte Blosc header: for a frame
stored uncompressed (the ``MEMCPYED`` flag, what Blosc writes for
incompressible data) it copies ``nbytes`` from the input without checking
that the input holds them, so a chunk truncated to half its size reads past
the end of its buffer: garbage for small chunks, a segmentation fault for
MiB-sized ones. :class:`GuardedBloscCodec` checks the header against the
buffer and the chunk's size first and is registered as the ``blosc``
implementation when this module is imported; stores keep the standard
``blosc`` codec name, so other Zarr readers still open them, and stores
written before checksums were added still open and read.

:class:`NamedChunkErrorPipeline` (the codec pipeline Zarr uses once this module
is imported) turns any decoding failure into a :class:`CorruptChunkError` that
names the chunk's key (variable and chunk index), e.g.
``store.zarr/image/c/3/0/0/0``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import crc32c as _crc32c
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_codec, register_pipeline

from popstore.errors import UserError

BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes
BLOSC_MEMCPYED = 0x02


class CorruptChunkError(UserError):
    """A chunk of a store cannot be decoded (checksum mismatch, truncated or invalid frame)."""


def checked(compressors: Sequence[Any] | None) -> tuple[Any, ...]:
    """``compressors`` followed by the ``crc32c`` checksum codec (for ``encoding[var]["compressors"]``)."""
    return (*(compressors or ()), Crc32cCodec())


def crc32c(data) -> bytes:
    """The 4 bytes Zarr's ``crc32c`` codec appends to ``data`` (a buffer): CRC-32C, little-endian.

    Computed by the ``crc32c`` package (hardware instructions, GIL released on large
    buffers): faster than ``google_crc32c``, Zarr's own, on 4 MiB chunks
    (``benchmarks/bench_codecs.py`` prints both).
    """
    return crc32c_value(data).to_bytes(4, "little")


def crc32c_value(data, value: int = 0) -> int:
    """CRC-32C of ``data`` (a buffer) continued from ``value``, the CRC-32C of the bytes before it:
    ``crc32c_value(b, crc32c_value(a))`` is the CRC-32C of ``a + b`` (pieces of one chunk in file order)."""
    return _crc32c.crc32c(data, value)


def check_blosc_frame(frame: memoryview | bytes, expected_nbytes: int | None) -> None:
    """Raise ``ValueError`` unless ``frame`` is a Blosc frame that decodes within its own bytes.

    Checked: the header fits, ``cbytes`` (the frame length the header claims)
    equals the buffer's length, ``nbytes`` (decoded size) equals the chunk's
    size when known, and an uncompressed (``MEMCPYED``) frame holds all
    ``nbytes`` after its header.
    """
    n = len(frame)
    if n < BLOSC_HEADER.size:
        raise ValueError(f"blosc frame of {n} bytes is shorter than its {BLOSC_HEADER.size}-byte header")
    _, _, flags, _, nbytes, _, cbytes = BLOSC_HEADER.unpack_from(frame)
    if cbytes != n:
        raise ValueError(f"blosc header claims {cbytes} bytes but the frame has {n} (truncated or corrupt)")
    if expected_nbytes is not None and nbytes != expected_nbytes:
        raise ValueError(f"blosc header decodes to {nbytes} bytes, the chunk holds {expected_nbytes}")
    if flags & BLOSC_MEMCPYED and cbytes != nbytes + BLOSC_HEADER.size:
        raise ValueError(f"uncompressed blosc frame of {cbytes} bytes cannot hold {nbytes} bytes")


class GuardedBloscCodec(BloscCodec):
    """Zarr's ``blosc`` codec with the frame checked by :func:`check_blosc_frame` before decoding."""

    def _decode_sync(self, chunk_bytes, chunk_spec):
        dtype = chunk_spec.dtype.to_native_dtype()
        expected = math.prod(chunk_spec.shape) * dtype.itemsize if dtype.kind not in "OTUS" else None
        check_blosc_frame(memoryview(chunk_bytes.as_numpy_array()).cast("B"), expected)
        return super()._decode_sync(chunk_bytes, chunk_spec)


class NamedChunkErrorPipeline(BatchedCodecPipeline):
    """Zarr's codec pipeline; a chunk that fails to decode raises :class:`CorruptChunkError` naming its key.

    On failure the batch is re-read one chunk at a time to find the culprit
    (the error path only; successful reads cost nothing extra).
    """

    async def read_batch(self, batch_info: Iterable, out, drop_axes: tuple[int, ...] = ()) -> None:
        batch_info = list(batch_info)
        try:
            await super().read_batch(batch_info, out, drop_axes)
        except CorruptChunkError:
            raise
        except Exception as first:
            for item in batch_info:
                try:
                    await super().read_batch([item], out, drop_axes)
                except Exception as err:
                    raise CorruptChunkError(f"chunk {_key(item[0])} is corrupt: {err}") from err
            raise first


def _key(byte_getter: Any) -> str:
    store = getattr(byte_getter, "store", None)
    root = getattr(store, "root", None)
    path = getattr(byte_getter, "path", str(byte_getter))
    return f"{root}/{path}" if root is not None else str(path)


register_codec("blosc", GuardedBloscCodec)
register_pipeline(NamedChunkErrorPipeline)
zarr.config.set({
    "codecs.blosc": f"{GuardedBloscCodec.__module__}.{GuardedBloscCodec.__qualname__}",
    "codec_pipeline.path": f"{NamedChunkErrorPipeline.__module__}.{NamedChunkErrorPipeline.__qualname__}",
})
