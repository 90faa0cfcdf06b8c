"""Whole chunks of a Zarr 3 array, decoded by the array's own codecs without zarr's async machinery.

A training loader reads a store one chunk along the first (``sample``) axis at a
time. ``zarr.Array.__getitem__`` does that correctly but pays for an event-loop
round trip, selection planning and a copy into a fresh output array per call,
and decodes into freshly allocated memory: on small machines faulting in those
pages costs as much as decompressing (``benchmarks/bench_loading.py`` prints the
breakdown). :class:`ChunkReader` reads a chunk's bytes from the store and runs
them through every codec of the array's codec pipeline in order, synchronously
(the codecs' own ``_decode_sync``, zarr's ``SupportsSyncCodec`` protocol), so
checksums (``crc32c``) are verified and any filter the store names is applied;
a Blosc or Zstd stage whose output is the raw array writes straight into a
recycled array, and so does the file read of an uncompressed chunk (its
``crc32c`` checksum then verified on the array's own bytes); an uncompressed
chunk can also be read into many pieces (:meth:`ChunkReader.read_into`) or
memory-mapped (:meth:`ChunkReader.map`). Arrays this cannot handle (sharded, chunked along other axes, codecs
without a synchronous decode, irregular grids) fall back to
``zarr.Array.__getitem__`` on the chunk-aligned slice, which is just as honest,
only slower.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.abc.codec import SupportsSyncCodec
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.core.sync import sync
from zarr.storage import LocalStore

from popstore.codecs import CorruptChunkError, check_blosc_frame, crc32c, crc32c_value

#: zarr codecs whose numcodecs codec (this attribute) can decode into a given array
DECODE_INTO = {BloscCodec: "_blosc_codec", ZstdCodec: "_zstd_codec"}
#: Bytes of a chunk read by one ``os.preadv`` in :meth:`ChunkReader.read_into` before their checksum is
#: computed: small enough to be still in the CPU cache (about 10% less CPU than checking after the whole file).
CHECK_BYTES = 2**19
#: Most buffers one ``os.preadv`` call takes (the system's ``IOV_MAX``).
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
#: Allocates an uninitialised array of a shape and dtype (e.g. from a pool of recycled arrays).
Allocator = Callable[[tuple[int, ...], np.dtype], np.ndarray]


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


class ChunkReader:
    """Reads chunk ``c`` of ``array`` along axis 0: rows ``c * chunk`` to ``(c + 1) * chunk``.

    Thread safe: decoding runs in the calling thread (Blosc, LZ4/Zstd and file reads
    release the GIL), so a thread pool decodes several chunks at once.
    """

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.chunk = int(array.chunks[0])
        self.n_chunks = -(-array.shape[0] // self.chunk) if array.shape[0] else 0
        self.dtype = array.dtype
        a = array._async_array
        self._store_path = a.store_path
        self._metadata = a.metadata
        self._prototype = default_buffer_prototype()
        self._path = Path(a.store_path.store.root) / a.store_path.path \
            if isinstance(a.store_path.store, LocalStore) else None
        self._buffers = threading.local()  # per thread: compressed bytes that a Blosc stage consumes
        pipeline = a.codec_pipeline
        #: chunks are uncompressed local files in native byte order, which :meth:`read_into` and :meth:`map` read
        self.raw_file = False
        self.direct = (
            a.metadata.zarr_format == 3
            and isinstance(a.metadata.chunk_grid, RegularChunkGrid)
            and tuple(array.chunks[1:]) == tuple(array.shape[1:])
            and isinstance(pipeline, BatchedCodecPipeline)
            and all(isinstance(codec, SupportsSyncCodec) for codec in pipeline)
        )
        if self.direct:
            spec = a.metadata.get_chunk_spec((0,) * array.ndim, a.config, self._prototype)
            self._aa, (self._ab, ab_specs), self._bb = pipeline._codecs_with_resolved_metadata_batched([spec])
            self._ab_spec = ab_specs[0]
            self._spec = spec
            # the raw array comes out of the last byte stage (or the file itself): decode/read straight into
            # the output array. Otherwise each codec's own decode, in order, allocating as zarr does.
            plain = (not self._aa and isinstance(self._ab, BytesCodec)
                     and (self._ab.endian is None or self._ab.endian.value == sys.byteorder))
            first = self._bb[0][0] if self._bb else None
            kind = next((attr for cls, attr in DECODE_INTO.items() if isinstance(first, cls)), None)
            self._decode_into = getattr(first, kind) if plain and kind else None
            # a Blosc frame is checked against its buffer before numcodecs decodes it (popstore.codecs)
            self._blosc_frame = isinstance(first, BloscCodec)
            self.raw_file = plain and self._path is not None and (
                not self._bb or (len(self._bb) == 1 and isinstance(first, Crc32cCodec)))
            self._checksum = bool(self._bb)  # raw bytes followed by their crc32c (popstore's codec "none")

    def rows(self, c: int) -> int:
        """Number of array rows in chunk ``c`` (the last chunk may be short)."""
        return min(self.chunk, self.array.shape[0] - c * self.chunk)

    def _get(self, key: str, reuse: bool):
        """The stored bytes of one chunk key (``None`` if the chunk was never written). ``reuse``: into
        this thread's buffer, which the next call overwrites (only when decoding copies them out)."""
        if self._path is None:
            return sync((self._store_path / key).get(self._prototype))
        try:
            with open(self._path / key, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                buf = getattr(self._buffers, "data", None) if reuse else None
                if buf is None or len(buf) < size:
                    buf = np.empty(size, dtype=np.uint8)
                    if reuse:
                        self._buffers.data = buf
                data = buf[:f.readinto(buf[:size])]
        except FileNotFoundError:
            return None
        return self._prototype.buffer.from_array_like(data)

    def read_into(self, c: int, pieces: Sequence[np.ndarray]) -> None:
        """The bytes of uncompressed chunk ``c``, in file order, straight into ``pieces``.

        ``pieces`` are C-contiguous arrays of ``self.dtype`` (e.g. the rows of a chunk that go to
        different batches) whose bytes add up to one whole chunk (``chunk x`` the row size, also for the
        last, short chunk: Zarr stores it padded). ``os.preadv`` copies the bytes once, a call per
        :data:`CHECK_BYTES` of pieces (at most :data:`IOV_MAX` pieces) when the checksum is checked, else
        one call; the trailing crc32c checksum, if the array has one, is computed over the pieces in file
        order, each group's right after its read. Raises :class:`CorruptChunkError` naming the chunk if
        the file is not exactly that long or its checksum does not match; a chunk never written gives
        the array's fill value.
        """
        key = self._metadata.encode_chunk_key((c,) + (0,) * (self.array.ndim - 1))
        expected = sum(p.nbytes for p in pieces) + 4 * self._checksum
        try:
            fd = os.open(self._path / key, os.O_RDONLY)
        except FileNotFoundError:
            for p in pieces:
                p[...] = self._spec.fill_value
            return
        stored = bytearray(4)
        value = 0
        check = self._checksum
        try:
            size = os.fstat(fd).st_size
            group_limit = CHECK_BYTES if check else expected
            done = start = 0
            while start < len(pieces):  # groups of about CHECK_BYTES, checked while they are in the CPU cache
                end, group_bytes = start, 0
                while end < len(pieces) and end - start < IOV_MAX and group_bytes < group_limit:
                    group_bytes += pieces[end].nbytes
                    end += 1
                done += os.preadv(fd, pieces[start:end], done)
                for p in pieces[start:end] if check else ():
                    value = crc32c_value(p, value)
                start = end
            if self._checksum:
                done += os.preadv(fd, [stored], done)
        finally:
            os.close(fd)
        if size != expected or done != expected:
            raise CorruptChunkError(f"chunk {self.array.store_path}/{key} is corrupt: {size} bytes, not {expected}")
        if check and value.to_bytes(4, "little") != stored:
            raise CorruptChunkError(f"chunk {self.array.store_path}/{key} is corrupt: its crc32c checksum "
                                    "does not match its bytes")

    def map(self, c: int) -> np.ndarray:
        """Uncompressed chunk ``c`` as a read-only array over its memory-mapped file, checked once.

        Shape ``(chunk, *array.shape[1:])`` (the last, short chunk too: Zarr stores it padded). The
        pages are the OS page cache's own: reading the array copies nothing and faults in no fresh
        memory, so a chunk kept mapped costs one copy per sample read from it, without a system call.
        The file's length and crc32c checksum (if the array has one) are checked over the mapping here,
        once (:class:`CorruptChunkError` naming the chunk); a chunk never written gives an array of the
        fill value. The mapping stays valid while the array lives: a file replaced by a new one (Zarr's
        ``LocalStore`` writes a temporary file and renames it) leaves the mapping on the old,
        checked bytes; a file changed in place shows its new bytes unchecked, and one truncated in place
        raises SIGBUS (the process dies) when a page past its new end is read, as for any mapped file.
        """
        key = self._metadata.encode_chunk_key((c,) + (0,) * (self.array.ndim - 1))
        shape = (self.chunk, *self.array.shape[1:])
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        try:
            fd = os.open(self._path / key, os.O_RDONLY)
        except FileNotFoundError:
            return np.full(shape, self._spec.fill_value, dtype=self.dtype)
        try:
            size = os.fstat(fd).st_size
            if size != nbytes + 4 * self._checksum:
                raise CorruptChunkError(f"chunk {self.array.store_path}/{key} is corrupt: {size} bytes, not "
                                        f"{nbytes + 4 * self._checksum}")
            # MAP_POPULATE: the page tables are filled in this one call, not a fault per page later
            mapped = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        raw = np.frombuffer(mapped, dtype=np.uint8)
        if self._checksum and crc32c(raw[:nbytes]) != raw[nbytes:].tobytes():
            raise CorruptChunkError(f"chunk {self.array.store_path}/{key} is corrupt: its crc32c checksum "
                                    "does not match its bytes")
        return raw[:nbytes].view(self.dtype).reshape(shape)

    def read(self, c: int, empty: Allocator = _empty) -> np.ndarray:
        """Chunk ``c`` decoded: shape ``(rows(c), *array.shape[1:])``; ``empty`` allocates the output."""
        n = self.rows(c)
        if not self.direct:
            return self.array[c * self.chunk:c * self.chunk + n]
        shape = (self.chunk, *self.array.shape[1:])
        if self.raw_file:
            out = empty(shape, np.dtype(self.dtype))
            self.read_into(c, [out])
            return out[:n]
        key = self._metadata.encode_chunk_key((c,) + (0,) * (self.array.ndim - 1))
        data = self._get(key, self._decode_into is not None)
        if data is None:
            out = empty(shape, np.dtype(self.dtype))
            out[...] = self._spec.fill_value
            return out[:n]
        try:
            return self._decode(data, shape, empty)[:n]
        except CorruptChunkError:
            raise
        except Exception as err:  # a checksum, a frame or a codec that fails: name the chunk
            raise CorruptChunkError(f"chunk {self.array.store_path}/{key} is corrupt: {err}") from err

    def _verified(self, data):
        """Stored bytes without their trailing crc32c, which must match them (Zarr's ``crc32c`` decode,
        with the faster :func:`popstore.codecs.crc32c`)."""
        raw = data.as_numpy_array()
        if len(raw) < 4 or crc32c(raw[:-4]) != raw[-4:].tobytes():
            raise ValueError("crc32c checksum does not match the chunk's bytes")
        return self._prototype.buffer.from_array_like(raw[:-4])

    def _decode(self, data, shape: tuple[int, ...], empty: Allocator) -> np.ndarray:
        """Stored bytes of a whole chunk through the array's codecs (bytes-to-bytes stages in reverse)."""
        for i, (codec, specs) in enumerate(self._bb[::-1]):
            if self._decode_into is not None and i == len(self._bb) - 1:
                out = empty(shape, np.dtype(self.dtype))
                raw = data.as_numpy_array()
                if self._blosc_frame:
                    check_blosc_frame(memoryview(raw).cast("B"), out.nbytes)
                self._decode_into.decode(raw, out=out.reshape(-1).view(np.uint8))
                return out
            data = self._verified(data) if isinstance(codec, Crc32cCodec) else codec._decode_sync(data, specs[0])
        array = self._ab._decode_sync(data, self._ab_spec)
        for codec, specs in self._aa[::-1]:
            array = codec._decode_sync(array, specs[0])
        return np.asarray(array.as_ndarray_like()).reshape(shape)
