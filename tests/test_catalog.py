"""Observed ATNF (+MeerKAT) catalogue: reading, filters, survey subsets, observed store, compatibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from popstore.errors import UserError
from popstore.pulsars.catalog import (
    ATNF_FALLBACK_FLUX_SOURCE, MEERKAT_FLUX_SOURCE, excluded_association, filter_atnf, flux_subsets, read_atnf,
    read_meerkat, subset_counts, survey_subsets,
)

ATNF = Path(__file__).parents[2] / "shared" / "data" / "atnf_full_nobinary_06-08-2024.csv"
MEERKAT_TABLE = Path(__file__).parents[2] / "shared" / "data" / "meerkat_tpa_census_posselt2023.csv"
needs_atnf = pytest.mark.skipif(not ATNF.exists(), reason=f"ATNF export not found at {ATNF}")
needs_meerkat = pytest.mark.skipif(not (ATNF.exists() and MEERKAT_TABLE.exists()),
                                   reason=f"ATNF export or MeerKAT TPA table not found next to {ATNF}")


@pytest.fixture(scope="module")
def atnf() -> pd.DataFrame:
    return read_atnf(ATNF)


@needs_atnf
def test_read_atnf_columns_and_nulls(atnf):
    assert len(atnf) == 3284
    assert {"PSRJ", "P0", "P1", "Gl", "Gb", "RAJD", "DECJD", "S1400", "ASSOC", "SURVEY"} <= set(atnf.columns)
    assert atnf["P0"].dtype == float and atnf["P0"].isna().sum() > 0  # NAN -> NaN
    row = atnf[atnf["PSRJ"] == "J0002+6216"].iloc[0]
    assert row["P0"] == 0.115364 and row["P1"] == 5.97e-15 and row["DM"] == 218.60


@needs_atnf
def test_filter_counts_of_shipped_export(atnf):
    df, counts = filter_atnf(atnf)
    assert counts == {"read": 3284, "with_P0_P1": 2399, "not_GC_or_MC": 2333, "isolated_non_recycled": 2257}
    assert (df["P0"] > 0.01).all() and (df["P1"] > 1e-19).all()
    assert df["Gl"].between(-180, 180).all()
    assert not excluded_association(df["ASSOC"]).any()
    subsets = survey_subsets(df)
    assert {k: len(v) for k, v in subsets.items()} == {"PMPS": 965, "SMPS": 192, "HTRU": 985}
    pm = subsets["PMPS"]
    assert pm["SURVEY"].str.contains("pksmb").all() and (pm["Gb"].abs() < 5).all()
    assert pm["Gl"].between(-100, 50, inclusive="neither").all()
    with pytest.raises(UserError, match="need the MeerKAT TPA census"):
        flux_subsets(subsets, None)  # the fallback only when asked for
    with pytest.warns(UserWarning, match="FALLBACK"):
        fluxes, source = flux_subsets(subsets, None, atnf_fallback=True)
    assert source == ATNF_FALLBACK_FLUX_SOURCE
    assert {k: len(v) for k, v in fluxes.items()} == {"PMPS": 947, "SMPS": 162, "HTRU": 942}
    np.testing.assert_allclose(fluxes["PMPS"]["S1400_Jy"], fluxes["PMPS"]["S1400"] / 1e3)


@needs_meerkat
def test_meerkat_join_counts_of_shipped_tables():
    mk = read_meerkat(MEERKAT_TABLE)
    assert len(mk) == 1201 and not mk["PSRJ"].duplicated().any()  # 1237 census rows, 36 without ch6flux
    table = subset_counts(ATNF, MEERKAT_TABLE)
    assert table.attrs["flux_source"] == MEERKAT_FLUX_SOURCE
    assert table["pulsars"].to_dict() == {"PMPS": 965, "SMPS": 192, "HTRU": 985}
    assert table["with_flux"].to_dict() == {"PMPS": 618, "SMPS": 160, "HTRU": 663}
    fluxes, _ = flux_subsets(survey_subsets(filter_atnf(read_atnf(ATNF))[0]), mk)
    # every joined flux is the census ch6flux of that pulsar, in Jy
    census = pd.read_csv(MEERKAT_TABLE).set_index("PSRJ")["ch6flux"]
    np.testing.assert_allclose(fluxes["SMPS"]["S1400_Jy"], census.loc[fluxes["SMPS"]["PSRJ"]].to_numpy() / 1e3)


def test_association_matching_is_per_entry():
    assoc = pd.Series(["GC:M28(NGC6626),XRS:", "GRS:4FGL_J0540.3-6920,EXGAL:LMC,", "SNR:G11.2-0.3", "", "GC:M30(NGC7099)"])
    assert excluded_association(assoc).tolist() == [True, True, False, False, True]


def test_meerkat_table_join(tmp_path):
    # the published table format (Posselt et al. 2023, Census_Table5.csv): PSRJ and ch6flux in mJy
    table = tmp_path / "Census_Table5.csv"
    pd.DataFrame({"PSRJ": ["J0001+0001", "J0002+0002", "J0003+0003"], "ch6flux": [2.5, np.nan, 0.4],
                  "ch1flux": [3.0, 1.0, 0.5]}).to_csv(table, index=False)
    mk = read_meerkat(table)
    assert mk["PSRJ"].tolist() == ["J0001+0001", "J0003+0003"]
    np.testing.assert_allclose(mk["S1400"], [2.5e-3, 4e-4])
    subsets = {"PMPS": pd.DataFrame({"PSRJ": ["J0001+0001", "J0002+0002", "J0009+0009"], "S1400": [9.0, 9.0, 9.0],
                                     "P0": [0.1, 0.2, 0.3]})}
    joined, source = flux_subsets(subsets, mk)
    assert "MeerKAT" in source
    assert joined["PMPS"]["PSRJ"].tolist() == ["J0001+0001"] and joined["PMPS"]["S1400_Jy"].tolist() == [2.5e-3]
    assert joined["PMPS"]["S1400"].tolist() == [9.0]  # the ATNF value (mJy) is kept alongside, unused
    with pytest.raises(ValueError, match="ch6flux"):
        pd.DataFrame({"PSRJ": ["J1"], "flux": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
        read_meerkat(tmp_path / "bad.csv")


def test_read_atnf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalogs/README.md"):
        read_atnf(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("#;PSRJ;P0;\n;;(s);\n1;J0000+0000;0.5;\n")
    with pytest.raises(ValueError, match="missing"):
        read_atnf(bad)
