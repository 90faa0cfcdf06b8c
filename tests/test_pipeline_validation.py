"""Pipeline files are validated before anything runs: one test per kind of mistake, each a one-line
UserError naming the section, the key and, for a typo, the closest valid key."""

import pytest

from popstore.cli import main
from popstore.errors import UserError
from popstore.pipeline import Pipeline

GOOD = """
[simulator]
name = "gaussian_fields"
[simulator.config]
npix = 8
[priors]
n_samples = 10
design = "latin_hypercube"
[priors.ranges]
slope = [1.5, 2.5]
[store]
path = "out.zarr"
samples_per_chunk = 5
compression = "lz4"
[split]
test = 0.2
valid = 0.2
[cluster]
kind = "local"
n_workers = 1
[inference]
output = "model"
inputs = ["density"]
[search]
n_trials = 2
[search.space]
lr = [1e-4, 1e-3]
"""


def load(tmp_path, text):
    p = tmp_path / "p.toml"
    p.write_text(text)
    return Pipeline.load(p)


def fails(tmp_path, text, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        load(tmp_path, text)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_good_file_loads_with_only_the_keys_it_sets(tmp_path):
    pipe = load(tmp_path, GOOD)
    assert pipe.section("store") == {"path": "out.zarr", "samples_per_chunk": 5, "compression": "lz4"}
    assert pipe.section("search")["space"] == {"lr": (1e-4, 1e-3)}


@pytest.mark.parametrize("old, new, pattern", [
    ("samples_per_chunk = 5", "samples_per_chunck = 5",
     r"\[store\]: unknown key 'samples_per_chunck' \(did you mean 'samples_per_chunk'\?\)"),
    ('compression = "lz4"', 'compresion = "lz4"', r"\[store\]: unknown key 'compresion' \(did you mean 'compression'\?\)"),
    ('design = "latin_hypercube"', 'desing = "latin_hypercube"', r"\[priors\]: unknown key 'desing' \(did you mean 'design'\?\)"),
    ("test = 0.2", "tset = 0.2", r"\[split\]: unknown key 'tset' \(did you mean 'test'\?\)"),
    ("n_trials = 2", "n_trails = 2", r"\[search\]: unknown key 'n_trails' \(did you mean 'n_trials'\?\)"),
    ("lr = [1e-4, 1e-3]", "lrr = [1e-4, 1e-3]", r"\[search.space\]: unknown key 'lrr' \(did you mean 'lr'\?\)"),
    ("npix = 8", "npx = 8", r"\[simulator.config\]: unknown key 'npx' \(did you mean 'npix'\?\)"),
    ("n_workers = 1", "n_worker = 1", r"\[cluster\]: unknown key 'n_worker' \(did you mean 'n_workers'\?\)"),
    ("[split]", "[splits]", r"unknown section \[splits\] \(did you mean \[split\]\?\)"),
])
def test_typos_name_the_key_and_the_closest_valid_one(tmp_path, old, new, pattern):
    fails(tmp_path, GOOD.replace(old, new), pattern)


@pytest.mark.parametrize("old, new, pattern", [
    ("n_samples = 10", 'n_samples = "many"', r"\[priors\] n_samples: .*integer.*'many'"),
    ("n_samples = 10", "n_samples = -3", r"\[priors\] n_samples: .*greater than 0"),
    ("samples_per_chunk = 5", "samples_per_chunk = 0", r"\[store\] samples_per_chunk: .*greater than 0"),
    ("slope = [1.5, 2.5]", "slope = [2.5, 1.5]", r"\[priors\] ranges: range of 'slope' must be finite with low < high"),
    ("slope = [1.5, 2.5]", "slope = [1.5, inf]", r"range of 'slope' must be finite"),
    ("test = 0.2\nvalid = 0.2", "test = 0.6\nvalid = 0.6", r"\[split\]: test \+ valid = 1.2 leaves nothing to train on"),
    ("test = 0.2", "test = 1.5", r"\[split\] test: .*less than 1"),
    ('compression = "lz4"', 'compression = "gzip"', r"\[store\] compression: unknown compression 'gzip'"),
    ('design = "latin_hypercube"', 'design = "sobol"', r"\[priors\] design: .*'uniform' or 'latin_hypercube'"),
    ('kind = "local"', 'kind = "kubernetes"', r"\[cluster\] kind: .*'local', 'slurm' or 'pbs'"),
    ("npix = 8", "npix = 2", r"\[simulator.config\] of 'gaussian_fields': npix must be >= 4"),
    ('inputs = ["density"]', 'inputs = "density"', r"\[inference\] inputs: "),
])
def test_wrong_types_and_ranges_are_refused(tmp_path, old, new, pattern):
    fails(tmp_path, GOOD.replace(old, new), pattern)



def test_a_negative_member_drop_threshold_is_refused_before_training(tmp_path):
    sbi = '[sbi]\noutput = "npe"\ndrop_members_worse_than = -1\n'
    fails(tmp_path, GOOD.split("[inference]")[0] + sbi, r"\[sbi\] drop_members_worse_than: .*greater than or equal to 0")


def test_an_unknown_npe_embedding_is_refused_naming_the_choices(tmp_path):
    sbi = '[sbi]\noutput = "npe"\nembedding = "powerspectrum"\n'
    fails(tmp_path, GOOD.split("[inference]")[0] + sbi, r"\[sbi\] embedding: .*'cnn', 'o3_err' or 'power_spectrum'")


def test_priors_name_the_simulators_parameters(tmp_path):
    fails(tmp_path, GOOD.replace("slope = [1.5, 2.5]", "slop = [1.5, 2.5]"),
          r"\[priors.ranges\]: unknown parameter 'slop' \(did you mean 'slope'\?\) of simulator 'gaussian_fields'")


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Pipeline.load(tmp_path / "nope.toml")
    fails(tmp_path, GOOD.replace("n_samples = 10", "n_samples = "), "not valid TOML")


def test_every_shipped_pipeline_file_is_valid():
    from pathlib import Path

    for p in sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml")):
        Pipeline.load(p)


def test_check_command_validates_without_running(tmp_path, capsys):
    p = tmp_path / "p.toml"
    p.write_text(GOOD)
    assert main(["check", str(p)]) == 0
    assert "valid; gaussian_fields with 10 samples" in capsys.readouterr().out
    assert not (tmp_path / "out.zarr").exists()
    p.write_text(GOOD.replace("test = 0.2", "tset = 0.2"))
    assert main(["check", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'tset' (did you mean 'test'?)" in err


def test_a_split_typo_stops_generate_before_any_work(tmp_path, capsys):
    p = tmp_path / "p.toml"
    p.write_text(GOOD.replace("test = 0.2", "tset = 0.2"))
    assert main(["generate", str(p), "-q"]) == 2
    assert not (tmp_path / "out.zarr").exists()
