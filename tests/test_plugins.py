"""Simulators from outside popstore: named as 'module:Class' in a pipeline file, or found through an
entry point of the 'popstore.simulators' group (a dist-info folder on the path, nothing installed)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from popstore.cli import main
from popstore.errors import UserError
from popstore.simulators import available, get_simulator
from popstore.store import open_store

TESTS = Path(__file__).parent

PIPELINE = """
[simulator]
name = "{name}"
[simulator.config]
n = 4
[priors]
n_samples = 12
seed = 1
[store]
path = "plane.zarr"
samples_per_chunk = 4
[split]
test = 0.25
valid = 0.25
[cluster]
n_workers = 1
"""


def test_module_class_name_runs_popstore_generate(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(PIPELINE.format(name="plugin_simulators:Plane"))
    assert main(["generate", str(p), "-q"]) == 0
    ds = open_store(tmp_path / "plane.zarr")
    assert ds.attrs["simulator"] == "plugin_simulators:Plane"
    assert ds.done.values.all() and (ds.split.values == "test").sum() == 3
    x = (np.arange(4) + 0.5) / 4  # the noise has mean 0: the map's mean over y and samples is tilt * x + offset
    resid = ds.plane.values - (ds.tilt.values[:, None, None] * x + ds.offset.values[:, None, None])
    assert abs(resid.mean()) < 4 / np.sqrt(resid.size) and 0.7 < resid.std() < 1.3


def test_entry_point_plugin_is_listed_and_generates(tmp_path):
    dist = tmp_path / "my_sims-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-sims\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[popstore.simulators]\nplane = plugin_simulators:Plane\n"
                                           "broken = no_such_module:Nothing\n")
    p = tmp_path / "p.toml"
    p.write_text(PIPELINE.format(name="plane"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    code = ("from popstore.simulators import available; print(available());"
            "from popstore.cli import main; raise SystemExit(main(['generate', 'p.toml', '-q']))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "'plane'" in run.stdout and "'broken'" in run.stdout
    assert open_store(tmp_path / "plane.zarr").done.values.all()
    # the broken plugin is a clear error only when it is asked for
    p.write_text(PIPELINE.format(name="broken"))
    run = subprocess.run([sys.executable, "-m", "popstore.cli", "check", "p.toml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "failed to load" in run.stderr and "Traceback" not in run.stderr


def test_builtin_and_domain_simulators_are_listed_by_name():
    names = available()
    for n in ("gaussian_fields", "pulsar_full", "pulsar_surveys", "hernquist", "solar_neighbourhood", "kilonova_du17"):
        assert n in names
    assert get_simulator("gaussian_fields", npix=8).name == "gaussian_fields"


def test_module_class_must_be_a_simulator():
    with pytest.raises(UserError, match="not a popstore.Simulator subclass"):
        get_simulator("popstore.store:open_store")
    with pytest.raises(UserError, match="cannot import"):
        get_simulator("no_such_module:Thing")
