"""CF conventions: units every registered simulator writes, and the CF checker (cfchecks) on a store of each."""

import numpy as np
import pytest
import xarray as xr

import popstore
from popstore.cf import megaparsec_over_h, udunits_available, unit_problem, unit_problems
from popstore.export import to_hdf5
from popstore.simulators import available, get_simulator
from popstore.store import choose_layout, create_store, sample_seeds, template

needs_udunits = pytest.mark.skipif(not udunits_available(), reason="libudunits2 not installed (apt libudunits2-dev)")


def small_template(name: str, n: int = 4) -> tuple:
    sim = get_simulator(name)
    params = sim.parameter_table(n, seed=0)
    layout = choose_layout(sim, n)
    return sim, params, layout


@pytest.mark.parametrize("name", available())
def test_every_units_attribute_of_each_simulator_store_is_read_alike_by_udunits_and_astropy(name):
    sim, params, layout = small_template(name)
    ds, _ = template(sim, params, sample_seeds(0, len(params)), layout)
    assert sum("units" in v.attrs for v in ds.variables.values()) >= len(sim.parameters) + len(sim.outputs)
    assert unit_problems(ds) == {}
    assert ds.attrs["Conventions"] == "CF-1.10"


def test_pulsar_per_star_catalogue_units_are_read_alike():
    """The per-star columns of pulsar_full and pulsar_surveys' catalogues (not in the default stores above)."""
    from popstore.pulsars.detected import CATALOGUE_COLUMNS
    from popstore.pulsars.population import COLUMNS

    ds = xr.Dataset({f"{k}_{i}": ((), 0.0, {"units": u}) for i, cols in enumerate((COLUMNS, CATALOGUE_COLUMNS))
                     for k, (u, _) in cols.items()})
    assert unit_problems(ds) == {}


@needs_udunits
def test_unit_checker_rejects_what_udunits_or_astropy_misread():
    for bad in ("Mpc/h", "pixel", "kpc", "deg", "Msun", "mag", "pc cm-3", "count", "log10(G)", "per century"):
        assert unit_problem(bad), bad
    # Mpc/h with h = 0.6711: 25 of them are 37.25 Mpc in both libraries
    assert unit_problem(megaparsec_over_h(0.6711)) is None
    import astropy.units as u
    np.testing.assert_allclose((25 * u.Unit(megaparsec_over_h(0.6711))).to_value(u.Mpc), 25 / 0.6711, rtol=1e-7)


EMPTY_TABLES = {
    "standard_names.xml": "<standard_name_table><version_number>0</version_number>"
                          "<last_modified>none</last_modified></standard_name_table>",
    "area_types.xml": "<area_type_table><version_number>0</version_number>"
                      "<date>none</date></area_type_table>",
    "region_names.xml": "<standardized_region_list><version_number>0</version_number>"
                        "<date>none</date></standardized_region_list>",
}


def cf_store(name: str, folder) -> str:
    """A 4-sample store of simulator ``name`` with its metadata as generate writes it, done and split.

    The maps keep their fill values: the CF check concerns metadata (no simulation is run)."""
    sim, params, layout = small_template(name)
    path = str(folder / f"{name}.zarr")
    create_store(path, sim, params, sample_seeds(0, len(params)), layout)
    xr.Dataset({"done": ("sample", np.ones(len(params), bool))}).to_zarr(
        path, region={"sample": slice(0, len(params))}, mode="r+", zarr_format=3, consolidated=False)
    popstore.split(path, test=0.25, valid=0.34, seed=0)
    return path


@needs_udunits
@pytest.mark.parametrize("name", available())
def test_cf_checker_finds_no_errors_in_each_simulator_store(name, tmp_path, capsys):
    """cfchecks (CF 1.10) on the netCDF export of each simulator's store: no FATAL or ERROR.

    The CF tables are read from local files: the store uses no standard_name, area_type or
    region (so empty tables are exact) and the test needs no network. cfchecker 4.1.0 (the
    newest) knows CF up to 1.8: the copy checked says CF-1.8 (the store uses nothing newer)."""
    cfchecks = pytest.importorskip("cfchecker.cfchecks")
    netCDF4 = pytest.importorskip("netCDF4")
    for fname, text in EMPTY_TABLES.items():
        (tmp_path / fname).write_text(text)
    nc = to_hdf5(cf_store(name, tmp_path), tmp_path / f"{name}.nc")
    with netCDF4.Dataset(nc, "a") as f:
        assert f.getncattr("Conventions") == "CF-1.10"
        f.setncattr("Conventions", "CF-1.8")
    checker = cfchecks.CFChecker(cfStandardNamesXML=str(tmp_path / "standard_names.xml"),
                                 cfAreaTypesXML=str(tmp_path / "area_types.xml"),
                                 cfRegionNamesXML=str(tmp_path / "region_names.xml"), version="1.8", silent=True)
    checker.checker(str(nc))
    counts = checker.get_total_counts()
    messages = [m for m in checker.all_messages if m.startswith(("FATAL", "ERROR", "WARN"))]
    with capsys.disabled():
        print(f"\ncfchecks {name}: {counts}" + "".join(f"\n  {m}" for m in messages))
    assert counts["FATAL"] == 0 and counts["ERROR"] == 0, messages
