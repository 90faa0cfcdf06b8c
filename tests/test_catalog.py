"""Observed ATNF (+MeerKAT) catalogue: reading, filters, survey subsets, observed store, compatibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from popstore.pulsars.catalog import (
    excluded_association, filter_atnf, flux_subsets, read_atnf, read_meerkat, survey_subsets,
)

ATNF = Path(__file__).parents[2] / "shared" / "data" / "atnf_full_nobinary_06-08-2024.csv"
needs_atnf = pytest.mark.skipif(not ATNF.exists(), reason=f"ATNF export not found at {ATNF}")


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
    fluxes, source = flux_subsets(subsets, None)
    assert "FALLBACK" in source
    assert {k: len(v) for k, v in fluxes.items()} == {"PMPS": 947, "SMPS": 162, "HTRU": 942}
    np.testing.assert_allclose(fluxes["PMPS"]["S1400_Jy"], fluxes["PMPS"]["S1400"] / 1e3)


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
