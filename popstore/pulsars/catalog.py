"""Observed radio pulsars: the ATNF catalogue (+ MeerKAT TPA fluxes) as a popstore store.

The observed population of Graber et al. (2024, ApJ 968, 16) and Pardo-Araujo et al.
(2025, A&A 696, A114): isolated pulsars of the ATNF Pulsar Catalogue (Manchester et
al. 2005) detected by the Parkes multibeam surveys PMPS, SMPS and HTRU (low/mid
latitude), with 1429 MHz flux densities of the MeerKAT Thousand-Pulsar-Array census
(Posselt et al. 2023, MNRAS 520, 4582, table 5, column ``ch6flux``, mJy).

:func:`observed_store` turns such an export into a one-sample store with the same
survey variables, coordinates, bins and smoothing as a given simulated store (whose
coordinates and attrs are the source of truth); labels are NaN. :func:`check_compatible`
refuses to pair an observed and a simulated store whose variables, bins, ranges,
smoothing or resolution differ. See ``catalogs/README.md`` for where the files come from.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import xarray as xr

from popstore import __version__, compat
from popstore.errors import UserError
from popstore.pipeline import Pipeline, section_schema
from popstore.simulator import Axis
from popstore.pulsars.config import PulsarConfig
from popstore.pulsars.survey_maps import SURVEY_MAP_VARIABLES, survey_map_axes, survey_maps
from popstore.pulsars.surveys import SkyArea
from popstore.store import (
    axis_coords, consolidate, label_names, simulator_config, store_exists, store_location, with_checksums,
)

#: ASSOC prefixes of pulsars in globular clusters or the Magellanic Clouds (dropped).
EXCLUDED_ASSOCIATIONS: tuple[str, ...] = (
    "EXGAL:SMC", "EXGAL:LMC", "GC:47Tuc", "GC:M3", "GC:M5", "GC:M13", "GC:NGC6440", "GC:Ter5", "GC:NGC6441",
    "GC:NGC6517", "GC:NGC6522", "GC:NGC6624", "GC:M28(NGC6626)", "GC:NGC6652", "GC:M22(NGC6656)", "GC:NGC6752",
    "GC:NGC6760", "GC:M15", "GC:M30",
)
P_MIN_S = 0.01  # keep P0 > 0.01 s (non-recycled)
PDOT_MIN = 1e-19  # keep P1 > 1e-19

NUMERIC_COLUMNS = ("PMRA", "PMDEC", "PX", "POSEPOCH", "Gl", "Gb", "RAJD", "DECJD", "P0", "P1", "DM", "TAU_SC",
                   "S400", "S1400", "S2000", "DIST", "ZZ", "XX", "YY")


@dataclass(frozen=True)
class ObservedSurvey:
    """Survey membership in the ATNF ``SURVEY`` column (substring) and the sky cut applied."""

    code: str
    sky: SkyArea


#: Survey subsets of the observed catalogue (map survey name -> membership and sky cut).
OBSERVED_SURVEYS: dict[str, ObservedSurvey] = {
    "PMPS": ObservedSurvey("pksmb", SkyArea((-100.0, 50.0), (0.0, 5.0))),
    "SMPS": ObservedSurvey("pkssw", SkyArea((-100.0, 50.0), (0.0, 91.0))),
    "HTRU": ObservedSurvey("htru_pks", SkyArea((-120.0, 30.0), (0.0, 15.0))),
}


def read_atnf(path: str | Path) -> pd.DataFrame:
    """Read an ATNF web-form export: ';'-delimited, a row of names then a row of units, NAN for nulls.

    Numeric columns are floats (NaN for nulls); PSRJ, ASSOC and SURVEY are strings ("" for nulls).
    Refused with a :class:`UserError` naming the line: text that is not UTF-8, a row with more
    fields than the header, a non-numeric value in a numeric column, no rows, a pulsar listed twice.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ATNF export at {path} (see catalogs/README.md for how to make one)")
    try:
        df = pd.read_csv(path, sep=";", skiprows=[1], na_values=["NAN", "*"], keep_default_na=False, dtype=str,
                         encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not a ';'-delimited ATNF export: {str(err).strip()}") from None
    df = df.loc[:, [c for c in df.columns if c and not c.startswith("Unnamed")]]
    missing = [c for c in ("PSRJ", "P0", "P1", "Gl", "Gb", "RAJD", "DECJD", "ASSOC", "SURVEY") if c not in df]
    if missing:
        raise UserError(f"{path}: not an ATNF export with the required columns; missing {missing}")
    if df.empty:
        raise UserError(f"{path}: the ATNF export holds no pulsars (header only)")
    for c in NUMERIC_COLUMNS:
        if c in df:
            values = pd.to_numeric(df[c], errors="coerce")
            bad = values.isna() & df[c].notna()
            if bad.any():
                i = int(np.argmax(bad.to_numpy()))
                raise UserError(f"{path}: line {i + 3}: column {c} holds {df[c].iloc[i]!r}, not a number")
            df[c] = values
    for c in ("PSRJ", "ASSOC", "SURVEY"):
        df[c] = df[c].fillna("").astype(str)
    repeated = df["PSRJ"].duplicated()
    if repeated.any():
        i = int(np.argmax(repeated.to_numpy()))
        raise UserError(f"{path}: {int(repeated.sum())} pulsars listed more than once (first {df['PSRJ'].iloc[i]} "
                        f"again on line {i + 3}); each would be counted twice in the survey maps")
    return df


def excluded_association(assoc: pd.Series) -> pd.Series:
    """True where any comma-separated ASSOC entry starts with an excluded prefix.

    Entry-wise, so that e.g. ``GRS:4FGL_J0540.3-6920,EXGAL:LMC`` (PSR J0540-6919 in the LMC)
    is dropped too; a match on the start of the whole field would keep it."""
    entries = assoc.str.split(",").explode().str.strip()
    return entries.str.startswith(EXCLUDED_ASSOCIATIONS).groupby(level=0).any().reindex(assoc.index, fill_value=False)


def filter_atnf(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the reference filters in order; return the kept rows (l in [-180, 180]) and the counts.

    1. drop rows with P0 or P1 missing; 2. drop globular-cluster and Magellanic-cloud
    associations; 3. keep P1 > 1e-19 and P0 > 0.01 s.
    """
    counts = {"read": len(df)}
    df = df[df["P0"].notna() & df["P1"].notna()]
    counts["with_P0_P1"] = len(df)
    df = df[~excluded_association(df["ASSOC"])]
    counts["not_GC_or_MC"] = len(df)
    df = df[(df["P1"] > PDOT_MIN) & (df["P0"] > P_MIN_S)].copy()
    counts["isolated_non_recycled"] = len(df)
    df["Gl"] = (df["Gl"] + 180.0) % 360.0 - 180.0
    return df, counts


def read_meerkat(path: str | Path) -> pd.DataFrame:
    """Read the MeerKAT TPA census table (Posselt et al. 2023, ``Census_Table5.csv``).

    Returns columns PSRJ and S1400 (Jy) = ch6flux (mJy, 1429 MHz sub-band) / 1000, rows with a flux only."""
    df = pd.read_csv(path)
    if not {"PSRJ", "ch6flux"} <= set(df.columns):
        raise ValueError(f"{path}: expected the columns PSRJ and ch6flux (mJy) of Posselt et al. (2023) table 5")
    df = df[["PSRJ", "ch6flux"]].dropna()
    return pd.DataFrame({"PSRJ": df["PSRJ"].astype(str).str.strip(), "S1400": df["ch6flux"].astype(float) / 1e3})


def survey_subsets(df: pd.DataFrame, surveys: Mapping[str, ObservedSurvey] = OBSERVED_SURVEYS) -> dict[str, pd.DataFrame]:
    """Rows of the filtered catalogue in each survey: SURVEY contains the code, and the sky cut."""
    return {name: df[df["SURVEY"].str.contains(s.code, regex=False)
                     & s.sky.contains(df["Gl"].to_numpy(), df["Gb"].to_numpy(), df["DECJD"].to_numpy())]
            for name, s in surveys.items()}


#: ``flux_source`` attr of an observed store whose flux maps use the MeerKAT TPA census (the papers' choice).
MEERKAT_FLUX_SOURCE = "MeerKAT TPA ch6flux (1429 MHz), Posselt et al. 2023"
#: ``flux_source`` attr of an observed store built with the explicit ATNF S1400 fallback.
ATNF_FALLBACK_FLUX_SOURCE = ("FALLBACK, NOT THE PAPERS' FLUX MAPS: ATNF S1400 (many telescopes and epochs), "
                             "asked for explicitly instead of the MeerKAT TPA census")


def flux_subsets(subsets: Mapping[str, pd.DataFrame], meerkat: pd.DataFrame | None,
                 atnf_fallback: bool = False) -> tuple[dict[str, pd.DataFrame], str]:
    """The survey subsets with an ``S1400_Jy`` column for the flux maps, and the flux source.

    With a MeerKAT table (the default and the papers' choice): inner join on PSRJ, S1400 = the TPA
    1429 MHz flux. Without one, only when ``atnf_fallback`` is asked for: the ATNF S1400 column
    (mJy -> Jy), rows with a value only, labelled :data:`ATNF_FALLBACK_FLUX_SOURCE` (different
    telescopes, epochs and calibration). Neither is a :class:`UserError`."""
    if meerkat is not None:
        mk = meerkat.rename(columns={"S1400": "S1400_Jy"})
        return {k: v.merge(mk, on="PSRJ", how="inner") for k, v in subsets.items()}, MEERKAT_FLUX_SOURCE
    if not atnf_fallback:
        raise UserError("the observed flux maps need the MeerKAT TPA census table (Posselt et al. 2023; "
                        "--meerkat PATH or [observed] meerkat); the ATNF S1400 fallback is used only when asked for "
                        "(--flux-fallback-atnf or [observed] flux_fallback_atnf = true)")
    if any("S1400" not in v for v in subsets.values()):
        raise UserError("the ATNF export has no S1400 column (1400 MHz flux, mJy) for the asked-for fallback and no "
                        "MeerKAT table was given: add S1400 to the export or pass the MeerKAT TPA table")
    warnings.warn(f"observed flux maps: {ATNF_FALLBACK_FLUX_SOURCE}", UserWarning, stacklevel=2)
    return ({k: v[v["S1400"].notna() & (v["S1400"] > 0)].assign(S1400_Jy=lambda t: t["S1400"] / 1e3)
             for k, v in subsets.items()}, ATNF_FALLBACK_FLUX_SOURCE)


def subset_counts(atnf_path: str | Path, meerkat_path: str | Path | None = None,
                  atnf_fallback: bool = False) -> pd.DataFrame:
    """Pulsars per survey after the filters (``pulsars``) and after the flux join (``with_flux``), with the
    flux source in the attrs: the numbers of catalogs/README.md (``popstore observed-counts``)."""
    df, _ = filter_atnf(read_atnf(atnf_path))
    subsets = survey_subsets(df)
    fluxes, source = flux_subsets(subsets, read_meerkat(meerkat_path) if meerkat_path else None, atnf_fallback)
    table = pd.DataFrame({"pulsars": {k: len(v) for k, v in subsets.items()},
                          "with_flux": {k: len(v) for k, v in fluxes.items()}})
    table.attrs["flux_source"] = source
    return table


def survey_catalogue(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """ATNF rows as a star catalogue with the simulator's column names (ra, dec, l, b, P, Pdot, and
    S1400 in Jy for the rows of :func:`flux_subsets`).

    Proper motions are set to NaN: the observed velocity maps stay empty (their fill value),
    as most of these pulsars have no measured proper motion."""
    nan = np.full(len(df), np.nan)
    return {"pm_ra_cosdec": nan, "pm_dec": nan, "ra": df["RAJD"].to_numpy(float), "dec": df["DECJD"].to_numpy(float),
            "l": df["Gl"].to_numpy(float), "b": df["Gb"].to_numpy(float),
            "P": df["P0"].to_numpy(float), "Pdot": df["P1"].to_numpy(float),
            **({"S1400": df["S1400_Jy"].to_numpy(float)} if "S1400_Jy" in df else {})}


#: Map settings of the pulsar simulators that an observed store must share with its simulated store.
MAP_CONFIG_KEYS = ("pulsar.smooth_sigma_bins", "pulsar.velocity_fill", "pulsar.flux_fill", "pulsar.P_range_s",
                   "pulsar.Pdot_range", "pulsar.resolution_ppdot", "pulsar.resolution_dyn")


def check_survey_store(like: xr.Dataset) -> None:
    """Raise :class:`UserError` naming the coordinate a store lacks (or has too few of) to lay out
    observed survey maps: the ``survey`` axis of a ``pulsar_surveys`` store and its map coordinates."""
    who = f"the --like store (simulator {like.attrs.get('simulator')!r})"
    if "survey" not in like.coords:
        raise UserError(f"{who} has no 'survey' coordinate: observed survey maps need a pulsar_surveys store")
    cfg = simulator_config(like)
    if "pulsar" not in cfg:
        raise UserError(f"{who} has a 'survey' coordinate but no pulsar section in its simulator_config")


def observed_store(atnf_path: str | Path, like: xr.Dataset, meerkat_path: str | Path | None = None,
                   variables: Sequence[str] = SURVEY_MAP_VARIABLES, atnf_fallback: bool = False) -> xr.Dataset:
    """The observed survey maps as a one-sample dataset laid out exactly like the simulated store ``like``.

    Bins, coordinates and map settings come from ``like`` (its coordinates and
    ``simulator_config``); labels are NaN; velocity maps are empty (fill value), because
    the detection surveys give no proper motions for most pulsars. The flux maps use
    the MeerKAT TPA table at ``meerkat_path``; without it, the ATNF S1400 column only when
    ``atnf_fallback`` is asked for (see :func:`flux_subsets`; recorded in the ``flux_source`` attr).
    """
    check_survey_store(like)
    cfg = PulsarConfig.from_dict(simulator_config(like)["pulsar"])
    df, counts = filter_atnf(read_atnf(atnf_path))
    subsets = survey_subsets(df)
    fluxes, flux_source = flux_subsets(subsets, read_meerkat(meerkat_path) if meerkat_path else None,
                                       atnf_fallback)
    surveys = [str(s) for s in like["survey"].values]
    unknown = set(surveys) - set(subsets)
    if unknown:
        raise UserError(f"store {like.attrs.get('simulator')!r} has surveys {sorted(unknown)} with no observed subset")
    maps = survey_maps({s: survey_catalogue(subsets[s]) for s in surveys},
                       {s: survey_catalogue(fluxes[s]) for s in surveys}, cfg)
    data = {v: (like[v].dims, maps[v][np.newaxis].astype(like[v].dtype), dict(like[v].attrs)) for v in variables}
    for name in label_names(like):
        data[name] = ("sample", np.array([np.nan]), dict(like[name].attrs))
    data["seed"] = ("sample", np.array([-1], dtype=np.int64), {"long_name": "simulator seed (-1: observed)"})
    data["done"] = ("sample", np.array([True]), {"long_name": "sample written completely"})
    data["n_observed"] = ("survey", np.array([len(subsets[s]) for s in surveys], dtype=np.int64),
                          {"role": "diagnostic", "long_name": "observed pulsars in the survey subset"})
    data["n_observed_flux"] = ("survey", np.array([len(fluxes[s]) for s in surveys], dtype=np.int64),
                               {"role": "diagnostic", "long_name": "observed pulsars with a flux (flux maps)"})
    # coordinates rebuilt from the store's config with the simulator's own axis code; check_compatible
    # then verifies them against the store's coordinates
    coords: dict = {"sample": ("sample", np.array([0], dtype=np.int64), {"long_name": "sample index"})}
    for axis in survey_map_axes(cfg):
        cf_axis = {k: like[axis.name].attrs[k] for k in ("axis", "positive") if k in like[axis.name].attrs}
        coords.update(axis_coords(Axis(axis.name, values=surveys, long_name=axis.long_name)
                                  if axis.name == "survey" else axis, cf_axis))
    attrs = {k: like.attrs[k] for k in ("popstore_schema_version", "simulator", "simulator_version", "simulator_config")}
    attrs.update(popstore_version=__version__, samples_per_chunk=1, samples_per_shard=0,
                 created=datetime.now(timezone.utc).isoformat(timespec="seconds"), observed=1,
                 observed_catalogue=str(Path(atnf_path).name), flux_source=flux_source,
                 meerkat_table=str(Path(meerkat_path).name) if meerkat_path else "",
                 atnf_filter_counts=json.dumps(counts), like_store_fingerprint=like.attrs.get("config_fingerprint", ""))
    obs = xr.Dataset(data, coords=coords, attrs=attrs)
    check_compatible(obs, like, variables)
    return obs


# schema of the [observed] section (entry point of the "popstore.pipeline_sections" group): the observed
# catalogue files of a pipeline, read by `popstore observed --pipeline`; paths relative to the pipeline file
ObservedSection = section_schema("observed", atnf=(str, ...), meerkat=(Optional[str], None), output=(str, ...),
                                 flux_fallback_atnf=(bool, False))


def pipeline_observed_store(pipeline: str | Path) -> tuple[xr.Dataset, Path]:
    """The observed store of a pipeline's ``[observed]`` section on the bins of its ``[store]``, and the
    section's output path. The MeerKAT table, when the section names it, is the flux source; the ATNF
    S1400 fallback only with ``flux_fallback_atnf = true`` and no ``meerkat``."""
    from popstore.store import open_store

    pipe = Pipeline.load(pipeline)
    sec = pipe.section("observed")
    if not sec:
        raise UserError(f"{pipeline}: no [observed] section (atnf, meerkat, output)")
    if sec.get("meerkat") and sec.get("flux_fallback_atnf"):
        raise UserError(f"{pipeline}: [observed] names a meerkat table and flux_fallback_atnf = true; choose one")
    if not store_exists(pipe.store_path):
        raise UserError(f"{pipe.store_path}: the pipeline's store does not exist yet; run 'popstore generate' first")
    meerkat = pipe.path_of("observed", "meerkat") if sec.get("meerkat") else None
    obs = observed_store(pipe.path_of("observed", "atnf"), open_store(pipe.store_path), meerkat,
                         atnf_fallback=bool(sec.get("flux_fallback_atnf")))
    return obs, pipe.path_of("observed", "output")


def write_observed_store(ds: xr.Dataset, path: str | Path) -> None:
    """Write an observed dataset as a Zarr 3 store readable by :func:`popstore.open_store`."""
    if store_exists(path):
        raise FileExistsError(f"{path} exists; remove it or choose another output path")
    ds.to_zarr(store_location(path), mode="w-", zarr_format=3, consolidated=False, encoding=with_checksums(ds, {}))
    consolidate(path)


def check_compatible(observed: xr.Dataset, simulated: xr.Dataset,
                     variables: Sequence[str] = SURVEY_MAP_VARIABLES) -> None:
    """Raise :class:`UserError` naming the variable, coordinate, attr or map setting in which the stores differ."""
    compat.check_compatible(observed, simulated, variables, MAP_CONFIG_KEYS, names=("observed", "simulated"))
