"""Distributed generation: resume after a killed worker or driver, failing samples, refusal to mix runs."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import popstore
from popstore.priors import sample_table
from popstore.store import StoreMismatchError, open_store
from toy_simulators import Ramp

N, CHUNK, SEED = 24, 3, 7


@pytest.fixture(scope="module")
def table():
    return sample_table(Ramp().parameters, N, seed=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, table, client):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    popstore.generate(Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    return open_store(path).load()


def assert_same_content(path, reference):
    ds = open_store(path).load()
    assert ds["done"].values.all()
    for name in reference.variables:
        np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)


def test_worker_killed_mid_task_is_retried(tmp_path, table, reference, client):
    marker = tmp_path / "killed"
    sim = Ramp(kill_marker=str(marker), kill_a=float(table["a"].iloc[10]))
    report = popstore.generate(sim, table, tmp_path / "s.zarr", client, seed=SEED, samples_per_chunk=CHUNK,
                               progress=False)
    assert marker.exists(), "the worker was never killed: the test did not test anything"
    assert report.complete and report.n_written == N
    assert_same_content(tmp_path / "s.zarr", reference)


def test_driver_killed_then_rerun_resumes(tmp_path, table, reference, client):
    path = tmp_path / "s.zarr"
    table_file = tmp_path / "table.csv"
    table.to_csv(table_file, index=False)
    script = textwrap.dedent(f"""
        import pandas as pd, popstore
        from toy_simulators import Ramp
        if __name__ == "__main__":
            popstore.generate(Ramp(delay=0.25), pd.read_csv({str(table_file)!r}), {str(path)!r},
                              seed={SEED}, samples_per_chunk={CHUNK}, progress=False)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        n_done = 0
        while time.time() < deadline and not 2 * CHUNK <= n_done:
            time.sleep(0.3)
            if (path / "done" / "zarr.json").exists():
                n_done = int(xr.open_zarr(path, consolidated=False)["done"].values.sum())
        assert 2 * CHUNK <= n_done < N, f"could not interrupt the run part-way (done={n_done})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = open_store(path)["done"].values
    assert not done_before.all()
    report = popstore.generate(Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    assert report.n_skipped == done_before.sum()
    assert report.n_written == N - done_before.sum()  # every sample done exactly once overall
    assert_same_content(path, reference)
    rerun = popstore.generate(Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    assert rerun.n_written == 0 and rerun.n_skipped == N


def test_failing_sample_is_reported_and_rest_written(tmp_path, table, reference, client):
    threshold = float(np.sort(table["a"].values)[-3])  # the two largest values of a fail
    path = tmp_path / "s.zarr"
    report = popstore.generate(Ramp(fail_above=threshold), table, path, client, seed=SEED,
                               samples_per_chunk=CHUNK, progress=False)
    bad = np.flatnonzero(table["a"].values > threshold)
    assert len(bad) == 2 and not report.complete
    assert report.failed["sample"].tolist() == bad.tolist()
    assert report.failed["seed"].tolist() == reference["seed"].values[bad].tolist()
    assert report.failed["error"].str.contains("unphysical").all()
    ds = open_store(path).load()
    good = np.setdiff1d(np.arange(N), bad)
    np.testing.assert_array_equal(ds["done"].values, np.isin(np.arange(N), good))
    np.testing.assert_array_equal(ds["image"].values[good], reference["image"].values[good])
    assert np.isnan(ds["image"].values[bad]).all()
    # a fixed simulator finishes only the failed samples
    report2 = popstore.generate(Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    assert report2.complete and report2.n_written == 2
    assert_same_content(path, reference)


def test_resume_refuses_a_different_run(tmp_path, table, client):
    path = tmp_path / "s.zarr"
    popstore.generate(Ramp(), table.iloc[:6], path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    with pytest.raises(StoreMismatchError):
        popstore.generate(Ramp(), table.iloc[:6], path, client, seed=SEED + 1, samples_per_chunk=CHUNK,
                          progress=False)
    with pytest.raises(StoreMismatchError):
        popstore.generate(Ramp(n=4), table.iloc[:6], path, client, seed=SEED, samples_per_chunk=CHUNK,
                          progress=False)


def test_parameter_table_must_have_every_parameter(tmp_path, table, client):
    with pytest.raises(ValueError, match=r"lacks columns \['b'\]"):
        popstore.generate(Ramp(), table[["a"]], tmp_path / "s.zarr", client, progress=False)


def test_batched_simulator_equals_per_sample_and_isolates_failures(tmp_path, table, reference, client):
    from toy_simulators import BatchRamp

    path = tmp_path / "b.zarr"
    report = popstore.generate(BatchRamp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, progress=False)
    assert report.complete
    assert_same_content(path, reference)
    threshold = float(np.sort(table["a"].values)[-2])
    report = popstore.generate(BatchRamp(fail_above=threshold), table, tmp_path / "f.zarr", client, seed=SEED,
                               samples_per_chunk=CHUNK, progress=False)
    assert report.failed["sample"].tolist() == [int(np.argmax(table["a"].values))]
    assert open_store(tmp_path / "f.zarr")["done"].values.sum() == N - 1
