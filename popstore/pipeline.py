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
    compression = "auto"                # lz4 where it shrinks a map >= 1.5x, else raw; or "lz4", "zstd", "none"

    [split]
    test = 0.1
    valid = 0.1
    seed = 1

    [cluster]                  # science settings above, machine settings here
    kind = "local"             # "local", "slurm" or "pbs" (dask-jobqueue)
    n_workers = 2
    # for slurm/pbs: any dask-jobqueue keyword (cores, memory, queue, account,
    # walltime, job_script_prologue, worker_extra_args, ...) plus max_jobs

Other stages (training, searches, flows, emulators) read their own sections of the same file.

Every section is validated before anything runs (:meth:`Pipeline.load`, ``popstore check``): an
unknown section or key is an error naming it and the closest valid one, and wrong types or
ranges are errors naming the key. Each section has a :class:`Section` schema (pydantic): the core
ones here, a stage's own in the module that runs the stage, found through the
``popstore.pipeline_sections`` entry points. Defaults stay with the code that uses a value, so a
section dict holds only what the file sets.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, get_args, get_type_hints

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from popstore.errors import UserError
from popstore.priors import Design
from popstore.cluster import expand_vars
from popstore.simulator import Simulator

if TYPE_CHECKING:
    from popstore.generation import GenerationReport

SECTIONS_GROUP = "popstore.pipeline_sections"


class Section(BaseModel):
    """Schema of one pipeline section: unknown keys are errors; keys left out stay unset."""

    model_config = ConfigDict(extra="forbid")


def section_schema(name: str, *configs: type, **fields_: Any) -> type[Section]:
    """A :class:`Section` named ``name`` with ``fields_`` (``create_model`` definitions) and, optional,
    every field of the dataclasses ``configs`` with its declared type (so a stage's config class is its schema)."""
    for cfg in configs:
        if not is_dataclass(cfg):
            raise TypeError(f"{cfg!r} is not a dataclass")
        hints = get_type_hints(cfg)
        for f in fields(cfg):
            if f.init and f.name not in fields_:
                fields_[f.name] = (Optional[hints[f.name]], None)
    return create_model(name, __base__=Section, **fields_)


class SimulatorSection(Section):
    name: str
    config: dict[str, Any] = {}


Range = tuple[float, float]


class PriorsSection(Section):
    n_samples: int = Field(gt=0)
    design: Optional[Design] = None
    seed: Optional[int] = Field(None, ge=0)
    ranges: dict[str, Range] = {}
    fixed: dict[str, float] = {}

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, ranges: dict[str, Range]) -> dict[str, Range]:
        for k, (lo, hi) in ranges.items():
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise ValueError(f"range of {k!r} must be finite with low < high, got [{lo}, {hi}]")
        return ranges

    @field_validator("fixed")
    @classmethod
    def _finite(cls, fixed: dict[str, float]) -> dict[str, float]:
        for k, v in fixed.items():
            if not math.isfinite(v):
                raise ValueError(f"fixed value of {k!r} must be finite, got {v}")
        return fixed


class StoreSection(Section):
    path: str
    seed: Optional[int] = Field(None, ge=0)
    samples_per_chunk: Optional[int] = Field(None, gt=0)
    samples_per_shard: Optional[int] = Field(None, ge=0)
    compression: Optional[str] = None

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, name: str | None) -> str | None:
        from popstore.store import COMPRESSION_CHOICES

        if name is not None and name not in COMPRESSION_CHOICES:
            raise ValueError(f"unknown compression {name!r}; use one of {', '.join(COMPRESSION_CHOICES)}")
        return name


class SplitSection(Section):
    test: Optional[float] = Field(None, ge=0, lt=1)
    valid: Optional[float] = Field(None, ge=0, lt=1)
    seed: Optional[int] = Field(None, ge=0)
    groups: Optional[str] = None
    exclude: Optional[str] = None
    allow_incomplete: Optional[bool] = None

    @model_validator(mode="after")
    def _leaves_training(self) -> "SplitSection":
        if (self.test or 0) + (self.valid or 0) >= 1:
            raise ValueError(f"test + valid = {(self.test or 0) + (self.valid or 0):g} leaves nothing to train on; "
                             "their sum must be below 1")
        return self


class ClusterSection(Section):
    """``kind`` plus the keywords of the cluster class it names (checked against its signature)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["local", "slurm", "pbs"] = "local"  # validated as given; cluster_client applies the same default
    max_jobs: Optional[int] = Field(None, gt=0)

    @model_validator(mode="after")
    def _known_keywords(self) -> "ClusterSection":
        allowed = cluster_keywords(self.kind)
        for key in self.model_extra or {}:
            if allowed is not None and key not in allowed:
                raise ValueError(unknown_key_message(key, allowed | {"kind", "max_jobs"}))
        return self


def _parameters(*callables: Any) -> set[str]:
    names = set()
    for c in callables:
        for p in inspect.signature(c).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return names


def cluster_keywords(kind: str) -> set[str] | None:
    """Keywords a ``[cluster]`` table of ``kind`` may give (None: the cluster package is not installed)."""
    if kind == "local":
        from distributed import LocalCluster

        return _parameters(LocalCluster.__init__)
    try:
        import dask_jobqueue
        from dask_jobqueue.core import Job, JobQueueCluster
    except ImportError:
        return None
    cluster, job = {"slurm": (dask_jobqueue.SLURMCluster, dask_jobqueue.slurm.SLURMJob),
                    "pbs": (dask_jobqueue.PBSCluster, dask_jobqueue.pbs.PBSJob)}[kind]
    return _parameters(cluster.__init__, JobQueueCluster.__init__, job.__init__, Job.__init__)


CORE_SECTIONS: dict[str, type[Section]] = {
    "simulator": SimulatorSection, "priors": PriorsSection, "store": StoreSection, "split": SplitSection,
    "cluster": ClusterSection,
}
REQUIRED_SECTIONS = ("simulator", "priors", "store")


def unknown_key_message(key: str, valid: Iterable[str]) -> str:
    """``unknown key 'x'`` with the closest valid name, if one is close."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                     f"; valid keys: {', '.join(sorted(valid))}")


def section_names() -> list[str]:
    """Every section a pipeline file may hold: the core ones and those of installed stages."""
    return sorted(set(CORE_SECTIONS) | {ep.name for ep in entry_points(group=SECTIONS_GROUP)})


def section_schema_of(name: str) -> type[Section] | None:
    """The schema of section ``name`` (None: its stage's module cannot be imported here, so it is not checked)."""
    if name in CORE_SECTIONS:
        return CORE_SECTIONS[name]
    (ep,) = entry_points(group=SECTIONS_GROUP, name=name)
    try:
        return ep.load()
    except ImportError as e:  # a stage whose extra is not installed
        warnings.warn(f"pipeline section [{name}] not checked: {ep.value} needs {e.name or e}", RuntimeWarning,
                      stacklevel=3)
        return None


def _where(section: str, loc: tuple[Any, ...]) -> str:
    keys = [str(k) for k in loc if not isinstance(k, int)]
    return f"[{section}]" + (f" {'.'.join(keys)}" if keys else "")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in ``annotation`` (``Model`` or ``Optional[Model]``), if any."""
    for t in (annotation, *get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def validate_section(name: str, table: Any, schema: type[Section]) -> dict[str, Any]:
    """``table`` checked against ``schema``; returns the keys it sets. A mistake is a :class:`UserError`."""
    if not isinstance(table, Mapping):
        raise UserError(f"[{name}] must be a table, got {type(table).__name__}")
    try:
        model = schema.model_validate(dict(table))
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"]
        if err["type"] == "extra_forbidden":
            parent: Any = schema
            for k in loc[:-1]:  # a nested table (e.g. [search.space]) has its own fields
                parent = _model_of(parent.model_fields[k].annotation) if parent is not None else None
            valid = parent.model_fields if parent is not None else ()
            where = ".".join([name, *map(str, loc[:-1])])
            raise UserError(f"[{where}]: {unknown_key_message(str(loc[-1]), valid)}") from None
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if err["type"] not in ("missing", "value_error") else ""
        raise UserError(f"{_where(name, loc)}: {msg}{got}") from None
    return model.model_dump(exclude_unset=True)


def simulator_from_section(section: Mapping[str, Any]) -> Simulator:
    """The simulator a ``[simulator]`` table names, built with its ``config``; bad settings are a :class:`UserError`."""
    from popstore.simulators import simulator_class

    cls = simulator_class(section["name"])
    config = dict(section.get("config", {}))
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for key in config:
            if key not in params or key == "self":
                raise UserError(f"[simulator.config]: {unknown_key_message(key, set(params) - {'self'})} "
                                f"for simulator {section['name']!r}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        raise UserError(f"[simulator.config] of {section['name']!r}: {e}") from None


@dataclass
class Pipeline:
    """A pipeline file, every section validated; ``sections`` holds the keys each one sets."""

    path: Path
    sections: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Pipeline":
        """Read and validate ``path``: every section, the simulator's config, priors against its parameters."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise UserError(f"pipeline file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: not valid TOML: {e}") from None
        for required in REQUIRED_SECTIONS:
            if required not in raw:
                raise UserError(f"{path}: missing [{required}] section")
        known = section_names()
        sections = {}
        for name, table in raw.items():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                raise UserError(f"{path}: unknown section [{name}]" + (f" (did you mean [{close[0]}]?)" if close else
                                f"; known sections: {', '.join(known)}"))
            schema = section_schema_of(name)
            try:
                sections[name] = validate_section(name, table, schema) if schema is not None else dict(table)
            except UserError as e:
                raise UserError(f"{path}: {e}") from None
        pipe = cls(path, sections)
        try:
            pipe._check_priors(pipe.simulator())
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
        return pipe

    def _check_priors(self, simulator: Simulator) -> None:
        pri = self.section("priors")
        known = simulator.parameter_names
        for table in ("ranges", "fixed"):
            for key in pri.get(table, {}):
                if key not in known:
                    raise UserError(f"[priors.{table}]: {unknown_key_message(key, known).replace('key', 'parameter')} "
                                    f"of simulator {simulator.name!r}")

    def section(self, name: str) -> dict[str, Any]:
        """The keys that section ``name`` sets (empty when the file has no such section)."""
        return dict(self.sections.get(name, {}))

    def path_of(self, section: str, key: str) -> Path:
        """The path ``[section] key`` (``$VARS`` and ``~`` expanded), relative to the pipeline file unless absolute.

        An fsspec URL (``s3://bucket/x.zarr``) is returned as it is, a string.
        """
        value = self.sections.get(section, {}).get(key)
        if value is None:
            raise UserError(f"{self.path}: [{section}] needs '{key}'")
        return self.resolve(value, f"[{section}] {key}")

    def resolve(self, value: str, where: str) -> Path:
        """The path ``value`` set at ``where`` (e.g. ``"[sbi.rounds] observed"``) resolved like :meth:`path_of`."""
        value = expand_vars(value, f"{self.path}: {where}")
        if "://" in value:
            return value
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    @property
    def store_path(self) -> Path | str:
        return self.path_of("store", "path")

    def simulator(self) -> Simulator:
        return simulator_from_section(self.section("simulator"))

    def parameter_table(self, simulator: Simulator) -> pd.DataFrame:
        """The ``[priors]`` table: ``n_samples`` draws of the simulator's prior, ``fixed`` values set exactly."""
        pri = self.section("priors")
        table = simulator.parameter_table(pri["n_samples"], pri.get("seed", 0), pri.get("design", "uniform"),
                                          pri.get("ranges"))
        fixed = pri.get("fixed", {})
        table = table.assign(**fixed)
        table.attrs["fixed"] = sorted(fixed)  # recorded in the store: these labels have no prior to infer
        return table

    def generate(self, client: Any = None, progress: bool = True, params: pd.DataFrame | None = None,
                 path: str | Path | None = None, seed: int | None = None) -> "GenerationReport":
        """Run (or resume) the generation stage on the pipeline's cluster or ``client``.

        ``params``, ``path`` and ``seed`` replace the ``[priors]`` table, ``[store] path`` and ``seed``
        (e.g. simulations at posterior draws, with the pipeline's simulator and store layout).
        """
        from popstore.cluster import cluster_client
        from popstore.generation import generate
        from popstore.store import DEFAULT_COMPRESSION

        sim = self.simulator()
        store = self.section("store")
        params = self.parameter_table(sim) if params is None else params
        seed = store.get("seed", 0) if seed is None else seed
        with cluster_client(self.section("cluster")) if client is None else contextlib.nullcontext(client) as c:
            return generate(sim, params, self.store_path if path is None else path, c, seed=seed,
                            samples_per_chunk=store.get("samples_per_chunk"),
                            samples_per_shard=store.get("samples_per_shard"),
                            compression=store.get("compression", DEFAULT_COMPRESSION), progress=progress)

    def split(self):
        """Run the split stage with the ``[split]`` settings."""
        from popstore.splits import split

        return split(self.store_path, **self.section("split"))
