"""Dispersion measure from the YMW16 Galactic electron-density model, through a cached grid.

YMW16 (Yao, Manchester & Wang 2017, ApJ 835, 29) gives DM(l, b, d) by integrating
the free-electron density along the line of sight. The reference implementation is
C code; here it is called through the ``ymw16`` extension of the PyPI package
``pyymw16`` (D. C. Price; the same C sources as ``pygedm.ymw16``, whose Galactic
``dist_to_dm`` branch is identical, but without pygedm's NE2001 part that needs
libf2c). One call costs ~0.2 ms, far too slow for millions of stars, so
:class:`DMGrid` tabulates DM on an (l, b, d) grid once, caches it in a Zarr store
and interpolates trilinearly (vectorised). The interpolation error against direct
calls is measured by :func:`interpolation_error` (``benchmarks/bench_dm_grid.py``).

The ``pyymw16`` Python wrapper imports ``pkg_resources`` (gone from setuptools >= 81);
this module therefore calls the compiled ``ymw16.dmdtau`` directly and locates the
model's parameter files (``ymw16par.txt``, ``spiral.txt``) without importing the wrapper.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.interpolate import RegularGridInterpolator
from tqdm.auto import tqdm

D_MAX_KPC = 35.0  # distance cut of the detection stage (reference: "< 35 kpc")

_B_NODES = {
    # |b| nodes in degrees: dense near the plane, where the thin disc (scale height ~ 70 pc) matters.
    "coarse": (0.0, 1.0, 3.0, 10.0, 30.0, 90.0),
    "default": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.5, 15.0,
                20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 75.0, 90.0),
}
_L_STEP = {"coarse": 10.0, "default": 1.0}
_N_D = {"coarse": 16, "default": 40}


def _ymw16_module():
    """Return (compiled ymw16 module, data directory), or raise a clear ImportError."""
    spec = importlib.util.find_spec("pyymw16")
    try:
        import ymw16  # compiled extension shipped by pyymw16
    except ImportError:
        ymw16 = None
    if spec is None or ymw16 is None or not spec.submodule_search_locations:
        raise ImportError(
            "YMW16 is not available: install it with `pip install pybind11 && pip install pyymw16` "
            "(builds a small C++ extension; needs a C++ compiler). popstore has no silent DM fallback."
        )
    return ymw16, str(Path(spec.submodule_search_locations[0]))


def _per_point(call, *coords: np.ndarray) -> np.ndarray:
    """``call(*point)`` for every point of the broadcast ``coords`` (the YMW16 C API takes scalars)."""
    coords = np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in coords))
    points = zip(*(c.ravel() for c in coords))
    return np.fromiter((call(*p) for p in points), dtype=float, count=coords[0].size).reshape(coords[0].shape)


def ymw16_dm_direct(l_deg: np.ndarray, b_deg: np.ndarray, d_kpc: np.ndarray) -> np.ndarray:
    """DM (pc cm^-3) from direct YMW16 calls, one per point (slow: ~0.2 ms each).

    Galactic mode (``ndir=2``, distance -> DM) of Yao et al. (2017). Used to build and
    validate :class:`DMGrid`; the simulator never calls it per star.
    """
    ymw16, path = _ymw16_module()
    return _per_point(lambda lon, lat, d: ymw16.dmdtau(lon, lat, d * 1e3, 0, 2, 1, 0, path, "")["DM"],
                      l_deg, b_deg, d_kpc)


def ymw16_ne_plane(x_kpc: np.ndarray, y_kpc: np.ndarray) -> np.ndarray:
    """YMW16 free-electron density n_e (cm^-3) in the Galactic plane (z = 0), one call per point.

    Galactocentric x, y in kpc in the YMW16 frame, which is the pulsar frame of
    :mod:`popstore.pulsars.birth` (x towards l = 90 deg, the Sun on +y).
    """
    ymw16, path = _ymw16_module()
    return _per_point(lambda x, y: ymw16.ne_crd(x * 1e3, y * 1e3, 0.0, 0.0, 0.0, 0.0, 1, 0, path, ""), x_kpc, y_kpc)


@dataclass(frozen=True)
class GridSpec:
    """Nodes of a DM grid: Galactic longitude (deg, [-180, 180]), latitude (deg), distance (kpc)."""

    l: tuple[float, ...]
    b: tuple[float, ...]
    d: tuple[float, ...]

    @classmethod
    def preset(cls, name: str = "default") -> "GridSpec":
        """``"coarse"`` (6.5e3 YMW16 calls, ~2 s; for tests) or ``"default"`` (7e5 calls, a few minutes once)."""
        if name not in _B_NODES:
            raise ValueError(f"unknown DM grid preset {name!r}; choose from {sorted(_B_NODES)}")
        babs = np.asarray(_B_NODES[name])
        b = np.concatenate([-babs[:0:-1], babs])
        l = np.arange(-180.0, 180.0 + 0.5 * _L_STEP[name], _L_STEP[name])
        d = np.concatenate([[0.0], np.geomspace(0.02, D_MAX_KPC, _N_D[name] - 1)])
        return cls(tuple(map(float, l)), tuple(map(float, b)), tuple(map(float, d)))

    def key(self) -> str:
        return hashlib.sha1(json.dumps([self.l, self.b, self.d]).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """``$POPSTORE_CACHE`` or ``~/.cache/popstore``."""
    return Path(os.environ.get("POPSTORE_CACHE", Path.home() / ".cache" / "popstore"))


class DMGrid:
    """YMW16 DM(l, b, d) tabulated on a grid, interpolated trilinearly.

    Build with :meth:`load` (computes the grid on first use and caches it as a Zarr
    store named after a hash of the nodes). Call with arrays of l (deg, any range,
    wrapped to [-180, 180]), b (deg) and d (kpc, clipped to the grid's last node).
    """

    def __init__(self, spec: GridSpec, dm: np.ndarray, attrs: dict | None = None):
        self.spec = spec
        self.dm = np.asarray(dm, dtype=float)
        self.attrs = dict(attrs or {})
        self._interp = RegularGridInterpolator((np.array(spec.l), np.array(spec.b), np.array(spec.d)),
                                               self.dm, method="linear", bounds_error=True)

    @classmethod
    def compute(cls, spec: GridSpec, progress: bool = True) -> "DMGrid":
        """Tabulate YMW16 on ``spec`` with direct calls (one line of sight per progress step)."""
        ymw16, _ = _ymw16_module()
        ll, bb, dd = np.meshgrid(spec.l, spec.b, spec.d, indexing="ij")
        dm = np.stack([ymw16_dm_direct(ll[i], bb[i], dd[i])
                       for i in tqdm(range(len(spec.l)), desc="YMW16 DM grid", disable=not progress)])
        version = _pyymw16_version()
        return cls(spec, dm, {"model": "YMW16 (Yao, Manchester & Wang 2017, ApJ 835, 29)",
                              "implementation": f"pyymw16 {version} (ymw16.dmdtau, ndir=2, Galactic mode)"})

    @classmethod
    def load(cls, preset: str = "default", cache_dir: str | Path | None = None, progress: bool = True) -> "DMGrid":
        """The grid for ``preset``, read from the cache or computed once and cached."""
        spec = GridSpec.preset(preset)
        path = Path(cache_dir or default_cache_dir()) / f"ymw16_dm_{preset}_{spec.key()}.zarr"
        if path.exists():
            return cls.from_zarr(path)
        grid = cls.compute(spec, progress=progress)
        grid.to_zarr(path)
        return grid

    def to_zarr(self, path: str | Path) -> None:
        ds = xr.Dataset(
            {"dm": (("l", "b", "d"), self.dm.astype("float64"), {"units": "pc cm-3", "long_name": "dispersion measure"})},
            coords={"l": ("l", np.array(self.spec.l), {"units": "deg"}),
                    "b": ("b", np.array(self.spec.b), {"units": "deg"}),
                    "d": ("d", np.array(self.spec.d), {"units": "kpc"})},
            attrs=self.attrs,
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        ds.to_zarr(tmp, mode="w", consolidated=False, zarr_format=3)
        try:
            tmp.rename(path)  # atomic; another process may have written the same grid first
        except OSError:
            if not path.exists():
                raise
            shutil.rmtree(tmp)

    @classmethod
    def from_zarr(cls, path: str | Path) -> "DMGrid":
        ds = xr.open_zarr(path, consolidated=False).load()
        spec = GridSpec(tuple(ds.l.values.tolist()), tuple(ds.b.values.tolist()), tuple(ds.d.values.tolist()))
        return cls(spec, ds.dm.values, dict(ds.attrs))

    def __call__(self, l_deg: np.ndarray, b_deg: np.ndarray, d_kpc: np.ndarray) -> np.ndarray:
        """Interpolated DM (pc cm^-3); l wrapped to [-180, 180], d clipped to [0, d_max]."""
        l_deg, b_deg, d_kpc = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (l_deg, b_deg, d_kpc)))
        l_w = (l_deg + 180.0) % 360.0 - 180.0
        if np.any(np.abs(b_deg) > 90.0):
            raise ValueError("Galactic latitude must lie in [-90, 90] deg")
        if np.any(d_kpc < 0):
            raise ValueError("distances must be non-negative")
        pts = np.stack([l_w.ravel(), b_deg.ravel(), np.minimum(d_kpc.ravel(), self.spec.d[-1])], axis=-1)
        return self._interp(pts).reshape(l_deg.shape)


def _pyymw16_version() -> str:
    from importlib.metadata import version

    return version("pyymw16")


def interpolation_error(grid: DMGrid, n: int, rng: np.random.Generator,
                        b_max: float = 90.0, d_max: float = D_MAX_KPC) -> dict[str, float]:
    """Compare ``grid`` with direct YMW16 calls at ``n`` random points.

    Points: l ~ U(-180, 180), b ~ U(-b_max, b_max), d ~ U(0.05, d_max) kpc. Returns the
    median and 95th/99th percentiles of |ΔDM| (pc cm^-3) and of |ΔDM| / DM.
    """
    l = rng.uniform(-180, 180, n)
    b = rng.uniform(-b_max, b_max, n)
    d = rng.uniform(0.05, d_max, n)
    direct = ymw16_dm_direct(l, b, d)
    err = np.abs(grid(l, b, d) - direct)
    rel = err / np.maximum(direct, 1e-3)
    return {"n": float(n), "abs_median": float(np.median(err)), "abs_p95": float(np.percentile(err, 95)),
            "abs_p99": float(np.percentile(err, 99)), "rel_median": float(np.median(rel)),
            "rel_p95": float(np.percentile(rel, 95)), "rel_p99": float(np.percentile(rel, 99))}
