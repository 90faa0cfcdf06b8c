"""Observed kilonova photometry: a reader, and the step from absolute to apparent magnitudes.

The format is the one of the NMMA / gwemlightcurves example light curves, e.g.
AT2017gfo (the kilonova of GW170817) as compiled by Villar et al. 2017 (ApJL
851, L21) and Coughlin et al. 2018 (MNRAS 480, 3871): one whitespace-separated
row per measurement,

    ISO-time  filter  AB-magnitude  error

with an error of ``inf`` marking an upper limit (the source was fainter than
the magnitude given). :func:`read_photometry` turns such a file into an
:class:`xarray.Dataset` along an ``obs`` dimension: ``time`` [day since the
merger], ``band`` (the DU17 band name, :data:`FILTER_BANDS`), ``mag``
[AB mag], ``mag_err`` [mag; NaN for limits] and ``upper_limit``.

A model's absolute magnitude ``M`` becomes the apparent one as

    m = M + mu + A_band,   mu = 5 log10(D / 10 pc),   A_band = R_band E(B-V),

with the distance modulus ``mu`` and the Galactic extinction ``A_band`` both
explicit (:class:`Observer`). ``R_band`` are the Schlafly & Finkbeiner 2011
(ApJ 737, 103, table 6, R_V = 3.1) coefficients of the PS1, 2MASS and SDSS u
filters. For data already corrected for extinction (the shipped
``..._extinction_corrected.dat``) use ``ebv = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from popstore.errors import UserError

#: Filter names of the file format -> DU17 band names (:data:`popstore.kilonova.lightcurve.BAND_WAVELENGTH`).
FILTER_BANDS = {"sdssu": "u", "ps1::g": "g", "ps1::r": "r", "ps1::i": "i", "ps1::z": "z", "ps1::y": "y",
                "2massj": "J", "2massh": "H", "2massks": "K"}
#: A_band / E(B-V) for R_V = 3.1 (Schlafly & Finkbeiner 2011, table 6: SDSS u, PS1 g r i z y, 2MASS J H Ks).
EXTINCTION_R = {"u": 4.239, "g": 3.172, "r": 2.271, "i": 1.682, "z": 1.322, "y": 1.087,
                "J": 0.709, "H": 0.449, "K": 0.302}
#: GW170817 trigger time (Abbott et al. 2017, PRL 119, 161101), the t = 0 of AT2017gfo.
GW170817_MERGER = "2017-08-17T12:41:04"
#: Distance of NGC 4993 [Mpc] (about 40 Mpc, Abbott et al. 2017; Cantiello et al. 2018 give 40.7 +- 2.4).
GW170817_DISTANCE_MPC = 40.0
#: Galactic E(B-V) [mag] behind the shipped extinction-corrected AT2017gfo file (its A_band / R_band).
AT2017GFO_EBV = 0.1233


@dataclass(frozen=True)
class Observer:
    """Where a model curve is seen from: distance [Mpc] and Galactic reddening E(B-V) [mag]."""

    distance_mpc: float = GW170817_DISTANCE_MPC
    ebv: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.distance_mpc) and self.distance_mpc > 0):
            raise UserError(f"distance must be a positive number of Mpc, got {self.distance_mpc}")
        if not (np.isfinite(self.ebv) and self.ebv >= 0):
            raise UserError(f"E(B-V) must be >= 0 mag, got {self.ebv}")

    @property
    def distance_modulus(self) -> float:
        """``5 log10(D / 10 pc)`` [mag]."""
        return distance_modulus(self.distance_mpc)

    def offsets(self, bands: Sequence[str]) -> np.ndarray:
        """``mu + A_band`` [mag] for each of ``bands``: add to an absolute magnitude."""
        return self.distance_modulus + extinction(bands, self.ebv)


def distance_modulus(distance_mpc: float) -> float:
    """``mu = 5 log10(D / 10 pc)`` [mag] for a distance in Mpc."""
    return 5.0 * float(np.log10(distance_mpc * 1e5))


def extinction(bands: Sequence[str], ebv: float) -> np.ndarray:
    """Galactic extinction ``A_band = R_band E(B-V)`` [mag] (:data:`EXTINCTION_R`)."""
    unknown = sorted({b for b in bands if b not in EXTINCTION_R})
    if unknown:
        raise UserError(f"no extinction coefficient for bands {unknown}; known: {', '.join(EXTINCTION_R)}")
    return ebv * np.array([EXTINCTION_R[b] for b in bands])


def read_photometry(path: str | Path, merger_time: str = GW170817_MERGER) -> xr.Dataset:
    """Read a ``time filter mag error`` photometry file into an ``obs``-indexed dataset, sorted by time.

    ``merger_time`` (ISO, UTC) is the zero of ``time`` [day]. A measurement
    before the merger, an unknown filter, a non-numeric or negative error, or a
    malformed row is refused with a :class:`~popstore.errors.UserError` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"photometry file {path} does not exist")
    t0 = pd.Timestamp(merger_time)
    rows = []
    for k, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4:
            raise UserError(f"{path}:{k}: need 4 columns 'time filter mag error', got {len(parts)}")
        if parts[1] not in FILTER_BANDS:
            raise UserError(f"{path}:{k}: unknown filter {parts[1]!r}; known: {', '.join(FILTER_BANDS)}")
        try:
            t, mag, err = pd.Timestamp(parts[0]), float(parts[2]), float(parts[3])
        except ValueError as exc:
            raise UserError(f"{path}:{k}: cannot read time/magnitude/error ({exc})") from None
        if not np.isfinite(mag) or np.isnan(err) or err < 0:
            raise UserError(f"{path}:{k}: need a finite magnitude and an error >= 0 or inf")
        days = (t - t0).total_seconds() / 86400.0
        if days <= 0:
            raise UserError(f"{path}:{k}: measurement at {parts[0]} is not after the merger ({merger_time})")
        rows.append((days, FILTER_BANDS[parts[1]], mag, err))
    if not rows:
        raise UserError(f"{path}: no measurements")
    table = pd.DataFrame(rows, columns=["time", "band", "mag", "err"]).sort_values(["time", "band"], kind="stable")
    limit = ~np.isfinite(table["err"].to_numpy())
    return xr.Dataset(
        {
            "mag": ("obs", table["mag"].to_numpy(), {"units": "mag", "long_name": "apparent AB magnitude"}),
            "mag_err": ("obs", np.where(limit, np.nan, table["err"].to_numpy()),
                        {"units": "mag", "long_name": "1-sigma magnitude error (NaN for upper limits)"}),
            "upper_limit": ("obs", limit, {"long_name": "True: the source was fainter than mag"}),
        },
        coords={
            "time": ("obs", table["time"].to_numpy(), {"units": "day", "long_name": "time since merger"}),
            "band": ("obs", table["band"].to_numpy().astype(str), {"long_name": "photometric band"}),
        },
        attrs={"source": str(path), "merger_time": merger_time},
    )


def select(data: xr.Dataset, bands: Sequence[str] | None = None, t_min: float = 0.0,
           t_max: float = np.inf) -> xr.Dataset:
    """The observations in ``bands`` (None: all) with ``t_min <= time <= t_max`` [day]."""
    keep = (data["time"].values >= t_min) & (data["time"].values <= t_max)
    if bands is not None:
        keep &= np.isin(data["band"].values, list(bands))
    if not keep.any():
        raise UserError(f"no observation in bands {bands} between {t_min} and {t_max} d")
    return data.isel(obs=np.flatnonzero(keep))
