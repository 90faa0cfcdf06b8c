"""The survey maps of detected (or observed) pulsars, one set per survey PMPS, SMPS, HTRU.

Per survey (reference/pulsars.md, "Maps"): ``position_map_radec`` (counts over RA x DEC),
``velocity_map_vra`` / ``velocity_map_vdec`` (mean |pm_ra cos dec| / |pm_dec|, mas/yr, fill 0),
``ppdot_map`` (counts over log P x log Pdot) and ``ppdot_map_fluxes`` (mean log10 S1400 in Jy,
fill -7) of a subsample of the MeerKAT TPA size. Every map is smoothed with a Gaussian of
``smooth_sigma_bins``. Bins and binning code are those of the full-population maps
(:mod:`popstore.pulsars.maps`, :func:`popstore.maps.binned_map`), so simulated and
observed survey maps lie on identical grids.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from popstore.simulator import Axis
from popstore.pulsars import maps as pulsar_maps
from popstore.pulsars.config import PulsarConfig

#: Map survey -> the detection survey whose detections it shows (HTRU = low + mid latitude:
#: the ATNF ``htru_pks`` pulsars with P and Pdot come from those two parts only).
MAP_SURVEYS: dict[str, str] = {"PMPS": "PMPS", "SMPS": "SMPS", "HTRU": "HTRU_low_mid"}
SURVEY_MAP_VARIABLES = (*pulsar_maps.SKY_MAPS, *pulsar_maps.PPDOT_MAPS)

SURVEY_AXIS = Axis("survey", values=list(MAP_SURVEYS), long_name="radio survey")


def survey_map_axes(cfg: PulsarConfig) -> tuple[Axis, ...]:
    """The survey axis, then the sky (RA, Dec) and P-Pdot axes of the full-population maps."""
    return (SURVEY_AXIS, *pulsar_maps.sky_axes(cfg), *pulsar_maps.ppdot_axes(cfg))


def survey_map_outputs(cfg: PulsarConfig) -> dict[str, tuple[tuple[str, ...], str, str, dict]]:
    """name -> (dims, units, long name, attrs) of the five survey maps; attrs record the map settings."""
    out = {}
    for name in SURVEY_MAP_VARIABLES:
        spec = pulsar_maps.MAP_SPECS[name]
        attrs = {"statistic": "count" if spec.kind == "count" else "mean", "smooth_sigma_bins": cfg.smooth_sigma_bins}
        if spec.kind != "count":
            attrs["fill"] = cfg.velocity_fill if spec.kind == "velocity" else cfg.flux_fill
        if name == "ppdot_map_fluxes":
            attrs["flux_sample"] = "MeerKAT-size subsample of the detected stars; S1400 at 1.429 GHz"
        out[name] = (("survey", *spec.dims), spec.units, f"{spec.long_name}, per survey", attrs)
    return out


def survey_maps(positions: Mapping[str, Mapping[str, np.ndarray]], fluxes: Mapping[str, Mapping[str, np.ndarray]],
                cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """Maps (survey, y, x), surveys in the order of ``positions``, built by the full-map builders.

    ``positions[s]`` needs ra, dec (deg), pm_ra_cosdec, pm_dec (mas/yr; NaN where unknown, which
    leaves a velocity bin at its fill value), P (s) and Pdot; ``fluxes[s]`` needs P, Pdot and
    S1400 (Jy) of the stars of the flux map."""
    per = [{**pulsar_maps.sky_maps(positions[s], cfg), **pulsar_maps.ppdot_maps(positions[s], cfg, fluxes[s])}
           for s in positions]
    return {v: np.stack([m[v] for m in per]) for v in SURVEY_MAP_VARIABLES}


def flux_map_subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random subsample of ``size`` of ``n`` stars (all of them if fewer), without replacement."""
    return np.sort(rng.choice(n, size, replace=False)) if n > size else np.arange(n)

