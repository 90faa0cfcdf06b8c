"""Helpers of the SLURM tests: pipeline files, driver processes, job states."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).parents[2]
# `popstore` with the test simulator "sleep" registered (tests/sleep_simulator.py), as a driver process
DRIVER = "import sleep_simulator, popstore.cli as c; raise SystemExit(c.main())"


def jobs(name: str) -> dict[str, str]:
    """Job id -> state of every job called ``name`` (finished ones included, for MinJobAge)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i %T"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split() for line in out.splitlines())


def cancel(name: str) -> None:
    subprocess.run(["scancel", "-n", name], check=True)


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def kill_driver_when(proc: subprocess.Popen, condition, timeout: float, what: str, name: str) -> None:
    """SIGKILL the driver ``proc`` (its whole process group) once ``condition()`` holds, then cancel the
    worker jobs called ``name`` that it left behind."""
    try:
        wait_until(condition, timeout, what)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        cancel(name)


def jobs_ended(name: str) -> None:
    """Wait until no job called ``name`` is running, pending or completing."""
    wait_until(lambda: not any(s in ("RUNNING", "PENDING", "COMPLETING") for s in jobs(name).values()), 60,
               f"the worker jobs {name} ended")


def _toml(value) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them are written alike


def write_pipeline(path: Path, simulator: dict, n_samples: int, samples_per_chunk: int, cluster: dict) -> Path:
    """A pipeline file: ``simulator = {"name": ..., "config": {...}}``, Latin-hypercube priors, one store."""
    lines = ["[simulator]", f"name = {_toml(simulator['name'])}", "[simulator.config]"]
    lines += [f"{k} = {_toml(v)}" for k, v in simulator.get("config", {}).items()]
    lines += ["[priors]", f"n_samples = {n_samples}", 'design = "latin_hypercube"', "seed = 3",
              "[store]", f"path = {_toml(str(path.with_suffix('.zarr')))}", "seed = 7",
              f"samples_per_chunk = {samples_per_chunk}", "[cluster]"]
    lines += [f"{k} = {_toml(v)}" for k, v in cluster.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def slurm_cluster(tmp: Path, name: str, max_jobs: int = 3, **extra) -> dict:
    """A ``[cluster]`` table for the one-node SLURM: 1-core single-process worker jobs called ``name``."""
    return {"kind": "slurm", "max_jobs": max_jobs, "cores": 1, "processes": 1, "memory": "1GB",
            "walltime": "00:15:00", "queue": "popstore", "job_name": name, "log_directory": str(tmp / "logs"),
            "shared_temp_directory": str(tmp / "tls"), **extra}


def driver_env() -> dict[str, str]:
    """The environment of a driver process: this checkout first on PYTHONPATH, then tests/ (sleep_simulator)."""
    paths = [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def driver(pipeline: Path, *args: str) -> subprocess.Popen:
    """``popstore generate PIPELINE`` (with the "sleep" simulator) in a new process group."""
    return subprocess.Popen([sys.executable, "-c", DRIVER, "generate", str(pipeline), "-q", *args],
                            env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def n_done(store: Path) -> int:
    """Samples marked done so far (0 before the store exists)."""
    import zarr

    try:
        return int(np.asarray(zarr.open_array(store / "done", mode="r")[:]).sum())
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.ArrayNotFoundError):
        return 0
