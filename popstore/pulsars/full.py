"""The ``pulsar_full`` simulator: one isolated-pulsar population -> ten full-population maps.

Every star of the population is mapped (no survey selection); see
:mod:`popstore.pulsars.maps` for the maps and
:mod:`popstore.pulsars.population` for the physics. With
``keep_catalogue=True`` the per-star catalogue is stored too, one
``catalogue``-role variable per column named ``cat_<column>`` over a ``star`` dim.
Without it, :func:`catalogue_of_sample` rebuilds the exact per-star table of any
stored sample from its labels, seed and the stored config (same seed, same stars).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.simulators import register
from popstore.store import label_names, open_store, simulator_config
from popstore.pulsars.config import PulsarConfig, label_parameters
from popstore.pulsars.maps import MAP_SPECS, full_axes, full_maps
from popstore.pulsars.population import COLUMNS, simulate_population

CATALOGUE_PREFIX = "cat_"


@register("pulsar_full")
class PulsarFull(Simulator):
    """Full-population pulsar maps (Graber et al. 2024; Pardo-Araujo et al. 2025 physics).

    Keyword arguments are the fields of :class:`PulsarConfig` (e.g. ``n_stars``,
    ``kick_distribution``, ``resolution_dyn``) plus ``keep_catalogue`` and ``setting``
    (a whole-model :data:`~popstore.pulsars.config.SETTINGS` entry, "pardo2025" or
    "graber2024", that the field keywords then override). The labels are those the
    configuration uses (:attr:`PulsarConfig.label_names`).
    """

    version = "1"

    def __init__(self, keep_catalogue: bool = False, setting: str = "pardo2025", **config: Any) -> None:
        self.cfg = PulsarConfig.for_setting(setting, **config)
        self.setting = setting
        self.keep_catalogue = bool(keep_catalogue)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return label_parameters(self.cfg)

    @property
    def axes(self) -> tuple[Axis, ...]:
        return full_axes(self.cfg)

    @property
    def sizes(self) -> dict[str, int]:
        return {"star": self.cfg.n_stars} if self.keep_catalogue else {}

    @property
    def outputs(self) -> tuple[Output, ...]:
        fills = {"count": 0.0, "velocity": self.cfg.velocity_fill, "flux": self.cfg.flux_fill}
        outs = [
            Output(name, s.dims, "float32", s.units, s.long_name, "input",
                   attrs={"empty_bin_value": fills[s.kind], "smoothing_sigma_bins": self.cfg.smooth_sigma_bins,
                          "statistic": "count" if s.kind == "count" else "mean"},
                   finite=bool(np.isfinite(fills[s.kind])))  # a NaN fill marks empty bins: NaN is then valid
            for name, s in MAP_SPECS.items()
        ]
        outs += [
            Output("n_beamed", (), "int64", "1", "stars whose radio beam crosses the line of sight", "diagnostic"),
            Output("n_in_xy_range", (), "int64", "1", "stars inside the x-y map range", "diagnostic"),
        ]
        if self.keep_catalogue:
            outs += [
                Output(CATALOGUE_PREFIX + k, ("star",), "bool" if k == "beamed" else "float64", u, ln, "catalogue")
                for k, (u, ln) in COLUMNS.items()
            ]
        return tuple(outs)

    @property
    def config(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "keep_catalogue": self.keep_catalogue, "setting": self.setting}

    def catalogue(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        """The per-star catalogue (:data:`COLUMNS`) behind :meth:`simulate` for the same arguments."""
        missing = set(self.parameter_names) - set(params)
        if missing:
            raise ValueError(f"pulsar_full: missing parameters {sorted(missing)}")
        labels = {k: float(params[k]) for k in self.parameter_names}
        return simulate_population(labels, self.cfg.n_stars, np.random.default_rng(seed), self.cfg)

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        cat = self.catalogue(params, seed)
        out = full_maps(cat, self.cfg)
        lo, hi = self.cfg.xyz_range_kpc
        out["n_beamed"] = np.int64(cat["beamed"].sum())
        out["n_in_xy_range"] = np.int64(((cat["x"] >= lo) & (cat["x"] <= hi) & (cat["y"] >= lo) & (cat["y"] <= hi)).sum())
        if self.keep_catalogue:
            out.update({CATALOGUE_PREFIX + k: cat[k] for k in COLUMNS})
        return out


def catalogue_of_sample(store: str | Path | xr.Dataset, sample: int) -> pd.DataFrame:
    """Per-star table (one row per star, :data:`COLUMNS`) of stored sample ``sample`` of a ``pulsar_full`` store.

    Re-simulated from the stored labels, seed and config, so it is the population
    whose maps are in the store (bit-identical on the same numpy/astropy versions).
    """
    ds = store if isinstance(store, xr.Dataset) else open_store(store)
    if ds.attrs.get("simulator") != PulsarFull.name:
        raise ValueError(f"not a {PulsarFull.name} store (simulator {ds.attrs.get('simulator')!r})")
    if not 0 <= sample < ds.sizes["sample"]:
        raise IndexError(f"sample {sample} is outside the store's {ds.sizes['sample']} samples")
    sim = PulsarFull(**simulator_config(ds))
    params = {k: float(ds[k].values[sample]) for k in label_names(ds)}
    return pd.DataFrame(sim.catalogue(params, int(ds["seed"].values[sample])))
