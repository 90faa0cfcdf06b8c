"""A real one-node SLURM for the tests in this folder (see start_slurm.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("start_slurm.sh")


def _slurm_answers() -> bool:
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """``SLURM_CONF`` of a running one-node SLURM: the one already configured, else one started here (as root)."""
    pytest.importorskip("dask_jobqueue")
    pytest.importorskip("cryptography")
    if os.environ.get("SLURM_CONF") and shutil.which("sinfo") and _slurm_answers():
        yield os.environ["SLURM_CONF"]
        return
    missing = [e for e in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(e) is None]
    if missing:
        pytest.skip(f"no SLURM here: {', '.join(missing)} not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("no SLURM here: starting slurmd and munged needs root")
    d = tmp_path_factory.mktemp("slurm")
    run = subprocess.run(["bash", str(SCRIPT), "start", str(d)], capture_output=True, text=True, timeout=120)
    if run.returncode:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], capture_output=True, timeout=60)
        pytest.fail(f"start_slurm.sh failed: {run.stderr.strip()}")
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    try:
        yield os.environ["SLURM_CONF"]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], capture_output=True, timeout=120)
        os.environ.pop("SLURM_CONF", None)
