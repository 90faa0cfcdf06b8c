"""Map axes and builders of the pulsar simulators (full population and surveys).

All maps are :func:`popstore.maps.binned_map` outputs of shape (ny, nx) with
store dims ``(y_axis, x_axis)``, smoothed with a Gaussian of 1 bin:

- Galactocentric maps on x, y, z in [-20, 20] kpc (``resolution_dyn`` bins):
  ``position_map_xy`` (y, x), ``position_map_xz`` (z, x) counts and
  ``velocity_map_xy_vr`` / ``_vphi`` / ``_vz`` (y, x), per-bin mean of |v| (km/s), fill 0.
- Sky maps, RA in [0, 360] deg (res bins) x Dec in [-90, 90] deg (res / 2 bins):
  ``position_map_radec`` counts, ``velocity_map_vra`` / ``_vdec`` mean |mu| (mas/yr), fill 0.
- P-Pdot maps, P in [1e-3, 1e2] s x Pdot in [1e-21, 1e-9] s/s, logarithmic bins
  (``resolution_ppdot``): ``ppdot_map`` counts, ``ppdot_map_fluxes`` mean log10(S1400 / Jy)
  of the stars with a flux (beamed), fill -7. Pdot is used in s/s as computed
  (the research code's extra division by seconds per year is not reproduced).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from popstore.cf import KILOPARSEC, MILLIARCSEC_PER_YEAR
from popstore.maps import binned_map
from popstore.simulator import Axis
from popstore.pulsars.config import PulsarConfig


@dataclass(frozen=True)
class MapSpec:
    """Store metadata of one map variable."""

    dims: tuple[str, str]  # (y, x) axis names
    units: str
    long_name: str
    kind: str  # "count", "velocity" (empty bins: velocity_fill) or "flux" (empty bins: flux_fill)


MAP_SPECS: dict[str, MapSpec] = {
    "position_map_xy": MapSpec(("y", "x"), "1", "number of stars per x-y bin", "count"),
    "position_map_xz": MapSpec(("z", "x"), "1", "number of stars per x-z bin", "count"),
    "velocity_map_xy_vr": MapSpec(("y", "x"), "km s-1", "mean |v_r| per x-y bin", "velocity"),
    "velocity_map_xy_vphi": MapSpec(("y", "x"), "km s-1", "mean |v_phi| per x-y bin", "velocity"),
    "velocity_map_xy_vz": MapSpec(("y", "x"), "km s-1", "mean |v_z| per x-y bin", "velocity"),
    "position_map_radec": MapSpec(("dec", "ra"), "1", "number of stars per RA-Dec bin", "count"),
    "velocity_map_vra": MapSpec(("dec", "ra"), MILLIARCSEC_PER_YEAR, "mean |pm_ra_cosdec| per RA-Dec bin", "velocity"),
    "velocity_map_vdec": MapSpec(("dec", "ra"), MILLIARCSEC_PER_YEAR, "mean |pm_dec| per RA-Dec bin", "velocity"),
    "ppdot_map": MapSpec(("pdot", "p"), "1", "number of stars per P-Pdot bin", "count"),
    "ppdot_map_fluxes": MapSpec(("pdot", "p"), "1", "mean log10(S1400 / Jy) per P-Pdot bin", "flux"),
}
FULL_MAPS = tuple(MAP_SPECS)
SKY_MAPS = ("position_map_radec", "velocity_map_vra", "velocity_map_vdec")
PPDOT_MAPS = ("ppdot_map", "ppdot_map_fluxes")


def galactic_axes(cfg: PulsarConfig) -> tuple[Axis, Axis, Axis]:
    """x, y, z axes (kpc), ``cfg.resolution_dyn`` uniform bins each on ``cfg.xyz_range_kpc``."""
    names = {"x": "galactocentric x (towards l = 90 deg)", "y": "galactocentric y (towards l = 180 deg)",
             "z": "height above the Galactic plane"}
    return tuple(Axis.linear(k, *cfg.xyz_range_kpc, cfg.resolution_dyn, units=KILOPARSEC, long_name=v)
                 for k, v in names.items())


def sky_axes(cfg: PulsarConfig) -> tuple[Axis, Axis]:
    """RA (``res`` bins on [0, 360] deg) and Dec (``res / 2`` bins on [-90, 90] deg), ``res = cfg.resolution_dyn``."""
    res = cfg.resolution_dyn
    return (Axis.linear("ra", 0.0, 360.0, res, units="degree", long_name="right ascension (ICRS)"),
            Axis.linear("dec", -90.0, 90.0, res // 2, units="degree", long_name="declination (ICRS)"))


def ppdot_axes(cfg: PulsarConfig) -> tuple[Axis, Axis]:
    """Logarithmic P (s) and Pdot (s/s) axes, ``cfg.resolution_ppdot`` bins each."""
    res = cfg.resolution_ppdot
    return (Axis("p", edges=np.geomspace(*cfg.P_range_s, res + 1), units="s", long_name="spin period", log=True),
            Axis("pdot", edges=np.geomspace(*cfg.Pdot_range, res + 1), units="s s-1",
                 long_name="spin period derivative", log=True))


def sky_maps(catalogue: Mapping[str, np.ndarray], cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """``position_map_radec``, ``velocity_map_vra``, ``velocity_map_vdec`` (dims dec, ra)."""
    ra_ax, dec_ax = sky_axes(cfg)
    ra, dec = catalogue["ra"], catalogue["dec"]
    sig = cfg.smooth_sigma_bins
    out = {"position_map_radec": binned_map(ra, dec, ra_ax, dec_ax, smooth_sigma=sig)}
    for name, col in (("velocity_map_vra", "pm_ra_cosdec"), ("velocity_map_vdec", "pm_dec")):
        out[name] = binned_map(ra, dec, ra_ax, dec_ax, weights=np.abs(catalogue[col]), statistic="mean",
                               fill=cfg.velocity_fill, smooth_sigma=sig)
    return out


def ppdot_maps(catalogue: Mapping[str, np.ndarray], cfg: PulsarConfig,
               flux_catalogue: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``ppdot_map`` (counts of ``catalogue``) and ``ppdot_map_fluxes`` (dims pdot, p).

    The flux map averages log10(S1400 / Jy) over the stars of ``flux_catalogue``
    (default: ``catalogue``) that have S1400 > 0 (beamed); pass a subsample (e.g. the
    MeerKAT-sized one of a survey) to map fewer stars than the density map.
    """
    p_ax, pdot_ax = ppdot_axes(cfg)
    sig = cfg.smooth_sigma_bins
    fc = catalogue if flux_catalogue is None else flux_catalogue
    s = np.asarray(fc["S1400"], dtype=float)
    has_flux = s > 0
    return {
        "ppdot_map": binned_map(catalogue["P"], catalogue["Pdot"], p_ax, pdot_ax, smooth_sigma=sig),
        "ppdot_map_fluxes": binned_map(np.asarray(fc["P"])[has_flux], np.asarray(fc["Pdot"])[has_flux], p_ax, pdot_ax,
                                       weights=np.log10(s[has_flux]), statistic="mean", fill=cfg.flux_fill,
                                       smooth_sigma=sig),
    }


def galactic_maps(catalogue: Mapping[str, np.ndarray], cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """``position_map_xy`` (y, x), ``position_map_xz`` (z, x) and the three x-y velocity maps."""
    x_ax, y_ax, z_ax = galactic_axes(cfg)
    x, y = catalogue["x"], catalogue["y"]
    sig = cfg.smooth_sigma_bins
    out = {"position_map_xy": binned_map(x, y, x_ax, y_ax, smooth_sigma=sig),
           "position_map_xz": binned_map(x, catalogue["z"], x_ax, z_ax, smooth_sigma=sig)}
    for name, col in (("velocity_map_xy_vr", "v_r"), ("velocity_map_xy_vphi", "v_phi"), ("velocity_map_xy_vz", "vz")):
        out[name] = binned_map(x, y, x_ax, y_ax, weights=np.abs(catalogue[col]), statistic="mean",
                               fill=cfg.velocity_fill, smooth_sigma=sig)
    return out


def full_axes(cfg: PulsarConfig) -> tuple[Axis, ...]:
    """Every axis of the full-population maps."""
    return (*galactic_axes(cfg), *sky_axes(cfg), *ppdot_axes(cfg))


def full_maps(catalogue: Mapping[str, np.ndarray], cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """The ten full-population maps of a catalogue (:data:`FULL_MAPS`)."""
    return {**galactic_maps(catalogue, cfg), **sky_maps(catalogue, cfg), **ppdot_maps(catalogue, cfg)}
