"""The popstore command: generate a pipeline file, info, split, export and import."""

import subprocess
import sys

import numpy as np
import pytest

from popstore.cli import main
from popstore.pipeline import Pipeline
from popstore.store import open_store

PIPELINE = """
[simulator]
name = "gaussian_fields"
[simulator.config]
npix = 16
[priors]
n_samples = 40
design = "latin_hypercube"
seed = 3
[priors.ranges]
slope = [1.5, 2.5]
[store]
path = "out/fields.zarr"
samples_per_chunk = 10
[split]
test = 0.25
valid = 0.0
seed = 2
[cluster]
kind = "local"
n_workers = 1
"""


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "p.toml"
    path.write_text(PIPELINE)
    return path


def test_generate_pipeline_then_info(pipeline_file, capsys):
    assert main(["generate", str(pipeline_file), "-q"]) == 0
    store = pipeline_file.parent / "out" / "fields.zarr"
    ds = open_store(store)
    assert ds.sizes["sample"] == 40 and ds.done.values.all()
    assert ds.slope.values.min() >= 1.5 and ds.slope.values.max() <= 2.5
    assert (ds.split.values == "test").sum() == 10
    capsys.readouterr()
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "gaussian_fields" in out and "test 10, train 30" in out and "density" in out
    assert "diagnostics" not in out  # gaussian_fields keeps none


def test_split_export_import(pipeline_file, tmp_path, capsys):
    store = pipeline_file.parent / "out" / "fields.zarr"
    assert main(["split", str(store), "--test", "0.1", "--valid", "0.1", "--seed", "4"]) == 0
    assert "train: 32" in capsys.readouterr().out
    assert main(["export", str(store), str(tmp_path / "legacy"), "--format", "legacy"]) == 0
    assert main(["import", str(tmp_path / "legacy"), str(tmp_path / "back.zarr")]) == 0
    np.testing.assert_array_equal(open_store(tmp_path / "back.zarr").density.values, open_store(store).density.values)


def test_pipeline_needs_its_sections(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulator]\nname = 'gaussian_fields'\n")
    with pytest.raises(ValueError, match=r"missing \[priors\]"):
        Pipeline.load(bad)


def test_unknown_simulator_lists_available(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(PIPELINE.replace('"gaussian_fields"', '"nope"'))
    with pytest.raises(KeyError, match="gaussian_fields"):
        Pipeline.load(p).simulator()


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "popstore.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("generate", "split", "info", "export", "import", "demo"):
        assert cmd in out.stdout


def test_fixed_priors_are_exact(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(PIPELINE.replace("[store]", "[priors.fixed]\nsmoothing = 1.25\n[store]"))
    pipe = Pipeline.load(p)
    table = pipe.parameter_table(pipe.simulator())
    assert (table["smoothing"] == 1.25).all() and table["slope"].between(1.5, 2.5).all()
    p.write_text(PIPELINE.replace("[store]", "[priors.fixed]\nsmoothness = 1.25\n[store]"))
    with pytest.raises(ValueError, match="unknown parameters"):
        Pipeline.load(p).parameter_table(Pipeline.load(p).simulator())
