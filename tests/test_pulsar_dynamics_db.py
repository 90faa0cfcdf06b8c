"""The dynamics database of the detection-driven pulsar simulator: build (Dask, resumable), checks, reuse."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster
from scipy.stats import ks_2samp

pytest.importorskip("ymw16", reason="YMW16 (pip install pyymw16) is not installed")

import popstore  # noqa: E402
from popstore.errors import UserError  # noqa: E402
from popstore.pulsars.config import PulsarConfig  # noqa: E402
from popstore.pulsars.dm import DMGrid  # noqa: E402
from popstore.pulsars.dynamics_db import (  # noqa: E402
    DATABASE_COLUMNS,
    DynamicsDatabase,
    PulsarDynamics,
    dynamics_fields,
)
from popstore.pulsars.population import simulate_dynamics  # noqa: E402
from popstore.simulators import get_simulator  # noqa: E402
from popstore.store import open_store  # noqa: E402

DYN = {"orbit_steps": 32}
TINY = dict(targets={"PMPS": 5, "SMPS": 1, "HTRU_low_mid": 5}, meerkat_sizes={"PMPS": 3, "SMPS": 1, "HTRU": 3},
            batch_sizes=(2000, 1000, 500), max_birth_rate=0.06, resolution_ppdot=16, resolution_dyn=16,
            dm_grid="coarse", **DYN)  # at most 0.06 x 3e7 / 100 = 18,000 stars per simulation
GRABER = {"mu_logB": 13.10, "sigma_logB": 0.45, "mu_logP": -1.00, "sigma_logP": 0.38, "a_late": -1.80,
          "L_radio_log10_mean": 26.17, "epsilon_L": 0.68}


@pytest.fixture(scope="module")
def threads():
    """A threaded Dask client (the flaky test simulator below lives in this module)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def build(path, n_blocks, stars_per_block, client, seed=11, sim=None):
    sim = sim or PulsarDynamics(stars_per_block=stars_per_block, **DYN)
    return popstore.generate(sim, sim.parameter_table(n_blocks, 0), path, client, seed=seed, samples_per_chunk=1,
                             progress=False)


@pytest.fixture(scope="module")
def dm_cache(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("dmcache"))
    DMGrid.load("coarse", cache_dir=path, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory, threads):
    path = tmp_path_factory.mktemp("db") / "dyn.zarr"
    assert build(path, 4, 5000, threads).complete
    return path


class Flaky(PulsarDynamics):
    """``pulsar_dynamics`` whose blocks with the given seeds fail, as if their worker had been killed."""

    def __init__(self, fail_seeds=(), **kw):
        super().__init__(**kw)
        self.fail_seeds = set(fail_seeds)

    def simulate(self, params, seed):
        if seed in self.fail_seeds:
            raise RuntimeError("worker lost")
        return super().simulate(params, seed)


def test_blocks_are_simulate_dynamics_of_their_seeds(tiny_db):
    ds = open_store(tiny_db, validate=False)
    assert ds.attrs["labels"] == [] and ds["done"].values.all()
    seed = int(ds["seed"].values[2])
    direct = simulate_dynamics(5000, np.random.default_rng(seed), PulsarConfig(**DYN))
    for c in DATABASE_COLUMNS:
        np.testing.assert_array_equal(ds[c].values[2], direct[c], err_msg=c)


def test_interrupted_build_resumes_to_the_same_database(tmp_path, tiny_db, threads):
    path = tmp_path / "dyn.zarr"
    seeds = open_store(tiny_db, validate=False)["seed"].values
    first = build(path, 4, 5000, threads, sim=Flaky(fail_seeds=seeds[[1, 3]], stars_per_block=5000, **DYN))
    assert not first.complete and first.failed["sample"].tolist() == [1, 3]
    with pytest.raises(UserError, match=r"incomplete \(2 of 4 blocks not done\)"):
        DynamicsDatabase.open(path, PulsarConfig(**DYN))
    second = build(path, 4, 5000, threads)
    assert second.n_skipped == 2 and second.n_written == 2
    a, b = open_store(path, validate=False).load(), open_store(tiny_db, validate=False).load()
    for c in DATABASE_COLUMNS:
        np.testing.assert_array_equal(a[c].values, b[c].values, err_msg=c)


def test_stream_gives_every_star_once_in_block_order(tiny_db):
    db = DynamicsDatabase.open(tiny_db, PulsarConfig(**DYN))
    order = np.random.default_rng(4).permutation(4)
    stream = db.stream(np.random.default_rng(4))
    taken = [stream.take(n) for n in (3000, 4000, 6000, 7000)]  # crossing block edges, 20,000 in all
    expected = np.concatenate([db.block(k)["d"] for k in order])
    np.testing.assert_array_equal(np.concatenate([t["d"] for t in taken]), expected)
    with pytest.raises(RuntimeError, match="exhausted after 20,000 stars"):
        stream.take(1)


def test_mismatches_are_one_line_user_errors(tiny_db, tmp_path, dm_cache):
    kw = {**TINY, "dm_cache_dir": dm_cache}
    with pytest.raises(UserError, match=r"built with kick_sigma_kms = 265, but this configuration has "
                                        r"kick_sigma_kms = 300"):
        get_simulator("pulsar_surveys", dynamics_database=str(tiny_db), **{**kw, "kick_sigma_kms": 300.0})
    with pytest.raises(UserError, match="built with orbit_steps = 32, but this configuration has orbit_steps = 128"):
        get_simulator("pulsar_surveys", dynamics_database=str(tiny_db), **{**kw, "orbit_steps": 128})
    with pytest.raises(UserError, match=r"holds 20,000 stars, fewer than the 30,000 one simulation may draw"):
        get_simulator("pulsar_surveys", dynamics_database=str(tiny_db), **{**kw, "max_birth_rate": 0.1})
    with pytest.raises(UserError, match="does not exist"):
        get_simulator("pulsar_surveys", dynamics_database=str(tmp_path / "none.zarr"), **kw)
    old = tmp_path / "old.zarr"  # a database from before a dynamical setting was added
    shutil.copytree(tiny_db, old)
    group = zarr.open_group(old, mode="r+")
    config = json.loads(group.attrs["simulator_config"])
    del config["pulsar"]["h_c_kpc"]
    group.attrs["simulator_config"] = json.dumps(config)
    with pytest.raises(UserError, match="built before the setting h_c_kpc existed"):
        DynamicsDatabase.open(old, PulsarConfig(**DYN))
    # magneto-rotational and radio settings are free: the database does not depend on them
    sim = get_simulator("pulsar_surveys", dynamics_database=str(tiny_db),
                        **{**kw, "B_initial_log10_mean": 12.5, "luminosity_model": "graber2024", "n_stars": 7})
    assert sim.config["dynamics_database"]["n_blocks"] == 4
    assert "kick_sigma_kms" in dynamics_fields() and "B_initial_log10_mean" not in dynamics_fields()


def test_database_path_is_reproducible(tiny_db, dm_cache):
    sim = get_simulator("pulsar_surveys", dynamics_database=str(tiny_db), dm_cache_dir=dm_cache, **TINY)
    shipped = pickle.loads(pickle.dumps(sim))  # as a Dask worker gets it: the database is reopened there
    assert shipped._database is None
    a, b, c = sim.simulate(GRABER, 5), shipped.simulate(GRABER, 5), sim.simulate(GRABER, 6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["n_detected"].tolist() == [5, 1, 5] and a["aborted"] == 0
    assert not np.array_equal(a["ppdot_map"], c["ppdot_map"])


@pytest.mark.slow
def test_database_path_gives_the_direct_path_populations(tmp_path, dm_cache, threads):
    """Detected stars of 6 populations per path at the Graber 2024 medians: two-sample KS per quantity
    below the 0.1 % critical value, and the stars needed per detection within 10 %."""
    path = tmp_path / "dyn.zarr"
    assert build(path, 8, 20_000, threads).complete  # 160,000 stars, >= the 150,000 cap below
    kw = dict(targets={"PMPS": 100, "SMPS": 20, "HTRU_low_mid": 100}, batch_sizes=(20_000, 5_000, 2_000),
              max_birth_rate=0.5, dm_grid="coarse", dm_cache_dir=dm_cache, **DYN)
    runs = {}
    for name, extra in (("direct", {}), ("database", {"dynamics_database": str(path)})):
        sim = get_simulator("pulsar_surveys", **kw, **extra)
        runs[name] = [sim.run(GRABER, np.random.default_rng(100 + i)) for i in range(6)]

    def pooled(name, col):
        return np.concatenate([r.detected[s][col] for r in runs[name] for s in ("PMPS", "HTRU_low_mid")])

    n = pooled("direct", "P").size
    d_crit = 1.95 * np.sqrt(2.0 / n)  # alpha = 0.001, equal sizes
    for col, f in (("P", np.log10), ("Pdot", np.log10), ("d", None), ("dm", None), ("l", None), ("b", None),
                   ("S1400", np.log10)):
        x, y = (pooled(k, col) if f is None else f(pooled(k, col)) for k in ("direct", "database"))
        assert ks_2samp(x, y).statistic < d_crit, (col, ks_2samp(x, y).statistic, d_crit)
    per_detection = {k: np.mean([r.n_created for r in runs[k]]) for k in runs}
    assert per_detection["database"] == pytest.approx(per_detection["direct"], rel=0.10), per_detection


def test_pipeline_files_build_and_select_the_database(tmp_path, tiny_db, dm_cache, capsys):
    """`popstore generate` on a pulsar_dynamics pipeline builds a database; a pulsar_surveys pipeline selects one in
    [simulator.config], and `popstore check` stops a mismatched one with one line naming the setting (exit 2)."""
    from popstore.cli import main

    (tmp_path / "dyn.toml").write_text(f"""
[simulator]
name = "popstore.pulsars.dynamics_db:PulsarDynamics"
[simulator.config]
stars_per_block = 2000
orbit_steps = 32
[priors]
n_samples = 2
[store]
path = "dyn.zarr"
seed = 3
samples_per_chunk = 1
[cluster]
kind = "local"
n_workers = 1
threads_per_worker = 1
""")
    assert main(["generate", str(tmp_path / "dyn.toml"), "-q"]) == 0
    assert DynamicsDatabase.open(tmp_path / "dyn.zarr", PulsarConfig(**DYN)).n_stars == 4000
    surveys = f"""
[simulator]
name = "pulsar_surveys"
[simulator.config]
dynamics_database = "{tiny_db}"
dm_grid = "coarse"
dm_cache_dir = "{dm_cache}"
max_birth_rate = 0.06
orbit_steps = 32
KICK
[priors]
n_samples = 2
[store]
path = "s.zarr"
"""
    (tmp_path / "surveys.toml").write_text(surveys.replace("KICK", ""))
    assert main(["check", str(tmp_path / "surveys.toml")]) == 0
    capsys.readouterr()
    (tmp_path / "surveys.toml").write_text(surveys.replace("KICK", "kick_sigma_kms = 300.0"))
    assert main(["check", str(tmp_path / "surveys.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "built with kick_sigma_kms = 265, but this configuration has kick_sigma_kms = 300" in err
