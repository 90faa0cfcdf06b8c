"""Galactocentric (model frame) -> ICRS and Galactic coordinates with astropy.

The model frame has x towards l = 90 deg and y towards l = 180 deg with the Sun
at (0, 8.3, 0.02) kpc; astropy's :class:`~astropy.coordinates.Galactocentric`
has x towards the Galactic centre from the Sun, so ``x_astropy = -y`` and
``y_astropy = x`` (same for velocities). All stars are converted in one
vectorised ``SkyCoord`` call.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, CartesianDifferential, Galactic, Galactocentric, SkyCoord

from popstore.pulsars.config import PulsarConfig


def galactocentric_frame(cfg: PulsarConfig) -> Galactocentric:
    """Astropy frame with the Sun of the config (galcen_distance, z_sun, v_sun; roll 0)."""
    return Galactocentric(
        galcen_distance=cfg.sun_y_kpc * u.kpc,
        z_sun=cfg.sun_z_kpc * u.kpc,
        galcen_v_sun=CartesianDifferential(list(cfg.galcen_v_sun_kms) * u.km / u.s),
        roll=0 * u.deg,
    )


def to_observables(pos: np.ndarray, vel: np.ndarray, cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """Sky positions, distances, proper motions and line-of-sight velocities.

    Parameters
    ----------
    pos, vel : (3, n) model-frame positions (kpc) and velocities (km/s).

    Returns
    -------
    dict with ra, dec (deg, ICRS), l (deg, in [-180, 180]), b (deg), d (kpc from the Sun),
    pm_ra_cosdec, pm_dec (mas/yr, ICRS), v_los (km/s, heliocentric radial velocity).
    """
    gc = SkyCoord(
        x=-pos[1] * u.kpc, y=pos[0] * u.kpc, z=pos[2] * u.kpc,
        v_x=-vel[1] * u.km / u.s, v_y=vel[0] * u.km / u.s, v_z=vel[2] * u.km / u.s,
        frame=galactocentric_frame(cfg), representation_type="cartesian", differential_type="cartesian",
    )
    icrs = gc.transform_to(ICRS())
    gal = SkyCoord(ra=icrs.ra, dec=icrs.dec, frame=ICRS()).transform_to(Galactic())  # positions only
    return {
        "ra": icrs.ra.to_value(u.deg),
        "dec": icrs.dec.to_value(u.deg),
        "l": gal.l.wrap_at(180 * u.deg).to_value(u.deg),
        "b": gal.b.to_value(u.deg),
        "d": icrs.distance.to_value(u.kpc),
        "pm_ra_cosdec": icrs.pm_ra_cosdec.to_value(u.mas / u.yr),
        "pm_dec": icrs.pm_dec.to_value(u.mas / u.yr),
        "v_los": icrs.radial_velocity.to_value(u.km / u.s),
    }
