"""What the chunk checks cost a reader: crc32c after the compressor, and the Blosc frame check.

Writes the same float32 maps (smooth log-normal fields, like gaussian_fields;
``--n`` samples of ``--npix``^2, 64 samples per chunk) into three arrays: lz4
Blosc with crc32c (what popstore writes), lz4 Blosc without (stores written
before checksums, still read through the frame check), and uncompressed with
crc32c. Times full decodes of every chunk, interleaved round-robin over
``--repeats`` rounds so that a shared machine's drift hits each alike, and
prints the median MB/s (decoded bytes) and the ratios against lz4 without a
checksum. The frame check alone is timed on one chunk's frame.

    python benchmarks/bench_checksums.py [--n 4096] [--npix 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from popstore.codecs import check_blosc_frame, checked
from popstore.store import COMPRESSION


def fields(n: int, npix: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth log-normal maps (a Gaussian-filtered white noise, exponentiated), float32."""
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(npix), np.fft.fftfreq(npix), indexing="ij"))
    g = np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, npix, npix))) * np.exp(-(k * 20) ** 2)).real
    return np.exp(g / g.std()).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    data = fields(args.n, args.npix)
    variants = {
        "lz4 + crc32c (popstore)": checked(COMPRESSION["lz4"]),
        "lz4, no checksum (older stores)": COMPRESSION["lz4"],
        "uncompressed + crc32c": checked(COMPRESSION["none"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for i, (name, compressors) in enumerate(variants.items()):
            a = zarr.create_array(Path(tmp) / f"a{i}.zarr", shape=data.shape, chunks=(64, args.npix, args.npix),
                                  dtype="float32", compressors=compressors)
            a[:] = data
            arrays[name] = zarr.open_array(Path(tmp) / f"a{i}.zarr", mode="r")
        times: dict[str, list[float]] = {name: [] for name in arrays}
        for _ in range(args.repeats):
            for name, a in arrays.items():
                t0 = time.perf_counter()
                out = a[:]
                times[name].append(time.perf_counter() - t0)
                assert np.array_equal(out, data)
        frame = (Path(tmp) / "a1.zarr" / "c" / "0" / "0" / "0").read_bytes()
        t0 = time.perf_counter()
        for _ in range(10_000):
            check_blosc_frame(frame, 64 * args.npix * args.npix * 4)
        check_us = (time.perf_counter() - t0) / 10_000 * 1e6
    base = np.median(times["lz4, no checksum (older stores)"])
    print(f"{args.n} maps of {args.npix}^2 float32 ({data.nbytes / 1e6:.0f} MB), 64 per chunk, "
          f"median of {args.repeats} full reads")
    for name, t in times.items():
        print(f"  {name:34s} {data.nbytes / 1e6 / np.median(t):8.0f} MB/s   time vs lz4 without checksum: "
              f"{np.median(t) / base:5.2f}x")
    print(f"  Blosc frame check: {check_us:.1f} us per chunk of {64 * args.npix ** 2 * 4 / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
