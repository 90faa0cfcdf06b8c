"""The core works without the optional extras: with torch, nflows, optuna, galpy, pyymw16 and h5netcdf
made unimportable, a pipeline file generates and splits a gaussian_fields store and the CLI answers.
(.ci/core_install.sh does the same in a fresh virtual environment holding only the core dependencies.)"""

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    EXTRAS = {"torch", "nflows", "optuna", "galpy", "pyymw16", "h5netcdf", "dask_jobqueue"}

    class NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in EXTRAS:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: core-only test)", name=name)
            return None

    sys.meta_path.insert(0, NoExtras())
""")

PIPELINE = """
[simulator]
name = "gaussian_fields"
[simulator.config]
npix = 8
[priors]
n_samples = 16
design = "latin_hypercube"
[store]
path = "core.zarr"
samples_per_chunk = 4
[split]
test = 0.25
valid = 0.25
[cluster]
n_workers = 2
processes = false
"""


def test_generate_split_and_cli_without_extras(tmp_path):
    (tmp_path / "p.toml").write_text(PIPELINE)
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, ".")
        import sitecustomize  # noqa: F401  (the blocker)
        try:
            import torch  # noqa: F401
            raise SystemExit("torch is importable: the blocker does not work")
        except ModuleNotFoundError:
            pass
        from popstore.cli import main
        assert main(["generate", "p.toml", "-q"]) == 0
        assert main(["info", "core.zarr"]) == 0
        import popstore
        ds = popstore.open_store("core.zarr")
        assert ds.done.values.all() and (ds.split.values == "train").sum() == 9
        assert "torch" not in sys.modules and "nflows" not in sys.modules
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test 4, train 9, valid 3" in run.stdout
