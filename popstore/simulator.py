"""The simulator protocol: what a simulator declares and returns.

A simulator turns one parameter vector and one seed into one *sample*: a set of
arrays (maps, light curves, catalogues) whose dimensions and physical
coordinates it declares up front, so that the whole store can be laid out
before any simulation runs (see :func:`popstore.generate`).

A simulator is a small object with

- ``name`` and ``version`` (stored in the store's attributes),
- ``parameters``: the :class:`Parameter` s it is conditioned on, with prior ranges,
- ``axes``: the coordinate axes (:class:`Axis`) its outputs live on,
- ``outputs``: the :class:`Output` s one call produces, with their dims,
- ``config``: a JSON-serialisable dict of every setting and physical constant,
- ``simulate(params, seed) -> dict[str, np.ndarray]``,
- optionally ``simulate_batch(params_df, seeds) -> dict[str, np.ndarray]``
  (outputs with a leading sample axis) for simulators vectorised over
  samples; :func:`popstore.generate` uses it per block and falls back to
  ``simulate`` per sample when it raises, to isolate the failing sample.

The same ``(params, seed)`` must give bit-identical arrays on any worker: draw
every random number from ``np.random.default_rng(seed)`` (or a generator
derived from it) and nothing else.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["input", "diagnostic", "catalogue"]


@dataclass(frozen=True)
class Parameter:
    """A simulator parameter (a *label* in the store) and its prior range.

    Parameters
    ----------
    name : str
        Variable name in the store.
    low, high : float
        Prior range (inclusive), in ``units``.
    log : bool
        If True the natural prior is log-uniform on ``[low, high]``.
    units, long_name : str
        CF-style metadata written to the store.
    """

    name: str
    low: float
    high: float
    log: bool = False
    units: str = "1"
    long_name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"parameter {self.name!r}: prior range must be finite, got [{self.low}, {self.high}]")
        if not self.low < self.high:
            raise ValueError(f"parameter {self.name!r}: need low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-uniform range needs low > 0")


@dataclass(frozen=True)
class Axis:
    """A coordinate axis of a simulator output.

    A *binned* axis is given by its ``edges`` (length n + 1); its coordinate
    values are the bin centres (geometric centres when ``log``) and the edges
    are stored as ``<name>_bnds(name, nv)`` following CF conventions. A
    *categorical* or *sampled* axis is given by ``values`` alone (e.g. survey
    names, band names, a time grid).
    """

    name: str
    values: np.ndarray | Sequence[Any] | None = None
    edges: np.ndarray | Sequence[float] | None = None
    units: str = "1"
    long_name: str = ""
    log: bool = False
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.values is None) == (self.edges is None):
            raise ValueError(f"axis {self.name!r}: give exactly one of values or edges")
        if self.edges is not None:
            e = np.asarray(self.edges, dtype=float)
            if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
                raise ValueError(f"axis {self.name!r}: edges must be 1D and strictly increasing")

    @classmethod
    def linear(cls, name: str, lo: float, hi: float, n: int, **kw: Any) -> "Axis":
        """``n`` uniform bins on ``[lo, hi]``."""
        return cls(name, edges=np.linspace(lo, hi, n + 1), **kw)

    @property
    def bin_edges(self) -> np.ndarray | None:
        return None if self.edges is None else np.asarray(self.edges, dtype=float)

    @property
    def coord_values(self) -> np.ndarray:
        if self.edges is None:
            return np.asarray(self.values)
        e = self.bin_edges
        return np.sqrt(e[:-1] * e[1:]) if self.log else 0.5 * (e[:-1] + e[1:])

    def __len__(self) -> int:
        return len(self.coord_values)


@dataclass(frozen=True)
class Output:
    """One array a simulator returns per sample.

    ``dims`` excludes ``sample``; each dim must be one of the simulator's axes
    or a plain dimension given a length in ``sizes`` (e.g. ``star``).
    ``role`` is ``"input"`` for maps a network reads, ``"diagnostic"`` for
    bookkeeping numbers (stars simulated, detected), ``"catalogue"`` for
    per-object tables. ``finite``: every value must be finite (no NaN or
    inf); a sample that breaks it fails like a raising one and is never
    marked done. ``None`` (default) means finite for ``role="input"`` (maps a
    network reads) and unchecked otherwise.
    """

    name: str
    dims: tuple[str, ...] = ()
    dtype: str = "float32"
    units: str = "1"
    long_name: str = ""
    role: Role = "input"
    fill_value: float | int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    finite: bool | None = None

    @property
    def must_be_finite(self) -> bool:
        """Whether non-finite values fail a sample (see ``finite``)."""
        return self.role == "input" if self.finite is None else bool(self.finite)


class Simulator(ABC):
    """Base class of all simulators (see module docstring)."""

    name: str = "simulator"
    version: str = "0"

    @property
    @abstractmethod
    def parameters(self) -> tuple[Parameter, ...]:
        """The labels, in order, with their prior ranges."""

    @property
    @abstractmethod
    def outputs(self) -> tuple[Output, ...]:
        """The arrays of one sample."""

    @property
    def axes(self) -> tuple[Axis, ...]:
        """The coordinate axes the outputs live on."""
        return ()

    @property
    def sizes(self) -> dict[str, int]:
        """Lengths of dims that are not axes (no coordinate), e.g. ``{"star": 10000}``."""
        return {}

    @property
    def config(self) -> dict[str, Any]:
        """Every setting and constant, JSON-serialisable; stored in the store attrs."""
        return {}

    @abstractmethod
    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        """Simulate one sample; return one array per :attr:`outputs` entry."""

    def parameter_table(self, n: int, seed: int, design: str = "uniform",
                        ranges: Mapping[str, tuple[float, float]] | None = None) -> "pd.DataFrame":
        """``n`` parameter vectors over the prior (see :func:`popstore.priors.sample_table`).

        Simulators whose prior has constraints beyond independent ranges (e.g.
        ``m1 >= m2``) override this.
        """
        from popstore.priors import sample_table

        return sample_table(self.parameters, n, seed, design, ranges)

    # -- helpers shared by every simulator ---------------------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def dim_sizes(self) -> dict[str, int]:
        """Length of every dimension used by the outputs (``sample`` excluded)."""
        sizes = {a.name: len(a) for a in self.axes}
        sizes.update(self.sizes)
        for out in self.outputs:
            missing = [d for d in out.dims if d not in sizes]
            if missing:
                raise ValueError(f"output {out.name!r} uses dims {missing} that are neither axes nor sizes")
        return sizes

    def check_sample(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate one sample's arrays against :attr:`outputs` and cast their dtypes."""
        sizes = self.dim_sizes()
        names = {o.name for o in self.outputs}
        extra = set(arrays) - names
        missing = names - set(arrays)
        if missing or extra:
            raise ValueError(f"{self.name}: simulate() returned wrong variables (missing {sorted(missing)}, extra {sorted(extra)})")
        out = {}
        for o in self.outputs:
            a = np.asarray(arrays[o.name])
            shape = tuple(sizes[d] for d in o.dims)
            if a.shape != shape:
                raise ValueError(f"{self.name}: output {o.name!r} has shape {a.shape}, expected {shape} for dims {o.dims}")
            out[o.name] = a.astype(o.dtype, copy=False)
        bad = [name for name, ok in self.finite_rows(out).items() if not ok.all()]
        if bad:
            raise ValueError(f"{self.name}: non-finite values (NaN or inf) in outputs {bad} declared finite")
        return out

    def finite_rows(self, arrays: Mapping[str, np.ndarray], batched: bool = False) -> dict[str, np.ndarray]:
        """For each output declared finite, whether each sample of ``arrays`` is finite everywhere.

        ``batched``: ``arrays`` carry a leading sample axis (as from
        ``simulate_batch``); the result holds one bool per sample, else a 0-d bool.
        """
        out = {}
        for o in self.outputs:
            if o.must_be_finite and np.dtype(o.dtype).kind in "fc":
                a = np.asarray(arrays[o.name])
                n = len(a) if batched else 1
                ok = np.isfinite(a.reshape(n, math.prod(a.shape[1:] if batched else a.shape))).all(1)
                out[o.name] = ok if batched else ok[0]
        return out
