"""Every shipped pipeline file parses, names a registered simulator with a valid config, and draws its table."""

from pathlib import Path

import pytest

from popstore.pipeline import Pipeline

PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml"))


def test_pipelines_are_shipped():
    assert len(PIPELINES) >= 10


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_file_is_valid(path):
    pipe = Pipeline.load(path)
    sim = pipe.simulator()
    table = pipe.parameter_table(sim)
    assert list(table.columns) == list(sim.parameter_names)
    assert len(table) == pipe.section("priors")["n_samples"]
    for p in sim.parameters:
        if p.name not in pipe.section("priors").get("fixed", {}):
            assert table[p.name].between(p.low, p.high).all(), p.name
    assert pipe.store_path.name.endswith(".zarr")
