"""`popstore generate` on a real one-node SLURM through dask-jobqueue: worker jobs cancelled, drivers killed,
workers leaving before their walltime, the driver itself a batch job. Every finished store must be
bit-identical to the same pipeline generated on a LocalCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import sleep_simulator  # noqa: F401  (registers the "sleep" simulator in this process)
from popstore.pipeline import Pipeline
from popstore.store import open_store
from slurm_helpers import REPO, cancel, driver, driver_env, jobs, jobs_ended, n_done, slurm_cluster, wait_until, write_pipeline

N, CHUNK = 48, 4  # 12 tasks of 4 samples
SLEEP = {"name": "sleep", "config": {"npix": 8, "delay": 0.5}}  # 2 s per task


@pytest.fixture(scope="module")
def reference(tmp_path_factory, client):
    """The sleep pipeline generated on the test LocalCluster, without the sleep."""
    tmp = tmp_path_factory.mktemp("reference")
    pipe = write_pipeline(tmp / "ref.toml", {"name": "sleep", "config": {"npix": 8}}, N, CHUNK, {"kind": "local"})
    assert Pipeline.load(pipe).generate(client=client, progress=False).complete
    return open_store(pipe.with_suffix(".zarr")).load()


def assert_same_store(path, ref: xr.Dataset) -> None:
    ds = open_store(path).load()
    assert ds["done"].values.all() and ds.sizes["sample"] == ref.sizes["sample"]
    for name, var in ref.data_vars.items():
        if "sample" in var.dims:
            np.testing.assert_array_equal(ds[name].values, var.values, strict=True)


def finish(proc: subprocess.Popen, name: str, timeout: float = 300) -> tuple[str, str]:
    """Wait for a driver; on any failure kill it and cancel its worker jobs."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        cancel(name)


def start_sleep_pipeline(tmp_path, tag: str, fraction: float):
    """Start the driver of the sleep pipeline on SLURM; return once ``fraction`` of the samples are written."""
    name = f"ps-{tag}-{os.getpid()}"
    pipe = write_pipeline(tmp_path / f"{tag}.toml", SLEEP, N, CHUNK, slurm_cluster(tmp_path, name))
    store = pipe.with_suffix(".zarr")
    proc = driver(pipe)
    try:
        wait_until(lambda: n_done(store) >= N * fraction, 240, f"{fraction:.0%} of the samples written")
    except BaseException:
        finish(proc, name)
        raise
    return name, pipe, store, proc


@pytest.mark.slow
def test_generate_finishes_after_a_worker_job_is_cancelled(slurm, tmp_path, reference):
    name, _, store, proc = start_sleep_pipeline(tmp_path, "cancel", fraction=1 / 4)
    try:
        victim = next(j for j, s in jobs(name).items() if s == "RUNNING")
        subprocess.run(["scancel", victim], check=True)
    finally:
        out, err = finish(proc, name)
    assert proc.returncode == 0, err
    assert f"{N} samples, 0 already done, {N} written, 0 failed" in out
    # whether adapt starts a replacement job before the other jobs finish the last blocks depends on the machine's
    # speed (test_workers_leaving_before_walltime_are_replaced checks replacement); the cancelled job's blocks
    # were in any case rerun elsewhere, and every sample is written once, bit-identical
    assert jobs(name)[victim] == "CANCELLED"
    assert_same_store(store, reference)


@pytest.mark.slow
def test_killed_driver_resumes_on_rerun(slurm, tmp_path, reference):
    name, pipe, store, proc = start_sleep_pipeline(tmp_path, "resume", fraction=1 / 3)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        finish(proc, name)  # its orphaned worker jobs would only leave after their death timeout
    jobs_ended(name)
    k = n_done(store)
    assert N // 3 <= k < N
    out, err = finish(driver(pipe), name)
    assert f"{N} samples, {k} already done, {N - k} written, 0 failed" in out, err
    assert_same_store(store, reference)


@pytest.mark.slow
def test_workers_leaving_before_walltime_are_replaced(slurm, tmp_path, reference):
    name = f"ps-lifetime-{os.getpid()}"
    cluster = slurm_cluster(tmp_path, name, worker_extra_args=["--lifetime", "20s", "--lifetime-stagger", "2s"])
    slow = {"name": "sleep", "config": {"npix": 8, "delay": 1.5}}  # 6 s tasks, 24 s of work for each of 3 workers
    pipe = write_pipeline(tmp_path / "lifetime.toml", slow, N, CHUNK, cluster)
    proc = driver(pipe)
    out, err = finish(proc, name)
    assert proc.returncode == 0, err
    assert f"{N} samples, 0 already done, {N} written, 0 failed" in out
    states = jobs(name)
    # jobs whose worker left at its lifetime end COMPLETED; the rest were cancelled when the driver closed
    assert "COMPLETED" in states.values() and len(states) > 3, states
    assert set(states.values()) <= {"COMPLETED", "CANCELLED"}, states
    assert_same_store(pipe.with_suffix(".zarr"), reference)


@pytest.mark.slow
def test_driver_submitted_with_sbatch(slurm, tmp_path, client):
    """`sbatch pipelines/slurm_driver.sh PIPELINE`: the driver job submits the worker jobs itself."""
    name = f"ps-sbatch-{os.getpid()}"
    sim = {"name": "gaussian_fields", "config": {"npix": 16}}
    pipe = write_pipeline(tmp_path / "fields.toml", sim, 24, 4, slurm_cluster(tmp_path, name))
    ref = write_pipeline(tmp_path / "fields_ref.toml", sim, 24, 4, {"kind": "local"})
    env = {**driver_env(), "POPSTORE_VENV": sys.prefix}
    job = subprocess.run(["sbatch", "--parsable", "-J", f"{name}-driver", "-o", str(tmp_path / "driver.out"),
                          str(REPO / "pipelines" / "slurm_driver.sh"), str(pipe)],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    try:
        state = wait_until(lambda: {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"} & {jobs(f"{name}-driver").get(job)},
                           300, "the driver job ended")
    finally:
        cancel(f"{name}-driver")
        cancel(name)
    log = (tmp_path / "driver.out").read_text()
    assert state == {"COMPLETED"}, log
    assert "24 samples, 0 already done, 24 written, 0 failed" in log
    assert len(jobs(name)) >= 1  # the worker jobs it submitted
    assert Pipeline.load(ref).generate(client=client, progress=False).complete
    assert_same_store(pipe.with_suffix(".zarr"), open_store(ref.with_suffix(".zarr")).load())
