"""SBI on the one-node SLURM: `popstore sbi rounds` generates every round's store in worker jobs and trains one
task per ensemble member on GPU-tagged workers; a rerun after a killed driver keeps the finished members."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import popstore
from slurm_helpers import cancel, driver_env, jobs, jobs_ended, kill_driver_when, slurm_cluster
from toy_simulators import LinearGaussian

# `popstore` as a driver process, with tests/ importable (the toy simulators)
DRIVER = "import popstore.cli as c; raise SystemExit(c.main())"


def pipeline_text(cluster: dict) -> str:
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cluster.items())
    return f"""
[simulator]
name = "toy_simulators:LinearGaussian"
[priors]
n_samples = 600
design = "latin_hypercube"
seed = 1
[store]
path = "base.zarr"
samples_per_chunk = 150
[split]
test = 0.1
valid = 0.15
seed = 2
[cluster]
{table}
[sbi]
output = "npe"
summary = 8
hidden_features = 16
num_transforms = 2
max_epochs = 15
patience = 4
lr = 1e-3
threads = 1
seeds = [0, 1]
parallel = "dask"
resources = {{GPU = 1}}
[sbi.rounds]
n_rounds = 1
simulations_per_round = 300
support_samples = 20000
observed = "observed.zarr"
"""


@pytest.mark.slow
def test_sbi_rounds_on_slurm_resume_after_a_killed_driver(slurm, tmp_path, client):
    name = f"ps-sbi-{os.getpid()}"
    cluster = slurm_cluster(tmp_path, name, max_jobs=2, memory="2GB", worker_extra_args=["--resources", "GPU=1"])
    (tmp_path / "p.toml").write_text(pipeline_text(cluster))
    popstore.generate(LinearGaussian(), pd.DataFrame([{"offset": 0.6, "gradient": -0.8}]), tmp_path / "observed.zarr",
                      client, seed=11, progress=False)
    out = tmp_path / "npe"
    members = [out / f"npe_seed{s}.pt" for s in (0, 1)]
    cmd = [sys.executable, "-c", DRIVER, "sbi", "rounds", str(tmp_path / "p.toml"), "-q"]
    proc = subprocess.Popen(cmd, env=driver_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    kill_driver_when(proc, lambda: any(p.exists() for p in members) or proc.poll() is not None, 900,
                     "a round-0 member finished", name)
    finished = {p: p.stat().st_mtime_ns for p in members if p.exists()}
    assert len(finished) == 1, "the driver was killed with one member trained"
    jobs_ended(name)
    n_jobs = len(jobs(name))
    try:
        rerun = subprocess.run(cmd, env=driver_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    finally:
        cancel(name)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # the finished member was not retrained
    assert all(p.exists() for p in members)
    assert all((out / "round1" / f"npe_seed{s}.pt").exists() for s in (0, 1))
    assert popstore.open_store(out / "round1" / "store.zarr")["done"].values.sum() == 300
    summary = pd.read_csv(out / "rounds.csv", index_col=0)
    assert summary["simulations"].tolist() == [600, 900]  # (how much a tiny ensemble truncates: tests/test_tsnpe.py)
    assert 0.0 < summary["prior_fraction"].iloc[1] <= 1.0
    assert len(jobs(name)) > n_jobs  # the rerun ran in new worker jobs
