"""The detection-driven ``pulsar_surveys`` simulator and the observed store built on its bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ymw16", reason="YMW16 (pip install pyymw16) is not installed")

import popstore  # noqa: E402
from popstore.pulsars.catalog import check_compatible, observed_store, write_observed_store  # noqa: E402
from popstore.priors import sample_table  # noqa: E402
from popstore.simulators import get_simulator  # noqa: E402
from popstore.pulsars.detected import BirthRateExceeded, batch_size  # noqa: E402
from popstore.pulsars.dm import DMGrid  # noqa: E402
from popstore.pulsars.survey_maps import SURVEY_MAP_VARIABLES  # noqa: E402
from popstore.pulsars.surveys import SURVEYS  # noqa: E402
from popstore.store import Layout, sample_seeds, template  # noqa: E402

ATNF = Path(__file__).parents[2] / "shared" / "data" / "atnf_full_nobinary_06-08-2024.csv"
TPA = ATNF.with_name("meerkat_tpa_census_posselt2023.csv")  # MeerKAT TPA census: the flux source
TARGETS = {"PMPS": 12, "SMPS": 3, "HTRU_low_mid": 12, "HTRU_high": 2}
MEERKAT = {"PMPS": 6, "SMPS": 2, "HTRU": 6}
MID = {"mu_logB": 13.0, "sigma_logB": 0.5, "mu_logP": -0.5, "sigma_logP": 0.5, "a_late": -1.5,
       "L_radio_log10_mean": 26.6, "epsilon_L": 0.55}


@pytest.fixture(scope="module")
def dm_cache(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("dmcache"))
    DMGrid.load("coarse", cache_dir=path, progress=False)  # once, before any Dask worker needs it
    return path


def small(dm_cache: str, **kw):
    cfg = dict(targets=TARGETS, meerkat_sizes=MEERKAT, batch_sizes=(4000, 1000, 500), dm_grid="coarse",
               dm_cache_dir=dm_cache, resolution_ppdot=16, resolution_dyn=16, orbit_steps=32)
    cfg.update(kw)
    return get_simulator("pulsar_surveys", **cfg)


def test_batch_schedule():
    t = {"A": 100, "B": 10}
    assert batch_size({"A": 0, "B": 10}, t, (100_000, 10_000, 5_000), (0.9, 0.95)) == 100_000
    assert batch_size({"A": 90, "B": 10}, t, (100_000, 10_000, 5_000), (0.9, 0.95)) == 10_000
    assert batch_size({"A": 96, "B": 20}, t, (100_000, 10_000, 5_000), (0.9, 0.95)) == 5_000


def test_detection_run_reaches_targets(dm_cache):
    sim = small(dm_cache)
    run = sim.run(MID, np.random.default_rng(3))
    assert {k: len(v["P"]) for k, v in run.detected.items()} == TARGETS
    assert run.birth_rate == pytest.approx(run.n_created / (3e7 / 100))
    for name, members in (("PMPS", ["PMPS"]), ("SMPS", ["SMPS"]), ("HTRU_low_mid", ["HTRU_low", "HTRU_mid"]),
                          ("HTRU_high", ["HTRU_high"])):
        det = run.detected[name]
        assert np.all(det["snr"] > 9)
        inside = np.logical_or.reduce([SURVEYS[m].sky.contains(det["l"], det["b"], det["dec"]) for m in members])
        assert inside.all()
        assert np.all(det["d"] < 35) and np.all(det["S1400"] > 0)


def test_simulate_is_deterministic_and_shaped(dm_cache):
    sim = small(dm_cache)
    a, b = sim.simulate(MID, 7), sim.simulate(MID, 7)
    out = sim.check_sample(a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert out["ppdot_map"].shape == (3, 16, 16) and out["position_map_radec"].shape == (3, 8, 16)
    assert out["n_detected"].tolist() == list(TARGETS.values()) and out["aborted"] == 0
    # the density maps hold the detected stars (Gaussian smoothing conserves counts away from the edges)
    assert out["ppdot_map"].sum(axis=(1, 2)) == pytest.approx([12, 3, 12], rel=0.15)
    assert np.all(out["ppdot_map_fluxes"] >= -7.0 - 1e-6) and np.all(out["ppdot_map_fluxes"] < 0)


def test_birth_rate_abort(dm_cache):
    sim = small(dm_cache, max_birth_rate=0.001)  # 0.001 per century: 300 stars at most
    with pytest.raises(BirthRateExceeded, match="exceeds the maximum 0.001"):
        sim.simulate(MID, 1)
    flagged = small(dm_cache, max_birth_rate=0.001, on_birth_rate_exceeded="flag").simulate(MID, 1)
    assert flagged["aborted"] == 1 and np.isnan(flagged["ppdot_map"]).all()
    assert flagged["birth_rate"] > 0.001


@pytest.fixture(scope="module")
def stores(tmp_path_factory, dm_cache, client):
    root = tmp_path_factory.mktemp("surveys")
    sim = small(dm_cache)
    params = sample_table(sim.parameters, 2, seed=0, ranges={"L_radio_log10_mean": (26.0, 27.5), "mu_logB": (12.6, 13.4)})
    report = popstore.generate(sim, params, root / "sim.zarr", client, seed=5, samples_per_chunk=1, progress=False)
    assert report.complete
    single = popstore.generate(sim, params.iloc[:1], root / "single.zarr", client, seed=6, progress=False)
    assert single.complete
    return root, sim


@pytest.mark.skipif(not (ATNF.exists() and TPA.exists()), reason=f"ATNF or TPA table not found at {ATNF.parent}")
def test_observed_store_shares_coordinates(stores):
    root, sim = stores
    simulated = popstore.open_store(root / "sim.zarr")
    obs = observed_store(ATNF, simulated, TPA)
    write_observed_store(obs, root / "obs.zarr")
    back = popstore.open_store(root / "obs.zarr")
    for name in simulated.coords:
        if name != "sample" and name in back.coords:
            np.testing.assert_array_equal(back[name].values, simulated[name].values)
            assert back[name].attrs == simulated[name].attrs
    for v in SURVEY_MAP_VARIABLES:
        assert back[v].dims == simulated[v].dims and back.sizes["sample"] == 1
        assert back[v].attrs == simulated[v].attrs
    for axis in ("p", "pdot", "ra", "dec"):
        bnds = simulated[axis].attrs["bounds"]
        np.testing.assert_array_equal(back[bnds].values, simulated[bnds].values)
    check_compatible(back, simulated)
    assert back["n_observed"].values.tolist() == [965, 192, 985]
    assert back["n_observed_flux"].values.tolist() == [618, 160, 663]  # joined with the MeerKAT TPA census
    assert back.attrs["flux_source"].startswith("MeerKAT TPA")
    assert np.isnan(back["mu_logB"].values).all()
    assert (back["velocity_map_vra"].values == 0).all()
    # counts: the smoothed PMPS P-Pdot map still holds all 965 pulsars (reflecting edges conserve counts)
    assert float(back["ppdot_map"].sel(survey="PMPS").sum()) == pytest.approx(965, rel=1e-5)


@pytest.mark.skipif(not (ATNF.exists() and TPA.exists()), reason=f"ATNF or TPA table not found at {ATNF.parent}")
def test_single_population_store(stores):
    root, _ = stores
    single = popstore.open_store(root / "single.zarr")
    assert single.sizes["sample"] == 1 and bool(single["done"].all())
    obs = observed_store(ATNF, single, TPA)
    check_compatible(obs, single)
    assert single["ppdot_map"].shape == (1, 3, 16, 16)
    assert single["n_detected"].values[0].tolist() == list(TARGETS.values())


@pytest.mark.skipif(not (ATNF.exists() and TPA.exists()), reason=f"ATNF or TPA table not found at {ATNF.parent}")
def test_mismatch_is_a_clear_error(stores, dm_cache):
    root, sim = stores
    obs = observed_store(ATNF, popstore.open_store(root / "sim.zarr"), TPA)

    def like(**kw):
        s = small(dm_cache, **kw)
        params = sample_table(s.parameters, 1, seed=0)
        return template(s, params, sample_seeds(0, 1), Layout(1, 1, 1))[0]

    with pytest.raises(ValueError, match="coordinate 'pdot' differs in resolution: 16 vs 8 bins"):
        check_compatible(obs, like(resolution_ppdot=8))
    with pytest.raises(ValueError, match="coordinate 'dec' differs in resolution: 8 vs 16 bins"):
        check_compatible(obs, like(resolution_dyn=32))
    with pytest.raises(ValueError, match="coordinate 'p' differs in range"):
        check_compatible(obs, like(P_range_s=(1e-3, 10.0)))
    with pytest.raises(ValueError, match="attr 'smooth_sigma_bins' differs"):
        check_compatible(obs, like(smooth_sigma_bins=2.0))
    with pytest.raises(ValueError, match="attr 'fill' differs"):
        check_compatible(obs, like(flux_fill=-8.0))
    with pytest.raises(ValueError, match="'ppdot_map_fluxes' is missing from the simulated store"):
        check_compatible(obs, like().drop_vars("ppdot_map_fluxes"))


@pytest.mark.skipif(not (ATNF.exists() and TPA.exists()), reason=f"ATNF or TPA table not found at {ATNF.parent}")
def test_cli_observed_and_compare(stores, tmp_path, capsys):
    from popstore.cli import main

    root, _ = stores
    assert main(["observed", str(ATNF), "--like", str(root / "sim.zarr"), "-o", str(tmp_path / "nomk.zarr")]) == 2
    assert "need the MeerKAT TPA census" in capsys.readouterr().err  # no silent ATNF flux fallback
    with pytest.warns(UserWarning, match="FALLBACK"):
        assert main(["observed", str(ATNF), "--like", str(root / "sim.zarr"), "--flux-fallback-atnf",
                     "-o", str(tmp_path / "fallback.zarr")]) == 0
    captured = capsys.readouterr()
    assert "with flux {'PMPS': 947, 'SMPS': 162, 'HTRU': 942}" in captured.out and "WARNING: FALLBACK" in captured.err
    assert popstore.open_store(tmp_path / "fallback.zarr").attrs["flux_source"].startswith("FALLBACK")
    assert main(["observed", str(ATNF), "--like", str(root / "sim.zarr"), "--meerkat", str(TPA),
                 "-o", str(tmp_path / "obs.zarr")]) == 0
    out = capsys.readouterr().out
    assert "'PMPS': 965" in out and "with flux {'PMPS': 618, 'SMPS': 160, 'HTRU': 663}" in out
    png = tmp_path / "cmp.png"
    assert main(["compare-ppdot", str(tmp_path / "obs.zarr"), str(root / "sim.zarr"), "--sample", "1",
                 "-o", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["compare-ppdot", str(tmp_path / "obs.zarr"), str(root / "sim.zarr"), "--sample", "5", "-o",
                 str(tmp_path / "cmp5.png")]) == 2
    assert "outside the store's 2 samples" in capsys.readouterr().err


def test_catalogue_reproduces_stored_maps(dm_cache, client, tmp_path):
    from popstore.pulsars.detected import CATALOGUE_COLUMNS
    from popstore.pulsars.survey_maps import MAP_SURVEYS, survey_maps

    sim = small(dm_cache, keep_catalogue=True)
    params = sample_table(sim.parameters, 2, seed=0, ranges={"L_radio_log10_mean": (26.0, 27.5), "mu_logB": (12.6, 13.4)})
    assert popstore.generate(sim, params, tmp_path / "cat.zarr", client, seed=5, progress=False).complete
    ds = popstore.open_store(tmp_path / "cat.zarr")
    assert ds.sizes["detected"] == 12 + 3 + 12
    for i in range(2):
        cat = {k: ds[f"cat_{k}"].values[i] for k in CATALOGUE_COLUMNS}
        survey, in_flux = ds["cat_survey"].values[i], ds["cat_in_flux_map"].values[i]
        assert np.bincount(survey).tolist() == [12, 3, 12]
        assert [int(in_flux[survey == j].sum()) for j in range(3)] == list(MEERKAT.values())
        positions = {s: {k: v[survey == j] for k, v in cat.items()} for j, s in enumerate(MAP_SURVEYS)}
        fluxes = {s: {k: v[(survey == j) & in_flux] for k, v in cat.items()} for j, s in enumerate(MAP_SURVEYS)}
        rebuilt = survey_maps(positions, fluxes, sim.pulsar)
        for v in SURVEY_MAP_VARIABLES:
            np.testing.assert_array_equal(rebuilt[v].astype(ds[v].dtype), ds[v].values[i], err_msg=v)
        assert np.all(cat["snr"] > 9) and np.all(cat["d"] < 35) and np.all(cat["age"] <= 3e7)
    # the same seed without the catalogue gives the same maps
    plain = small(dm_cache).simulate({k: float(params[k].iloc[0]) for k in sim.parameter_names}, int(ds["seed"].values[0]))
    for v in SURVEY_MAP_VARIABLES:
        np.testing.assert_array_equal(plain[v].astype(ds[v].dtype), ds[v].values[0], err_msg=v)


def test_graber_setting_stores_no_unused_labels(dm_cache):
    from popstore.pulsars.config import GRABER2024_POSTERIOR_MEDIANS, PulsarConfig, resolve_labels

    sim = small(dm_cache, setting="graber2024")
    assert sim.parameter_names == ("mu_logB", "sigma_logB", "mu_logP", "sigma_logP", "a_late")
    assert sim.pulsar.luminosity_model == "graber2024" and sim.pulsar.spectral_index == -1.6
    assert sim.config["setting"] == "graber2024"
    ds = template(sim, sample_table(sim.parameters, 1, seed=0), sample_seeds(0, 1), Layout(1, 1, 1))[0]
    assert "L_radio_log10_mean" not in ds and "epsilon_L" not in ds and "mu_logB" in ds
    out = sim.check_sample(sim.simulate(GRABER2024_POSTERIOR_MEDIANS, 3))
    assert out["n_detected"].tolist() == list(TARGETS.values())
    with pytest.raises(ValueError, match="unknown pulsar labels \\['epsilon_L'\\] for luminosity_model 'graber2024'"):
        resolve_labels({"epsilon_L": 0.5}, sim.pulsar)
    # the Pardo-Araujo et al. (2025) default keeps all seven labels; field keywords override a setting
    assert len(small(dm_cache).parameter_names) == 7
    assert small(dm_cache, setting="graber2024", spectral_index=-1.4).pulsar.spectral_index == -1.4
    with pytest.raises(ValueError, match="unknown pulsar setting 'graber'"):
        small(dm_cache, setting="graber")
    # the neutron-star radius is a named choice; an old stored config with ns_radius_cm still loads
    assert PulsarConfig(ns_radius="bsk24").ns_radius_cm == 1.259e6 and PulsarConfig().ns_radius_cm == 1.1e6
    old = {k: v for k, v in PulsarConfig().to_dict().items() if k != "ns_radius"} | {"ns_radius_cm": 1.259e6}
    assert PulsarConfig.from_dict(old).ns_radius == "bsk24"
    ratio = PulsarConfig(ns_radius="bsk24").beta_spindown / PulsarConfig().beta_spindown
    assert ratio == pytest.approx((1.259 / 1.1) ** 4, rel=1e-12)  # beta = pi^2 R^6 / (0.4 M R^2 c^3) ~ R^4


@pytest.mark.skipif(not ATNF.exists(), reason=f"ATNF export not found at {ATNF}")
def test_observed_like_a_full_store_names_the_coordinate(client, tmp_path, capsys):
    from popstore.cli import main
    from popstore.errors import UserError

    full = get_simulator("pulsar_full", n_stars=300, resolution_dyn=8, resolution_ppdot=8, orbit_steps=16)
    params = sample_table(full.parameters, 1, seed=0)
    assert popstore.generate(full, params, tmp_path / "full.zarr", client, seed=1, progress=False).complete
    with pytest.raises(UserError, match="simulator 'pulsar_full'\\) has no 'survey' coordinate"):
        observed_store(ATNF, popstore.open_store(tmp_path / "full.zarr"))
    assert main(["observed", str(ATNF), "--like", str(tmp_path / "full.zarr"), "-o", str(tmp_path / "obs.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no 'survey' coordinate" in err and "Traceback" not in err
    assert not (tmp_path / "obs.zarr").exists()


@pytest.mark.skipif(not (ATNF.exists() and TPA.exists()), reason=f"ATNF or TPA table not found at {ATNF.parent}")
def test_observed_store_from_a_pipeline_section(stores, dm_cache, tmp_path, capsys):
    from popstore.cli import main
    from popstore.pipeline import section_names

    if "observed" not in section_names():
        pytest.skip("the [observed] section's entry point is not installed (pip install -e .)")
    root, _ = stores

    def pipeline(observed: str) -> Path:
        path = tmp_path / "p.toml"
        path.write_text(f"""
[simulator]
name = "pulsar_surveys"
[simulator.config]
dm_grid = "coarse"
dm_cache_dir = "{dm_cache}"
resolution_ppdot = 16
resolution_dyn = 16
[priors]
n_samples = 2
[store]
path = "{root / 'sim.zarr'}"
[observed]
atnf = "{ATNF}"
output = "obs_from_pipeline.zarr"
{observed}
""")
        return path

    assert main(["observed", "--pipeline", str(pipeline(f'meerkat = "{TPA}"'))]) == 0
    assert "with flux {'PMPS': 618, 'SMPS': 160, 'HTRU': 663} (MeerKAT TPA" in capsys.readouterr().out
    obs = popstore.open_store(tmp_path / "obs_from_pipeline.zarr")
    assert obs.attrs["meerkat_table"] == TPA.name and obs["n_observed_flux"].values.tolist() == [618, 160, 663]
    both = pipeline(f'meerkat = "{TPA}"\nflux_fallback_atnf = true')
    assert main(["observed", "--pipeline", str(both), "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert main(["observed", "--pipeline", str(pipeline("")), "--overwrite"]) == 2
    assert "need the MeerKAT TPA census" in capsys.readouterr().err
