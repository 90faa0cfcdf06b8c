"""The SLURM cluster of a [cluster] table on a real one-node SLURM: TLS keeps others out; flow ensembles train
one task per member on GPU-tagged workers, and a rerun after a killed driver trains only unfinished members."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security

from cluster_checks import refused
from popstore.cluster import cluster_client
from slurm_helpers import cancel, driver_env, jobs, jobs_ended, kill_driver_when, slurm_cluster, write_pipeline

TRAIN = Path(__file__).with_name("train_members.py")


def test_slurm_scheduler_refuses_clients_without_the_runs_credentials(slurm, tmp_path):
    name = f"ps-tls-{os.getpid()}"
    try:
        with cluster_client(slurm_cluster(tmp_path, name, max_jobs=1)) as client:
            assert client.submit(sum, [1, 2]).result(timeout=180) == 3  # ran in a worker job
            assert list(jobs(name).values()) == ["RUNNING"]
            address = client.scheduler.address
            workers = list(client.scheduler_info()["workers"])
            assert address.startswith("tls://") and all(w.startswith("tls://") for w in workers)
            for target in (address, workers[0]):
                assert refused(target, None)  # no credentials
                assert refused(target.replace("tls://", "tcp://"), None)  # plain TCP
                assert refused(target, Security.temporary())  # another run's certificates
            with Client(address, security=client.cluster.security, timeout="10s", set_as_default=False) as owner:
                assert owner.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    finally:
        cancel(name)


def test_gpu_directives_reach_the_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    cfg = slurm_cluster(tmp_path, "gpu", job_extra_directives=["--gres=gpu:1"],
                        worker_extra_args=["--resources", "GPU=1"])
    with cluster_client(cfg) as client:
        script = client.cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script


@pytest.mark.slow
def test_flow_ensemble_rerun_after_a_killed_driver_trains_only_unfinished_members(slurm, tmp_path):
    name = f"ps-train-{os.getpid()}"
    cluster = slurm_cluster(tmp_path, name, max_jobs=2, memory="2GB", worker_extra_args=["--resources", "GPU=1"])
    pipe = write_pipeline(tmp_path / "train.toml", {"name": "sleep"}, 1, 1, cluster)  # only [cluster] is read
    out = tmp_path / "flows"
    summaries = [out / f"seed_{s}" / "summary.json" for s in (0, 1, 2)]
    cmd = [sys.executable, str(TRAIN), str(pipe), str(out)]
    proc = subprocess.Popen(cmd, env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    kill_driver_when(proc, lambda: any(p.exists() for p in summaries), 300, "a member finished", name)
    finished = {p: p.stat().st_mtime_ns for p in summaries if p.exists()}
    assert 1 <= len(finished) < 3
    checkpoints = {p.with_name("checkpoint.pt"): p.with_name("checkpoint.pt").read_bytes() for p in finished}
    jobs_ended(name)
    n_jobs = len(jobs(name))
    try:
        rerun = subprocess.run(cmd, env=driver_env(), capture_output=True, text=True, timeout=400)
    finally:
        cancel(name)
    assert rerun.returncode == 0, rerun.stderr
    assert "trained [0, 1, 2]" in rerun.stdout
    assert all(p.exists() for p in summaries)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished members were not retrained
    assert all(c.read_bytes() == b for c, b in checkpoints.items())
    assert len(jobs(name)) > n_jobs  # the rerun trained in new worker jobs
