"""The popstore command: generate a pipeline file, info, split, export and import."""

import subprocess
import sys

import numpy as np
import pytest

from popstore.cli import main
from popstore.errors import UserError
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



def test_info_into_a_closed_pipe_stops_quietly(pipeline_file):
    """`popstore info STORE | head -c 1`: the reader leaves early; no traceback, SIGPIPE's exit status."""
    store = pipeline_file.parent / "out" / "fields.zarr"
    if not store.exists():
        assert main(["generate", str(pipeline_file), "-q"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "popstore.cli", "info", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    proc.stdout.close()  # the reader is gone before popstore writes a byte
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_split_export_import(pipeline_file, tmp_path, capsys):
    store = pipeline_file.parent / "out" / "fields.zarr"
    assert main(["split", str(store), "--test", "0.1", "--valid", "0.1", "--seed", "4"]) == 0
    assert "train: 32" in capsys.readouterr().out
    assert main(["export", str(store), "-o", str(tmp_path / "legacy"), "--format", "legacy", "-q"]) == 0
    assert main(["import", str(tmp_path / "legacy"), "-o", str(tmp_path / "back.zarr")]) == 0
    np.testing.assert_array_equal(open_store(tmp_path / "back.zarr").density.values, open_store(store).density.values)


def test_pipeline_needs_its_sections(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulator]\nname = 'gaussian_fields'\n")
    with pytest.raises(UserError, match=r"missing \[priors\]"):
        Pipeline.load(bad)


def test_unknown_simulator_lists_available(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(PIPELINE.replace('"gaussian_fields"', '"nope"'))
    with pytest.raises(UserError, match="unknown simulator 'nope'; available: .*gaussian_fields.*pulsar_surveys"):
        Pipeline.load(p)


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
    with pytest.raises(UserError, match=r"\[priors.fixed\]: unknown parameter 'smoothness' \(did you mean 'smoothing'\?\)"):
        Pipeline.load(p)


def _parsers(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_has_help_text_and_shows_its_default():
    from popstore.cli import build_parser

    missing = [f"{p.prog} {a.dest}" for p in _parsers(build_parser()) for a in p._actions
               if not a.help and a.dest != "help" and a.option_strings + [a.dest] != ["command"]
               and not a.__class__.__name__.startswith("_SubParsers")]
    assert missing == []
    p = next(p for p in _parsers(build_parser()) if p.prog.endswith(" split"))
    assert "(default: 0.1)" in p.format_help()


def test_version_and_one_line_user_errors(tmp_path):
    run = subprocess.run([sys.executable, "-m", "popstore.cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("popstore ")
    (tmp_path / "not_a_store").mkdir()
    for args in (["split", str(tmp_path / "not_a_store")], ["info", str(tmp_path / "missing.zarr")],
                 ["check", str(tmp_path / "missing.toml")]):
        run = subprocess.run([sys.executable, "-m", "popstore.cli", *args], capture_output=True, text=True)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"popstore {args[0]}: error: "), run.stderr
    run = subprocess.run([sys.executable, "-m", "popstore.cli", "--debug", "split", str(tmp_path / "not_a_store")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" in run.stderr


def test_outputs_are_not_replaced_without_overwrite(pipeline_file, tmp_path, capsys):
    store = pipeline_file.parent / "out" / "fields.zarr"
    out = tmp_path / "s.h5"
    out.write_text("precious")
    assert main(["export", str(store), "-o", str(out)]) == 2
    assert "exists; choose another output path or pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main(["export", str(store), "-o", str(out), "--overwrite"]) == 0
    assert out.stat().st_size > 1000
