"""The main job (README: `bash dev.sh demo`) end to end, small: store, split, figure, CNN and its test metrics."""

from popstore.cli import main
from popstore.store import open_store


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--n-samples", "256", "--epochs", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "coverage_1sigma" in out and "amplitude" in out and "slope" in out
    ds = open_store(tmp_path / "gaussian_fields.zarr")
    assert ds.done.values.all() and set(ds.split.values) == {"train", "valid", "test"}
    assert (tmp_path / "examples.png").stat().st_size > 20_000
