"""The survey maps of detected (or observed) pulsars, one set per survey PMPS, SMPS, HTRU.

Per survey (reference/pulsars.md, "Maps"): ``position_map_radec`` (counts over RA x DEC),
``velocity_map_vra`` / ``velocity_map_vdec`` (mean |pm_ra cos dec| / |pm_dec|, mas/yr, fill 0),
``ppdot_map`` (counts over log P x log Pdot) and ``ppdot_map_fluxes`` (mean log10 S1400 in Jy,
fill -7) of a subsample of the MeerKAT TPA size. Every map is smoothed with a Gaussian of
``smooth_sigma_bins``. Bins and binning code are those of the full-population maps
(:mod:`popstore.simulators.pulsar.maps`, :func:`popstore.maps.binned_map`), so simulated and
observed survey maps lie on identical grids.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from popstore.maps import binned_map
from popstore.simulator import Axis
from popstore.simulators.pulsar import maps as pulsar_maps
from popstore.simulators.pulsar.config import PulsarConfig

#: Map survey -> the detection survey whose detections it shows (HTRU = low + mid latitude:
#: the ATNF ``htru_pks`` pulsars with P and Pdot come from those two parts only).
MAP_SURVEYS: dict[str, str] = {"PMPS": "PMPS", "SMPS": "SMPS", "HTRU": "HTRU_low_mid"}
SURVEY_MAP_VARIABLES = ("position_map_radec", "velocity_map_vra", "velocity_map_vdec", "ppdot_map", "ppdot_map_fluxes")

SURVEY_AXIS = Axis("survey", values=list(MAP_SURVEYS), long_name="radio survey")


def survey_map_axes(cfg: PulsarConfig) -> tuple[Axis, ...]:
    """The survey axis, then the sky axes (RA, DEC) and P-Pdot axes of the full-population maps."""
    return (SURVEY_AXIS, *pulsar_maps.sky_axes(cfg), *pulsar_maps.ppdot_axes(cfg))


def survey_map_outputs(cfg: PulsarConfig) -> dict[str, tuple[tuple[str, ...], str, str, dict]]:
    """name -> (dims, units, long name, attrs) of the five survey maps."""
    ra, dec = pulsar_maps.sky_axes(cfg)
    p, pdot = pulsar_maps.ppdot_axes(cfg)
    sky, pp = ("survey", dec.name, ra.name), ("survey", pdot.name, p.name)
    s = cfg.smooth_sigma_bins
    return {
        "position_map_radec": (sky, "count", "detected pulsars per RA-DEC bin",
                               {"statistic": "count", "smooth_sigma_bins": s}),
        "velocity_map_vra": (sky, "mas yr-1", "mean |proper motion in RA cos(dec)|",
                             {"statistic": "mean", "fill": cfg.velocity_fill, "smooth_sigma_bins": s}),
        "velocity_map_vdec": (sky, "mas yr-1", "mean |proper motion in DEC|",
                              {"statistic": "mean", "fill": cfg.velocity_fill, "smooth_sigma_bins": s}),
        "ppdot_map": (pp, "count", "detected pulsars per P-Pdot bin", {"statistic": "count", "smooth_sigma_bins": s}),
        "ppdot_map_fluxes": (pp, "log10(Jy)", "mean log10 S1400 (1.429 GHz) of a MeerKAT-size subsample",
                             {"statistic": "mean", "fill": cfg.flux_fill, "smooth_sigma_bins": s}),
    }


def survey_maps_on_axes(positions: Mapping[str, Mapping[str, np.ndarray]], fluxes: Mapping[str, Mapping[str, np.ndarray]],
                        sky: tuple[Axis, Axis], ppdot: tuple[Axis, Axis], smooth_sigma: float, velocity_fill: float,
                        flux_fill: float, velocities: bool = True) -> dict[str, np.ndarray]:
    """Maps (survey, y, x) of the stars in ``positions`` (ra, dec, P, Pdot, pm_ra_cosdec, pm_dec) and of
    ``fluxes`` (P, Pdot, S1400 in Jy) per survey, on the given (x, y) axes.

    ``velocities=False`` leaves the velocity maps at their fill value (observed stores)."""
    ra_ax, dec_ax = sky
    p_ax, pdot_ax = ppdot
    out: dict[str, list[np.ndarray]] = {v: [] for v in SURVEY_MAP_VARIABLES}
    for s in positions:
        c, f = positions[s], fluxes[s]
        kw = dict(smooth_sigma=smooth_sigma)
        out["position_map_radec"].append(binned_map(c["ra"], c["dec"], ra_ax, dec_ax, **kw))
        for name, col in (("velocity_map_vra", "pm_ra_cosdec"), ("velocity_map_vdec", "pm_dec")):
            out[name].append(binned_map(c["ra"], c["dec"], ra_ax, dec_ax, weights=np.abs(c[col]), statistic="mean",
                                        fill=velocity_fill, **kw) if velocities
                             else np.full((len(dec_ax), len(ra_ax)), float(velocity_fill)))
        out["ppdot_map"].append(binned_map(c["P"], c["Pdot"], p_ax, pdot_ax, **kw))
        out["ppdot_map_fluxes"].append(binned_map(f["P"], f["Pdot"], p_ax, pdot_ax, weights=np.log10(f["S1400"]),
                                                  statistic="mean", fill=flux_fill, **kw))
    return {k: np.stack(v) for k, v in out.items()}


def meerkat_subsample(cat: Mapping[str, np.ndarray], size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random subsample of ``size`` stars (all of them if fewer), without replacement."""
    n = len(cat["P"])
    idx = np.sort(rng.choice(n, size, replace=False)) if n > size else np.arange(n)
    return {k: np.asarray(v)[idx] for k, v in cat.items()}


def survey_maps(detected: Mapping[str, Mapping[str, np.ndarray]], cfg: PulsarConfig, rng: np.random.Generator,
                meerkat_sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Survey maps of simulated detections (keys of ``detected`` are map surveys, in :data:`MAP_SURVEYS` order)."""
    fluxes = {s: meerkat_subsample(detected[s], meerkat_sizes[s], rng) for s in detected}
    return survey_maps_on_axes(detected, fluxes, pulsar_maps.sky_axes(cfg), pulsar_maps.ppdot_axes(cfg),
                               cfg.smooth_sigma_bins, cfg.velocity_fill, cfg.flux_fill)
