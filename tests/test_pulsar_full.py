"""The pulsar_full simulator in a generated store and its pipeline file."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

import popstore
from popstore.priors import sample_table
from popstore.simulators import get_simulator
from popstore.plotting import plot_maps
from popstore.pulsars.full import catalogue_of_sample
from popstore.pulsars.maps import FULL_MAPS

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("mu_logB", "sigma_logB", "mu_logP", "sigma_logP", "a_late", "L_radio_log10_mean", "epsilon_L")


def test_simulator_outputs_and_determinism():
    sim = get_simulator("pulsar_full", n_stars=3000, resolution_dyn=16, resolution_ppdot=8)
    assert sim.parameter_names == LABELS
    assert sim.cfg.n_stars == 3000 and get_simulator("pulsar_full").cfg.n_stars == 300_000
    params = {p.name: 0.5 * (p.low + p.high) for p in sim.parameters}
    a, b = sim.check_sample(sim.simulate(params, 5)), sim.check_sample(sim.simulate(params, 5))
    c = sim.simulate(params, 6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["ppdot_map"], c["ppdot_map"])
    assert a["position_map_radec"].shape == (8, 16) and a["ppdot_map"].shape == (8, 8)
    np.testing.assert_allclose(a["position_map_xy"].sum(), a["n_in_xy_range"], rtol=1e-5)
    with pytest.raises(ValueError, match="missing parameters"):
        sim.simulate({"mu_logB": 13.0}, 0)
    with pytest.raises(ValueError, match="kick_distribution"):
        get_simulator("pulsar_full", kick_distribution="gaussian")


def test_generated_store_has_ten_maps_labels_and_catalogue(tmp_path, client):
    sim = get_simulator("pulsar_full", n_stars=2000, resolution_dyn=16, resolution_ppdot=8, keep_catalogue=True)
    table = sample_table(sim.parameters, 4, seed=3)
    report = popstore.generate(sim, table, tmp_path / "p.zarr", client, seed=1, samples_per_chunk=2, progress=False)
    assert report.complete
    ds = popstore.open_store(tmp_path / "p.zarr")
    assert set(FULL_MAPS) <= set(ds.data_vars)
    for name in FULL_MAPS:
        assert ds[name].attrs["role"] == "input" and ds[name].dims[0] == "sample"
    for lab in LABELS:
        assert ds[lab].attrs["role"] == "label"
        np.testing.assert_allclose(ds[lab].values, table[lab].values)
    assert ds["position_map_xy"].dims == ("sample", "y", "x")
    assert ds["ppdot_map"].dims == ("sample", "pdot", "p") and ds["p"].attrs["units"] == "s"
    np.testing.assert_allclose(ds["p_bnds"].values[[0, -1], [0, 1]], [1e-3, 1e2])
    assert ds["cat_P"].dims == ("sample", "star") and ds["cat_P"].attrs["role"] == "catalogue"
    # the store holds exactly what the simulator gives for the stored seed
    again = sim.simulate({k: float(ds[k].values[2]) for k in LABELS}, int(ds["seed"].values[2]))
    np.testing.assert_array_equal(ds["ppdot_map"].values[2], again["ppdot_map"].astype("float32"))
    np.testing.assert_array_equal(ds["cat_x"].values[2], again["cat_x"])
    # the per-star table of a stored sample, rebuilt from labels + seed + stored config
    table2 = catalogue_of_sample(ds, 2)
    assert len(table2) == 2000
    for col in ("x", "ra", "P", "Pdot", "S1400"):
        np.testing.assert_array_equal(table2[col].values, ds[f"cat_{col}"].values[2], err_msg=col)
    # one figure with the ten maps, axes from the stored coordinates
    fig = plot_maps(ds, sample=1)
    drawn = [a for a in fig.axes if a.get_visible() and a.get_title()]
    assert sorted(a.get_title() for a in drawn) == sorted(ds[v].attrs["long_name"] for v in FULL_MAPS)
    pp = next(a for a in drawn if a.get_title() == ds["ppdot_map"].attrs["long_name"])
    assert pp.get_xscale() == "log" and pp.get_xlabel() == "spin period [s]"
    assert plot_maps(ds, 1, ["ppdot_map"], tmp_path / "m.png").stat().st_size > 1000


def test_pipeline_file_parses_into_the_simulator():
    with open(ROOT / "pipelines" / "pulsar_full.toml", "rb") as f:
        pipe = tomllib.load(f)
    sim = get_simulator(pipe["simulator"]["name"], **pipe["simulator"]["config"])
    assert sim.cfg.n_stars == 300_000 and sim.cfg.resolution_dyn == 64


def test_config_json_round_trip_and_errors():
    import json

    from popstore.pulsars.config import PulsarConfig

    cfg = PulsarConfig(kick_distribution="double_maxwellian", arm_prob=(0.25, 0.25, 0.25, 0.24, 0.01))
    assert PulsarConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown PulsarConfig keys"):
        PulsarConfig.from_dict({"n_star": 10})
    with pytest.raises(ValueError, match="sum to 1"):
        PulsarConfig(arm_prob=(0.5, 0.5, 0.5, 0.5, 0.0))
