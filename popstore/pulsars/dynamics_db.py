"""A dynamical database: the stars' birth, kicks and orbits computed once, reused by every simulation.

Graber et al. (2024, ApJ 968, 16) and Pardo-Araujo et al. (2025, A&A 696, A114) build the
dynamical stage once (1e7 stars, ages U[1, 3e7] yr, evolved in the Galactic potential) and
let every magneto-rotational + detection simulation draw its batches from it, since the
dynamics do not depend on the inferred (magneto-rotational) parameters. Here the database
is an ordinary popstore store made by the ``pulsar_dynamics`` simulator: one *sample* is a
block of ``stars_per_block`` stars from :func:`~popstore.pulsars.population.simulate_dynamics`
(ages, birth positions, kicks, orbits, present-day sky positions, distances and proper
motions), so :func:`popstore.generate` fills it with Dask, one block per chunk, and resumes
a killed build where it stopped (``popstore generate pipelines/pulsar_dynamics.toml``).

:class:`DynamicsDatabase` is the read side. :meth:`DynamicsDatabase.open` checks that the
database is complete and was built with the same dynamical settings (every
:func:`dynamics_fields` entry of :class:`~popstore.pulsars.config.PulsarConfig`) as the
simulation asking for it, else a one-line :class:`~popstore.errors.UserError` naming the
differing field. :meth:`DynamicsDatabase.stream` gives one simulation its stars: the blocks
in an order drawn from the simulation's generator, read in turn, so that the ``n``-star
batches of the detection stage are consecutive runs of independent stars, never reused
within a simulation (as the research code draws its batches without replacement).
Different simulations share stars, as in the papers; a larger database makes them less
correlated. A simulation never needs more stars than its birth-rate cap allows
(``max_birth_rate * age_max_yr / 100``); :meth:`DynamicsDatabase.check_size` refuses a
smaller database before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from popstore.errors import UserError
from popstore.store import open_zarr, store_exists
from popstore.simulator import Output, Parameter, Simulator
from popstore.simulators import register
from popstore.pulsars.config import PulsarConfig
from popstore.pulsars.population import DYNAMICS_COLUMNS, simulate_dynamics

#: Columns stored per star: what the detection stage reads from the dynamics.
DATABASE_COLUMNS = ("age", "ra", "dec", "l", "b", "d", "pm_ra_cosdec", "pm_dec")
#: Fields before the first spin field that do not change the dynamics: the star count of the full mode,
#: and the orbit block size (it only sets how many stars are integrated together; results are identical).
_NOT_DYNAMICAL = {"n_stars", "orbit_chunk"}
_FIRST_SPIN_FIELD = "P_initial_log10_mean"


def dynamics_fields() -> tuple[str, ...]:
    """Names of the :class:`PulsarConfig` fields that :func:`simulate_dynamics` depends on.

    The config lists constants, frame, ages, birth, kicks, potential and orbit settings
    before the first spin field; those, less :data:`_NOT_DYNAMICAL`, are the dynamical ones.
    """
    names = [f.name for f in dataclasses.fields(PulsarConfig)]
    return tuple(n for n in names[: names.index(_FIRST_SPIN_FIELD)] if n not in _NOT_DYNAMICAL)


@register("pulsar_dynamics")
class PulsarDynamics(Simulator):
    """Blocks of dynamically evolved neutron stars (the database of :class:`DynamicsDatabase`).

    No parameters: every sample is ``stars_per_block`` stars drawn from its own seed. Any other
    keyword is a :class:`PulsarConfig` field (only the :func:`dynamics_fields` matter).
    """

    version = "1"

    def __init__(self, stars_per_block: int = 100_000, **pulsar_config: Any):
        if int(stars_per_block) < 1:
            raise ValueError(f"stars_per_block must be >= 1, got {stars_per_block}")
        self.stars_per_block = int(stars_per_block)
        self.pulsar = PulsarConfig.from_dict(pulsar_config)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return ()

    @property
    def sizes(self) -> dict[str, int]:
        return {"star": self.stars_per_block}

    def parameter_table(self, n: int, seed: int = 0, design: str = "uniform",
                        ranges: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
        """``n`` blocks: a table with ``n`` rows and no columns (nothing to draw)."""
        if ranges:
            raise UserError(f"simulator {self.name!r} has no parameters; got ranges for {sorted(ranges)}")
        table = pd.DataFrame(index=pd.RangeIndex(n))
        table.attrs["ranges"] = {}
        return table

    @property
    def outputs(self) -> tuple[Output, ...]:
        return tuple(Output(c, ("star",), "float64", DYNAMICS_COLUMNS[c][0], DYNAMICS_COLUMNS[c][1], role="catalogue")
                     for c in DATABASE_COLUMNS)

    @property
    def config(self) -> dict[str, Any]:
        return {"pulsar": self.pulsar.to_dict(), "stars_per_block": self.stars_per_block,
                "columns": list(DATABASE_COLUMNS)}

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        dyn = simulate_dynamics(self.stars_per_block, np.random.default_rng(seed), self.pulsar)
        return {c: dyn[c] for c in DATABASE_COLUMNS}


def _describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, str)) else f"{value:g}" if isinstance(
        value, float) else str(value)


@dataclasses.dataclass
class DynamicsDatabase:
    """A finished ``pulsar_dynamics`` store, opened for reading (see the module docstring)."""

    path: Path
    n_blocks: int
    stars_per_block: int
    ds: xr.Dataset

    @property
    def n_stars(self) -> int:
        return self.n_blocks * self.stars_per_block

    @classmethod
    def open(cls, path: str | Path, config: PulsarConfig) -> "DynamicsDatabase":
        """Open the database at ``path``; a :class:`UserError` unless it is complete and matches ``config``."""
        path = Path(path)
        if not store_exists(path):
            raise UserError(f"dynamics database {path} does not exist; build it with `popstore generate` on a "
                            "pulsar_dynamics pipeline (pipelines/pulsar_dynamics.toml)")
        try:
            ds = open_zarr(path, chunks=None)  # numpy reads: no Dask graph inside a Dask task
        except FileNotFoundError:
            raise UserError(f"dynamics database {path} holds no Zarr store") from None
        if ds.attrs.get("simulator") != PulsarDynamics.name:
            raise UserError(f"dynamics database {path} was made by simulator {ds.attrs.get('simulator')!r}, "
                            f"not {PulsarDynamics.name!r}")
        built = json.loads(ds.attrs["simulator_config"])
        missing = [c for c in DATABASE_COLUMNS if c not in ds]
        if missing or built.get("columns") != list(DATABASE_COLUMNS):
            raise UserError(f"dynamics database {path} lacks the columns {missing or list(DATABASE_COLUMNS)}")
        want = config.to_dict()
        for name in dynamics_fields():
            if name not in built["pulsar"]:
                raise UserError(f"dynamics database {path} was built before the setting {name} existed; rebuild it")
            have = built["pulsar"][name]
            if have != want[name]:
                raise UserError(f"dynamics database {path} was built with {name} = {_describe(have)}, but this "
                                f"configuration has {name} = {_describe(want[name])}")
        done = ds["done"].values
        if not done.all():
            raise UserError(f"dynamics database {path} is incomplete ({int((~done).sum())} of {done.size} blocks "
                            "not done); rerun its `popstore generate` to finish it")
        return cls(path, int(ds.sizes["sample"]), int(built["stars_per_block"]), ds[list(DATABASE_COLUMNS)])

    def check_size(self, max_stars: int) -> None:
        """A :class:`UserError` unless the database holds at least ``max_stars`` stars."""
        if self.n_stars < max_stars:
            raise UserError(f"dynamics database {self.path} holds {self.n_stars:,} stars, fewer than the "
                            f"{max_stars:,} one simulation may draw (max_birth_rate x age_max_yr / 100 yr)")

    def block(self, k: int) -> dict[str, np.ndarray]:
        """The columns of block ``k``."""
        return {c: self.ds[c].isel(sample=k).values for c in DATABASE_COLUMNS}

    def stream(self, rng: np.random.Generator) -> "StarStream":
        """Stars for one simulation, blocks in the order ``rng.permutation`` gives."""
        return StarStream(self, rng.permutation(self.n_blocks))

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the database in a simulated store's config."""
        return {"path": str(self.path), "n_blocks": self.n_blocks, "stars_per_block": self.stars_per_block,
                "created": self.ds.attrs.get("created"), "config_fingerprint": self.ds.attrs.get("config_fingerprint")}


class StarStream:
    """Consecutive stars of a database's blocks, in a given block order, each star used once."""

    def __init__(self, db: DynamicsDatabase, order: np.ndarray):
        self.db = db
        self.order = list(order)
        self.buffer: dict[str, np.ndarray] = {c: np.empty(0) for c in DATABASE_COLUMNS}
        self.n_taken = 0

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` stars (the :data:`DATABASE_COLUMNS`)."""
        parts = [self.buffer]
        have = self.buffer["age"].size
        while have < n:
            if not self.order:
                raise RuntimeError(f"dynamics database {self.db.path} exhausted after {self.n_taken + have:,} stars")
            parts.append(self.db.block(self.order.pop(0)))
            have += parts[-1]["age"].size
        stars = {c: np.concatenate([p[c] for p in parts]) if len(parts) > 1 else parts[0][c] for c in DATABASE_COLUMNS}
        self.buffer = {c: v[n:] for c, v in stars.items()}
        self.n_taken += n
        return {c: v[:n] for c, v in stars.items()}
