"""The file contract between benchmarks/research_code_detections.py and bench_pulsar_realism.py --research-*.

The research code's outputs are imitated in their formats (two-line CSV header of ``final_pop_dyn.csv``; gzip
pickles with (parameter, unit) column MultiIndex), so no research code is needed here.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def driver():
    return _module("research_code_detections")


@pytest.fixture(scope="module")
def realism():
    return _module("bench_pulsar_realism")


def _write_part(path: Path, rows: np.ndarray, seed: int) -> None:
    path.mkdir(parents=True)
    cols = ["age", "r", "phi", "z", "v_r", "v_phi", "v_z"]
    units = ["[yr]", "[kpc]", "[rad]", "[kpc]", "[km/s]", "[km/s]", "[km/s]"]
    with open(path / "final_pop_dyn.csv", "w") as fh:
        fh.write("," + ",".join(cols) + "\n," + ",".join(units) + "\n")
        for i, row in enumerate(rows):
            fh.write(f"{i}," + ",".join(repr(float(v)) for v in row) + "\n")
    (path / "configuration.json").write_text(json.dumps({"NS_number": len(rows), "seed_dyn": seed, "h_c": 0.18}))


def test_merged_database_keeps_every_row_with_a_running_index(driver, realism, tmp_path):
    rng = np.random.default_rng(0)
    parts = [np.column_stack([rng.uniform(1, 3e7, n), rng.uniform(1, 15, n), rng.uniform(0, 6, n),
                              rng.normal(0, 0.3, n), *rng.normal(0, 200, (3, n))]) for n in (5, 7)]
    for i, rows in enumerate(parts):
        _write_part(tmp_path / f"dyn_part{i}", rows, seed=i)
    db = driver.merge_database(tmp_path, 2)
    merged = pd.read_csv(db / "final_pop_dyn.csv", header=[0, 1], index_col=0)
    assert list(merged.index) == list(range(12))
    np.testing.assert_array_equal(merged.to_numpy(), np.vstack(parts))
    assert json.loads((db / "configuration.json").read_text())["NS_number"] == 12
    # the database is read back with the model-frame geometry: R = r and z unchanged, d from the Sun at y = 8.3 kpc
    dyn = realism.research_dynamics(db, realism.PulsarConfig())
    np.testing.assert_allclose(dyn["R"], np.vstack(parts)[:, 1])
    x, y = parts[0][0, 1] * np.cos(parts[0][0, 2]), parts[0][0, 1] * np.sin(parts[0][0, 2])
    d_expected = np.sqrt(x**2 + (y - 8.3) ** 2 + (parts[0][0, 3] - 0.02) ** 2)
    assert dyn["d"][0] == pytest.approx(d_expected, rel=1e-4)  # astropy puts the Sun at y = (8.3^2 - 0.02^2)^0.5


def test_detections_csv_round_trips_into_the_realism_quantities(driver, realism, tmp_path):
    rng = np.random.default_rng(1)
    n = {"PMPS": 4, "SMPS": 3, "HTRU_low_mid": 5, "HTRU_high": 2}
    stars = {}
    for seed in (1, 2):
        run = tmp_path / f"magrot_det_seed{seed}"
        run.mkdir()
        for key, k in n.items():
            cols = {c: rng.uniform(0.1, 2.0, k) for c in ("P", "dist", "S_radio_obs_mean_1400", "age", "B")}
            cols.update(P_dot=10 ** rng.uniform(-16, -12, k), l=rng.uniform(-100, 50, k), b=rng.uniform(-5, 5, k),
                        DM=rng.uniform(10, 900, k))
            df = pd.DataFrame(cols)
            df.columns = pd.MultiIndex.from_arrays([list(df.columns), ["[u]"] * len(df.columns)])
            df.to_pickle(run / f"survey_{key}_results.pkl.gz", compression="gzip")
            stars[(seed, key)] = cols
    table = driver.collect(tmp_path, [1, 2])
    assert set(table["survey"]) == {"PMPS", "SMPS", "HTRU"}  # HTRU high is not a map survey
    csv = tmp_path / "detections.csv"
    table.to_csv(csv, index=False)
    runs = realism.research_runs(csv)
    assert len(runs) == 2
    cols = stars[(2, "HTRU_low_mid")]
    q = runs[1]["HTRU"]
    np.testing.assert_allclose(q["log P"], np.log10(cols["P"]))
    np.testing.assert_allclose(q["distance"], cols["dist"])
    np.testing.assert_allclose(q["|z|"], cols["dist"] * np.sin(np.radians(np.abs(cols["b"]))))
    np.testing.assert_allclose(q["log S1400"], np.log10(cols["S_radio_obs_mean_1400"]))
    np.testing.assert_allclose(runs[0]["PMPS"]["DM"], stars[(1, "PMPS")]["DM"])
