"""Declarative pipelines: a TOML file that says what to simulate, where, and on which cluster.

Example (``pipelines/gaussian_fields.toml``)::

    [simulator]
    name = "gaussian_fields"
    [simulator.config]        # keyword arguments of the simulator
    npix = 64

    [priors]
    n_samples = 2000
    design = "latin_hypercube"   # or "uniform"
    seed = 1
    [priors.ranges]              # optional narrower priors
    slope = [1.5, 2.5]
    [priors.fixed]               # optional exact values (every sample)
    smoothing = 1.0

    [store]
    path = "out/gaussian_fields.zarr"   # relative to the pipeline file
    seed = 0
    samples_per_chunk = 64              # optional
    compression = "lz4"                 # or "zstd" (smaller, slower to read), "none"

    [split]
    test = 0.1
    valid = 0.1
    seed = 1

    [cluster]                  # science settings above, machine settings here
    kind = "local"             # "local", "slurm" or "pbs" (dask-jobqueue)
    n_workers = 2
    # for slurm/pbs: any dask-jobqueue keyword (cores, memory, queue, account,
    # walltime, job_script_prologue, worker_extra_args, ...) plus max_jobs

Other stages (training, searches) read their own sections of the same file.
"""

from __future__ import annotations

import contextlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from popstore.cluster import cluster_client, expand_vars
from popstore.generate import GenerationReport, generate
from popstore.store import DEFAULT_COMPRESSION
from popstore.simulator import Simulator
from popstore.simulators import get_simulator
from popstore.splits import split


@dataclass
class Pipeline:
    """A parsed pipeline file; ``sections`` holds the raw TOML tables."""

    path: Path
    sections: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Pipeline":
        path = Path(path)
        with open(path, "rb") as f:
            sections = tomllib.load(f)
        for required in ("simulator", "priors", "store"):
            if required not in sections:
                raise ValueError(f"{path}: missing [{required}] section")
        return cls(path, sections)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.sections.get(name, {}))

    def path_of(self, section: str, key: str) -> Path:
        """The path ``[section] key`` (``$VARS`` and ``~`` expanded), relative to the pipeline file unless absolute."""
        value = self.sections.get(section, {}).get(key)
        if value is None:
            raise ValueError(f"{self.path}: [{section}] needs '{key}'")
        p = Path(expand_vars(value, f"{self.path}: [{section}] {key}")).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    @property
    def store_path(self) -> Path:
        return self.path_of("store", "path")

    def simulator(self) -> Simulator:
        sim = self.section("simulator")
        return get_simulator(sim["name"], **sim.get("config", {}))

    def parameter_table(self, simulator: Simulator) -> pd.DataFrame:
        """The ``[priors]`` table: ``n_samples`` draws of the simulator's prior, ``fixed`` values set exactly."""
        pri = self.section("priors")
        fixed = dict(pri.get("fixed", {}))
        unknown = set(fixed) - set(simulator.parameter_names)
        if unknown:
            raise ValueError(f"{self.path}: [priors.fixed] names unknown parameters {sorted(unknown)}")
        table = simulator.parameter_table(int(pri["n_samples"]), int(pri.get("seed", 0)),
                                          pri.get("design", "uniform"), pri.get("ranges"))
        return table.assign(**{k: float(v) for k, v in fixed.items()})

    def generate(self, client: Any = None, progress: bool = True) -> GenerationReport:
        """Run (or resume) the generation stage on the pipeline's cluster or ``client``."""
        sim = self.simulator()
        store = self.section("store")
        with cluster_client(self.section("cluster")) if client is None else contextlib.nullcontext(client) as c:
            return generate(sim, self.parameter_table(sim), self.store_path, c, seed=int(store.get("seed", 0)),
                            samples_per_chunk=store.get("samples_per_chunk"),
                            samples_per_shard=store.get("samples_per_shard"),
                            compression=store.get("compression", DEFAULT_COMPRESSION), progress=progress)

    def split(self):
        """Run the split stage with the ``[split]`` settings."""
        return split(self.store_path, **self.section("split"))
