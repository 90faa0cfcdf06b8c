"""Cluster settings: a [cluster] table becomes a LocalCluster or a dask-jobqueue SLURM/PBS cluster."""

from pathlib import Path

import pytest

from popstore.cluster import cluster_client
from popstore.pipeline import Pipeline

dask_jobqueue = pytest.importorskip("dask_jobqueue")


def test_local_cluster_from_table():
    with cluster_client({"kind": "local", "n_workers": 1}) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_slurm_table_writes_the_job_script(monkeypatch):
    """No SLURM here: adapt(minimum_jobs=0) submits nothing, so the job script can be checked."""
    monkeypatch.setenv("PROJECT_ACCOUNT", "astro42")
    cfg = Pipeline.load(Path(__file__).parents[1] / "pipelines" / "pulsar_full_slurm.toml").section("cluster")
    cfg["account"] = "$PROJECT_ACCOUNT"
    with cluster_client(cfg) as client:
        script = client.cluster.job_script()
    assert "#SBATCH -A astro42" in script and "#SBATCH -p compute" in script
    assert "#SBATCH -t 02:00:00" in script and "--lifetime 115m" in script
    assert "source $HOME/popstore/.venv/bin/activate" in script


def test_unknown_cluster_kind():
    with pytest.raises(ValueError, match="unknown cluster kind"):
        with cluster_client({"kind": "condor"}):
            pass
