"""What a compressor buys on popstore's maps: compression ratio against decode speed.

Simulates chunks of real popstore outputs (``--chunk`` samples each): the
``density`` and ``temperature`` maps of ``gaussian_fields`` (the data of
``benchmarks/bench_loading.py``, smooth float32 fields) and count and mean maps
of ``pulsar_full`` (``--pulsar-stars`` stars, a tenth of its default: sparser
maps, the more compressible case). Encodes every chunk with each candidate
codec chain (all ending in popstore's ``crc32c`` checksum) and prints per map
kind: compression ratio (raw / stored bytes), encode and decode MB/s of decoded
data on one thread (decode into a reused array, checksum verified with
:func:`popstore.codecs.crc32c`, as :class:`popstore.zarrchunks.ChunkReader`
does) and the decode CPU time per MiB; and the speed of the two crc32c
implementations at hand. Every codec is timed round-robin over ``--repeats``
rounds (best of them: a shared machine only slows things down). Finally it
prints what ``compression="auto"`` (:func:`popstore.store.auto_compression`)
picks for each map kind.

    python benchmarks/bench_codecs.py [--chunk 64] [--npix 128] [--pulsar-stars 30000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numcodecs
import numpy as np

from popstore.codecs import crc32c
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.store import AUTO_MIN_RATIO, auto_compression

#: candidate codec chains before the checksum: name -> numcodecs codec (None: stored raw)
CODECS = {
    "none (raw + crc32c)": None,
    "lz4 shuffle (popstore lz4)": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    "lz4 bitshuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
    "lz4 noshuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.NOSHUFFLE),
    "zstd 1 bitshuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE),
    "zstd 5 bitshuffle (popstore zstd)": numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE),
}


def chunks_of(name: str, n: int, chunk: int, **config) -> dict[str, np.ndarray]:
    """One chunk of ``chunk`` samples of every float32 map output of simulator ``name``."""
    sim = get_simulator(name, **config)
    table = sample_table(sim.parameters, chunk, seed=n)
    outs = [sim.simulate(dict(row), seed=i) for i, (_, row) in enumerate(table.iterrows())]
    return {o.name: np.stack([s[o.name] for s in outs]).astype(np.float32)
            for o in sim.outputs if o.role == "input" and len(o.dims) >= 2}


def measure(data: np.ndarray, codec, repeats: int) -> tuple[float, float, float, float]:
    """Ratio, encode MB/s, decode MB/s (checksum + decode into a reused array) and decode CPU s/MiB."""
    raw = np.ascontiguousarray(data)
    enc_best = dec_best = cpu_best = np.inf
    out = np.empty_like(raw)
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = bytes(codec.encode(raw)) if codec is not None else raw.tobytes()
        stored = body + crc32c(body)
        enc_best = min(enc_best, time.perf_counter() - t0)
        buf = np.frombuffer(stored, dtype=np.uint8)
        t0, c0 = time.perf_counter(), time.thread_time()
        assert crc32c(buf[:-4]) == buf[-4:].tobytes()
        if codec is not None:
            codec.decode(buf[:-4], out=out.reshape(-1).view(np.uint8))
        else:
            out.reshape(-1).view(np.uint8)[:] = buf[:-4]  # the file read of a raw chunk lands in place
        dec_best, cpu_best = min(dec_best, time.perf_counter() - t0), min(cpu_best, time.thread_time() - c0)
    assert np.array_equal(out.view(np.uint32), raw.view(np.uint32))
    mb = raw.nbytes / 1e6
    return raw.nbytes / len(stored), mb / enc_best, mb / dec_best, cpu_best / (raw.nbytes / 2**20)


def checksum_speeds(data: np.ndarray, repeats: int) -> dict[str, float]:
    """GB/s of each crc32c implementation over ``data``'s bytes (best of ``repeats``, round-robin)."""
    import google_crc32c

    impls = {"google_crc32c (zarr's)": google_crc32c.value, "crc32c package (popstore.codecs.crc32c)": crc32c}
    best = dict.fromkeys(impls, np.inf)
    for _ in range(repeats):
        for name, fn in impls.items():
            t0 = time.perf_counter()
            for _ in range(10):
                fn(data)
            best[name] = min(best[name], (time.perf_counter() - t0) / 10)
    return {name: data.nbytes / t / 1e9 for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=64, help="samples per chunk")
    ap.add_argument("--npix", type=int, default=128, help="gaussian_fields map size")
    ap.add_argument("--pulsar-stars", type=int, default=30_000, help="pulsar_full stars per sample")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    numcodecs.blosc.use_threads = False  # one core per chunk, as the loader decodes
    maps = {f"gaussian_fields {k}": v for k, v in chunks_of("gaussian_fields", 0, args.chunk, npix=args.npix).items()}
    pulsar = chunks_of("pulsar_full", 1, max(args.chunk // 4, 2), n_stars=args.pulsar_stars)
    maps.update({f"pulsar_full {k}": v for k, v in pulsar.items() if k in ("position_map_xy", "velocity_map_xy_vr",
                                                                          "ppdot_map")})
    first = next(iter(maps.values()))
    print(f"checksum alone over {first.nbytes / 2**20:.0f} MiB: " + ", ".join(
        f"{name} {gbs:.1f} GB/s" for name, gbs in checksum_speeds(first, args.repeats).items()))
    for name, data in maps.items():
        zeros = float(np.mean(data == 0))
        print(f"\n{name}: {data.shape[0]} samples of {data.shape[1:]} float32, {data.nbytes / 2**20:.2f} MiB, "
              f"{100 * zeros:.0f}% zeros, {100 * np.mean(np.isnan(data)):.0f}% NaN")
        print(f"  {'codec':<36}{'ratio':>7}{'encode MB/s':>13}{'decode MB/s':>13}{'decode CPU ms/MiB':>19}")
        for codec_name, codec in CODECS.items():
            ratio, enc, dec, cpu = measure(data, codec, args.repeats)
            print(f"  {codec_name:<36}{ratio:7.2f}{enc:13.0f}{dec:13.0f}{1e3 * cpu:19.3f}")
        print(f"  compression='auto' picks: {auto_compression(data)!r} (lz4 when it stores the chunk "
              f">= {AUTO_MIN_RATIO}x smaller)")


if __name__ == "__main__":
    main()
