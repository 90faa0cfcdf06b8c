"""Detection-driven pulsar populations (registered as ``pulsar_surveys``).

The mode of Graber et al. (2024, ApJ 968, 16) and Pardo-Araujo et al. (2025, A&A 696,
A114): stars are drawn in batches (100,000; 10,000 once every survey has >= 90 % of its
target; 5,000 at >= 95 %), cut to the surveys' sky areas and d < 35 kpc, evolved
(magneto-rotational + radio) and observed with the PMPS, SMPS and HTRU survey models
(:mod:`popstore.pulsars.surveys`), until every detection survey has at least
its target number of detections. The implied birth rate n_created / (t_age_max / 100 yr)
(per century) is recorded; a run whose birth rate exceeds the maximum (5 per century)
is aborted with :class:`BirthRateExceeded`, or flagged (``on_birth_rate_exceeded="flag"``:
maps are NaN and ``aborted`` is 1), since such a population cannot be the Milky Way's.

The result of one sample is the set of survey maps of the detected stars
(position_map_radec, velocity_map_vra, velocity_map_vdec, ppdot_map, ppdot_map_fluxes
over a ``survey`` axis PMPS, SMPS, HTRU = HTRU_low_mid), built with the same axes and
binning code as the full population maps. Each detection survey keeps its first
``target`` detections in draw order, so the map counts match the observed numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from popstore.cf import JANSKY, KILOPARSEC, MILLIARCSEC_PER_YEAR, PER_CENTURY
from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.simulators import register
from popstore.pulsars import radio
from popstore.pulsars.config import PulsarConfig, label_parameters
from popstore.pulsars.dm import D_MAX_KPC, DMGrid
from popstore.pulsars.dynamics_db import DynamicsDatabase
from popstore.pulsars.population import evolve_spin_and_radio, simulate_dynamics
from popstore.pulsars.survey_maps import MAP_SURVEYS, flux_map_subsample, survey_map_axes, survey_map_outputs, survey_maps
from popstore.pulsars.surveys import DETECTION_SURVEYS, SURVEYS, Survey, in_any_sky_area, observe_all, with_fft_search

#: Target detections per detection survey (Pardo-Araujo et al. 2025; Graber et al. 2024: 1009, 218, 1023, 20).
DEFAULT_TARGETS: dict[str, int] = {"PMPS": 1045, "SMPS": 218, "HTRU_low_mid": 1095, "HTRU_high": 20}
#: Detected stars per survey kept for the flux maps: the MeerKAT TPA sample sizes.
DEFAULT_MEERKAT_SIZES: dict[str, int] = {"PMPS": 640, "SMPS": 170, "HTRU": 668}
#: Columns kept for detected stars.
KEPT_COLUMNS = ("ra", "dec", "l", "b", "d", "pm_ra_cosdec", "pm_dec", "P", "Pdot", "S1400", "dm", "snr", "age", "B")
#: Per-star catalogue of the detected stars (``keep_catalogue=True``): name -> (units, long name).
#: Besides these, ``cat_survey`` (index on the ``survey`` axis) and ``cat_in_flux_map`` (star of the
#: MeerKAT-size flux-map subsample) say where each star went.
CATALOGUE_COLUMNS: dict[str, tuple[str, str]] = {
    "P": ("s", "spin period"), "Pdot": ("s s-1", "spin period derivative"),
    "l": ("degree", "Galactic longitude in [-180, 180]"), "b": ("degree", "Galactic latitude"),
    "ra": ("degree", "right ascension (ICRS)"), "dec": ("degree", "declination (ICRS)"),
    "d": (KILOPARSEC, "distance from the Sun"), "dm": ("parsec cm-3", "dispersion measure (YMW16)"),
    "S1400": (JANSKY, "period-averaged flux density at 1.429 GHz"), "snr": ("1", "radiometer S/N in the survey"),
    "pm_ra_cosdec": (MILLIARCSEC_PER_YEAR, "proper motion in RA times cos(dec)"), "pm_dec": (MILLIARCSEC_PER_YEAR, "proper motion in declination"),
    "age": ("yr", "true age"), "B": ("gauss", "dipolar magnetic field at the pole"),
}
CATALOGUE_PREFIX = "cat_"
FLUX_FREQUENCY_HZ = 1.429e9  # MeerKAT TPA ch6 sub-band centre (Posselt et al. 2023)


class BirthRateExceeded(RuntimeError):
    """The stars needed to reach the detection targets imply too high a birth rate."""

    def __init__(self, message: str, n_created: int, birth_rate: float):
        super().__init__(message)
        self.n_created = n_created
        self.birth_rate = birth_rate


@dataclass
class DetectionRun:
    """Detected stars per detection survey (columns :data:`KEPT_COLUMNS`) and bookkeeping."""

    detected: dict[str, dict[str, np.ndarray]]
    n_created: int
    birth_rate: float  # per century
    n_batches: int


def batch_size(counts: Mapping[str, int], targets: Mapping[str, int], sizes: Sequence[int],
               thresholds: Sequence[float]) -> int:
    """Next batch size: ``sizes[k]`` where k = number of ``thresholds`` the least complete survey has passed."""
    frac = min(counts[s] / targets[s] for s in targets)
    return int(sizes[int(np.searchsorted(np.asarray(thresholds), frac, side="right"))])


def detect_until_targets(labels: Mapping[str, float], rng: np.random.Generator, config: PulsarConfig,
                         dm_grid: DMGrid, targets: Mapping[str, int] = DEFAULT_TARGETS,
                         batch_sizes: Sequence[int] = (100_000, 10_000, 5_000),
                         batch_thresholds: Sequence[float] = (0.9, 0.95), max_birth_rate: float = 5.0,
                         d_max_kpc: float = D_MAX_KPC, scatter_sigma_dex: float = 0.5,
                         progress: bool = False, surveys: Mapping[str, Survey] = SURVEYS,
                         draw_dynamics: Callable[[int], Mapping[str, np.ndarray]] | None = None) -> DetectionRun:
    """Draw, evolve and observe batches until every survey in ``targets`` has its detections.

    ``draw_dynamics(n)`` gives the dynamical columns of the next ``n`` stars (default: simulate them,
    :func:`simulate_dynamics`; a :class:`~popstore.pulsars.dynamics_db.StarStream`'s ``take`` reads
    them from a dynamics database). Raises :class:`BirthRateExceeded` as soon as
    n_created / (age_max / 100 yr) > ``max_birth_rate``.
    """
    unknown = set(targets) - set(DETECTION_SURVEYS)
    if unknown or any(t < 1 for t in targets.values()):
        raise ValueError(f"targets must be >= 1 and name detection surveys {list(DETECTION_SURVEYS)}; got {dict(targets)}")
    if len(batch_sizes) != len(batch_thresholds) + 1:
        raise ValueError("need one more batch size than thresholds")
    centuries = config.age_max_yr / 100.0
    found: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in targets}
    counts = dict.fromkeys(targets, 0)
    n_created = n_batches = 0
    bar = tqdm(total=sum(targets.values()), desc="detections", disable=not progress)
    while any(counts[s] < targets[s] for s in targets):
        n = batch_size(counts, targets, batch_sizes, batch_thresholds)
        n_created += n
        n_batches += 1
        if n_created / centuries > max_birth_rate:
            raise BirthRateExceeded(
                f"{n_created} stars created for detections {counts} of targets {dict(targets)}: birth rate "
                f"{n_created / centuries:.3g} per century exceeds the maximum {max_birth_rate} (labels {dict(labels)})",
                n_created, n_created / centuries)
        dyn = simulate_dynamics(n, rng, config) if draw_dynamics is None else draw_dynamics(n)
        keep = in_any_sky_area(dyn["l"], dyn["b"], dyn["dec"], surveys) & (dyn["d"] < d_max_kpc)
        if not keep.any():
            continue
        cat = evolve_spin_and_radio({k: v[keep] for k, v in dyn.items()}, labels, rng, config)
        cat["dm"] = dm_grid(cat["l"], cat["b"], cat["d"])
        obs = observe_all(cat, cat["dm"],
                          lambda nu: radio.spectral_flux_density(cat["L"], cat["rho"], cat["d"], nu, config), rng,
                          surveys=surveys, scatter_sigma_dex=scatter_sigma_dex)
        cat["S1400"] = radio.mean_flux_density(
            radio.spectral_flux_density(cat["L"], cat["rho"], cat["d"], FLUX_FREQUENCY_HZ, config), cat["w"], cat["P"])
        before = sum(min(counts[s], targets[s]) for s in targets)
        for s in targets:
            idx = np.flatnonzero(obs[s].detected)[: max(targets[s] - counts[s], 0)]
            if idx.size:
                found[s].append({**{k: cat[k][idx] for k in KEPT_COLUMNS if k != "snr"}, "snr": obs[s].snr[idx]})
                counts[s] += idx.size
        bar.update(sum(min(counts[s], targets[s]) for s in targets) - before)
    bar.close()
    detected = {s: {k: np.concatenate([b[k] for b in found[s]]) for k in KEPT_COLUMNS} for s in targets}
    return DetectionRun(detected, n_created, n_created / centuries, n_batches)


@register("pulsar_surveys")
class PulsarSurveys(Simulator):
    """Survey maps of the pulsars PMPS, SMPS and HTRU detect (detection-driven mode).

    Keyword config: ``targets`` (detections per detection survey), ``batch_sizes`` /
    ``batch_thresholds``, ``max_birth_rate`` (per century), ``on_birth_rate_exceeded``
    ("raise" or "flag"), ``meerkat_sizes`` (stars kept for the flux maps), ``dm_grid``
    (DM grid preset, "default" or "coarse"), ``dm_cache_dir``, ``dynamics_database`` (path of
    a ``pulsar_dynamics`` store, :mod:`popstore.pulsars.dynamics_db`: the stars' dynamics are read
    from it instead of simulated; it must match every dynamical setting), ``fft_search`` (apply the
    FFT-search efficiency of Morello et al. 2020 in every survey, the research survey files'
    option), ``keep_catalogue`` (also store the per-star catalogue of the detected stars of
    the map surveys, :data:`CATALOGUE_COLUMNS`, over a ``detected`` dim) and ``setting``
    (a whole-model :data:`~popstore.pulsars.config.SETTINGS` entry, "pardo2025" or
    "graber2024"); any other keyword is a :class:`PulsarConfig` field overriding the
    setting (e.g. ``resolution_ppdot=32``, ``ns_radius="bsk24"``).
    """

    version = "1"

    def __init__(self, targets: Mapping[str, int] | None = None, batch_sizes: Sequence[int] = (100_000, 10_000, 5_000),
                 batch_thresholds: Sequence[float] = (0.9, 0.95), max_birth_rate: float = 5.0,
                 on_birth_rate_exceeded: str = "raise", meerkat_sizes: Mapping[str, int] | None = None,
                 d_max_kpc: float = D_MAX_KPC, scatter_sigma_dex: float = 0.5, dm_grid: str = "default",
                 dm_cache_dir: str | None = None, dynamics_database: str | None = None, fft_search: bool = False,
                 keep_catalogue: bool = False, setting: str = "pardo2025", **pulsar_config: Any):
        if on_birth_rate_exceeded not in ("raise", "flag"):
            raise ValueError("on_birth_rate_exceeded must be 'raise' or 'flag'")
        self.targets = dict(DEFAULT_TARGETS if targets is None else targets)
        self.meerkat_sizes = dict(DEFAULT_MEERKAT_SIZES if meerkat_sizes is None else meerkat_sizes)
        if set(self.meerkat_sizes) != set(MAP_SURVEYS):
            raise ValueError(f"meerkat_sizes needs exactly the map surveys {list(MAP_SURVEYS)}")
        missing = {MAP_SURVEYS[s] for s in MAP_SURVEYS} - set(self.targets)
        if missing:
            raise ValueError(f"targets lack the detection surveys {sorted(missing)} that the maps need")
        self.batch_sizes = tuple(int(b) for b in batch_sizes)
        self.batch_thresholds = tuple(float(t) for t in batch_thresholds)
        self.max_birth_rate = float(max_birth_rate)
        self.on_birth_rate_exceeded = on_birth_rate_exceeded
        self.d_max_kpc = float(d_max_kpc)
        self.scatter_sigma_dex = float(scatter_sigma_dex)
        self.dm_grid_preset = dm_grid
        self.dm_cache_dir = dm_cache_dir
        self.fft_search = bool(fft_search)
        self.surveys = with_fft_search(SURVEYS, self.fft_search)
        self.keep_catalogue = bool(keep_catalogue)
        self.setting = setting
        self.pulsar = PulsarConfig.for_setting(setting, **pulsar_config)
        self._dm_grid: DMGrid | None = None
        self.dynamics_database = None if dynamics_database is None else str(Path(dynamics_database).resolve())
        self._database: DynamicsDatabase | None = None
        if self.dynamics_database is not None:
            self.database()  # a mismatch is a UserError now, before any work starts

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_database": None}  # Dask workers reopen the database

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return label_parameters(self.pulsar)

    @property
    def sizes(self) -> dict[str, int]:
        return {"detected": self.n_catalogue} if self.keep_catalogue else {}

    @property
    def n_catalogue(self) -> int:
        """Rows of the per-star catalogue: the detection targets of the map surveys."""
        return sum(self.targets[d] for d in MAP_SURVEYS.values())

    @property
    def axes(self) -> tuple[Axis, ...]:
        return (*survey_map_axes(self.pulsar),
                Axis("detection_survey", values=list(self.targets), long_name="detection survey"))

    @property
    def outputs(self) -> tuple[Output, ...]:
        # finite=False: a sample aborted by the birth-rate cap holds NaN maps by design (flagged by `aborted`)
        maps = tuple(Output(name, dims, units=units, long_name=ln, role="input", attrs=attrs, finite=False)
                     for name, (dims, units, ln, attrs) in survey_map_outputs(self.pulsar).items())
        return (*maps,
                Output("n_created", (), "int64", long_name="stars drawn to reach the targets", role="diagnostic"),
                Output("birth_rate", (), "float64", PER_CENTURY, "implied neutron-star birth rate per century", role="diagnostic"),
                Output("n_detected", ("detection_survey",), "int64", long_name="detections kept", role="diagnostic"),
                Output("aborted", (), "int8", long_name="1 if the birth rate exceeded the maximum", role="diagnostic"),
                *(self._catalogue_outputs() if self.keep_catalogue else ()))

    def _catalogue_outputs(self) -> tuple[Output, ...]:
        # finite=False: an aborted sample's catalogue is NaN (survey -1), like its maps
        cols = tuple(Output(CATALOGUE_PREFIX + k, ("detected",), "float64", u, f"detected star: {ln}", "catalogue",
                            finite=False) for k, (u, ln) in CATALOGUE_COLUMNS.items())
        return (*cols,
                Output(CATALOGUE_PREFIX + "survey", ("detected",), "int8", long_name="detected star: index on the "
                       "survey axis (-1 in an aborted sample)", role="catalogue"),
                Output(CATALOGUE_PREFIX + "in_flux_map", ("detected",), "bool",
                       long_name="detected star: in the MeerKAT-size subsample of the flux map", role="catalogue"))

    @property
    def config(self) -> dict[str, Any]:
        return {"pulsar": self.pulsar.to_dict(), "targets": self.targets, "batch_sizes": list(self.batch_sizes),
                "batch_thresholds": list(self.batch_thresholds), "max_birth_rate": self.max_birth_rate,
                "on_birth_rate_exceeded": self.on_birth_rate_exceeded, "meerkat_sizes": self.meerkat_sizes,
                "map_surveys": dict(MAP_SURVEYS), "d_max_kpc": self.d_max_kpc,
                "scatter_sigma_dex": self.scatter_sigma_dex, "flux_frequency_hz": FLUX_FREQUENCY_HZ,
                "surveys": {k: s.to_dict() for k, s in self.surveys.items()},
                "detection_surveys": {k: list(v) for k, v in DETECTION_SURVEYS.items()},
                "dm_model": f"YMW16 grid '{self.dm_grid_preset}' (pyymw16), trilinear interpolation",
                "fft_search": self.fft_search, "keep_catalogue": self.keep_catalogue, "setting": self.setting,
                "sky_temperature": "analytic fallback T408 = 25 + 275/((1+(l/42)^2)(1+(b/3)^2)) K, (408 MHz/f)^2.6",
                **({"dynamics_database": self.database().fingerprint()} if self.dynamics_database else {})}

    def dm(self) -> DMGrid:
        """The YMW16 DM grid (loaded from the cache, or computed once)."""
        if self._dm_grid is None:
            self._dm_grid = DMGrid.load(self.dm_grid_preset, self.dm_cache_dir, progress=True)
        return self._dm_grid

    def database(self) -> DynamicsDatabase:
        """The dynamics database (opened and checked against the config and birth-rate cap once per process)."""
        if self._database is None:
            db = DynamicsDatabase.open(self.dynamics_database, self.pulsar)
            db.check_size(int(self.max_birth_rate * self.pulsar.age_max_yr / 100.0))
            self._database = db
        return self._database

    def run(self, params: Mapping[str, float], rng: np.random.Generator) -> DetectionRun:
        """The detection stage for one label vector."""
        draw = None if self.dynamics_database is None else self.database().stream(rng).take
        return detect_until_targets(params, rng, self.pulsar, self.dm(), self.targets, self.batch_sizes,
                                    self.batch_thresholds, self.max_birth_rate, self.d_max_kpc,
                                    self.scatter_sigma_dex, surveys=self.surveys, draw_dynamics=draw)

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = {k: float(params[k]) for k in self.parameter_names}
        try:
            run = self.run(labels, rng)
        except BirthRateExceeded as err:
            if self.on_birth_rate_exceeded == "raise":
                raise
            sizes = self.dim_sizes()
            maps = {o.name: np.full([sizes[d] for d in o.dims], np.nan) for o in self.outputs if o.role == "input"}
            out = {**maps, "n_created": np.int64(err.n_created), "birth_rate": err.birth_rate,
                   "n_detected": np.full(len(self.targets), -1), "aborted": np.int8(1)}
            if self.keep_catalogue:
                n = self.n_catalogue
                out.update({CATALOGUE_PREFIX + k: np.full(n, np.nan) for k in CATALOGUE_COLUMNS})
                out.update({CATALOGUE_PREFIX + "survey": np.full(n, -1, np.int8),
                            CATALOGUE_PREFIX + "in_flux_map": np.zeros(n, bool)})
            return out
        detected = {s: run.detected[d] for s, d in MAP_SURVEYS.items()}
        fluxes = {s: flux_map_subsample(len(detected[s]["P"]), self.meerkat_sizes[s], rng) for s in detected}
        maps = survey_maps(detected, {s: {k: v[fluxes[s]] for k, v in detected[s].items()} for s in detected},
                           self.pulsar)
        out = {**maps, "n_created": np.int64(run.n_created), "birth_rate": run.birth_rate,
               "n_detected": np.array([len(run.detected[s]["P"]) for s in self.targets]), "aborted": np.int8(0)}
        if self.keep_catalogue:
            out.update(self._catalogue(detected, fluxes))
        return out

    def _catalogue(self, detected: Mapping[str, Mapping[str, np.ndarray]],
                   fluxes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The ``cat_*`` arrays: the map surveys' detected stars one after the other, in draw order."""
        out = {CATALOGUE_PREFIX + k: np.concatenate([detected[s][k] for s in MAP_SURVEYS]) for k in CATALOGUE_COLUMNS}
        out[CATALOGUE_PREFIX + "survey"] = np.concatenate(
            [np.full(len(detected[s]["P"]), i, np.int8) for i, s in enumerate(MAP_SURVEYS)])
        in_flux = []
        for s in MAP_SURVEYS:
            mask = np.zeros(len(detected[s]["P"]), bool)
            mask[fluxes[s]] = True
            in_flux.append(mask)
        out[CATALOGUE_PREFIX + "in_flux_map"] = np.concatenate(in_flux)
        return out
