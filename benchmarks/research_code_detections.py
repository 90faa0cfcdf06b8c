"""Detected pulsars of the research code (ML-Poppyns-Open) at the Graber et al. 2024 setting, as a per-star CSV.

Needs a local checkout of https://github.com/ice-csic-astroexotic/ML-Poppyns-Open (``--mlpoppyns PATH``) and a
Python environment with its requirements (numba, scipy, astropy, pandas, orjson, pygedm, healpy; the checkout's
Haslam 408 MHz map ``Tsky_map_haslam81_refined.fits``). Nothing of the research code is copied here: this driver
runs the checkout's own scripts, with the checkout as working directory and on ``PYTHONPATH``, in that
environment (``--python``, default: this interpreter):

1. ``mlpoppyns/simulator/simulate_population_dyn.py``: the dynamical database (ages, birth positions on the
   spiral arms, Maxwellian kicks, per-star ``odeint`` orbits in the Marchetti et al. 2019 potential), built in
   ``--dyn-parts`` processes of ``--n-stars / --dyn-parts`` stars each (seeds ``--dyn-seed + i``) whose
   ``final_pop_dyn.csv`` files are concatenated into one database, as the papers build one database of 1e7 stars
   (``--dyn-data`` reuses an existing database instead);
2. ``mlpoppyns/simulator/simulate_population_magrot_det.py`` once per ``--seeds`` value (``--jobs`` at a time):
   magneto-rotational evolution, radio emission and detection in PMPS, SMPS, HTRU low+mid and HTRU high, drawing
   batches from the database until every survey reaches its target (the Graber et al. 2024 targets times
   ``--target-scale``), with the override of :data:`GRABER2024_OVERRIDE`: the posterior medians of Graber et al.
   (2024, ApJ 968, 16; ``data/paper_results/graber_etal_2024/best_inferred_atnf/override.json`` of the research
   repository), its luminosity law L = 10^N(35.5, 0.8) (P^-3 Pdot)^0.5 (``lum_radio_ppdot``), spectral index -1.6
   and neutron-star radius 1.1e6 cm (its ``configuration.json``); everything else is the checkout's default
   configuration (survey files, sky temperature, kicks, birth model, potential);
3. the detected stars of PMPS, SMPS and HTRU low+mid (``survey_<S>_results.pkl.gz``) are written to ``--csv``
   with the columns ``benchmarks/bench_pulsar_realism.py --research-catalogue`` reads: survey (popstore's map
   survey names), seed, P (s), Pdot, l, b (deg), d (kpc), dm (pc cm^-3), S1400 (Jy, period-averaged at 1.429 GHz),
   age (yr), B (G).

    python benchmarks/research_code_detections.py --mlpoppyns ~/ML-Poppyns-Open --python ~/mlp-venv/bin/python \\
        --out out/research_code --n-stars 180000 --dyn-parts 3 --target-scale 0.12 --seeds 1 2 3 --jobs 3 \\
        --csv out/research_code/detections.csv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

#: Graber et al. (2024) posterior medians and model choices, as keys of the research code's configuration.
GRABER2024_OVERRIDE: dict[str, object] = {
    "B_initial_log10_mean": 13.10, "B_initial_log10_sigma": 0.45, "P_initial_log10_mean": -1.00,
    "P_initial_log10_sigma": 0.38, "a_late": -1.80, "radio_luminosity_model": "lum_radio_ppdot",
    "L_radio_log10_mean": 35.5, "L_radio_log10_sigma": 0.8, "epsilon_L": 0.5, "mean_spectral_index": -1.6,
    "NS_radius": 1.1e6,
}
#: Detection targets of the Graber et al. (2024) run (its configuration.json), by the research code's survey keys.
GRABER2024_TARGETS: dict[str, int] = {"PMPS": 1009, "SMPS": 218, "HTRU_low_mid": 1023, "HTRU_high": 20}
#: research-code survey key -> popstore map survey name (popstore.pulsars.survey_maps.MAP_SURVEYS)
SURVEYS: dict[str, str] = {"PMPS": "PMPS", "SMPS": "SMPS", "HTRU_low_mid": "HTRU"}
#: CSV column -> research-code output column
COLUMNS: dict[str, str] = {"P": "P", "Pdot": "P_dot", "l": "l", "b": "b", "d": "dist", "dm": "DM",
                           "S1400": "S_radio_obs_mean_1400", "age": "age", "B": "B"}


def _run(python: str, checkout: Path, script: str, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with open(log, "w") as fh:
        return subprocess.Popen([python, f"mlpoppyns/simulator/{script}.py", *args], cwd=checkout, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)


def _wait(procs: list[tuple[subprocess.Popen, Path]]) -> None:
    for p, log in procs:
        if p.wait() != 0:
            sys.exit(f"research code failed (exit {p.returncode}); see {log}")


def build_database(python: str, checkout: Path, out: Path, n_stars: int, parts: int, seed: int) -> Path:
    """Dynamical database of ``n_stars`` stars from ``parts`` runs of the checkout's simulate_population_dyn."""
    procs = []
    for i in range(parts):
        part = out / f"dyn_part{i}"
        part.mkdir(parents=True, exist_ok=True)
        (part / "override.json").write_text(json.dumps({"NS_number": n_stars // parts, "seed_dyn": seed + i}))
        procs.append((_run(python, checkout, "simulate_population_dyn",
                           ["--save_dir", str(part.resolve()), "--parameter_override",
                            str((part / "override.json").resolve())], part / "log.txt"), part / "log.txt"))
    _wait(procs)
    return merge_database(out, parts)


def merge_database(out: Path, parts: int) -> Path:
    """Concatenate ``out/dyn_part<i>/final_pop_dyn.csv`` (two header lines, then index,values rows) into
    ``out/dyn_database`` with a running index and the total ``NS_number`` in its configuration.json."""
    db = out / "dyn_database"
    db.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(db / "final_pop_dyn.csv", "w") as dst:
        for i in range(parts):
            with open(out / f"dyn_part{i}" / "final_pop_dyn.csv") as src:
                header = [src.readline(), src.readline()]
                if i == 0:
                    dst.writelines(header)
                for line in src:
                    dst.write(f"{n},{line.split(',', 1)[1]}")
                    n += 1
    config = json.loads((out / "dyn_part0" / "configuration.json").read_text())
    config["NS_number"] = n
    (db / "configuration.json").write_text(json.dumps(config, indent=4, sort_keys=True))
    return db


def detect(python: str, checkout: Path, out: Path, db: Path, seeds: list[int], target_scale: float,
           jobs: int) -> None:
    """One simulate_population_magrot_det run per seed, ``jobs`` at a time."""
    sys.path.insert(0, str(checkout))
    cwd = os.getcwd()
    os.chdir(checkout)
    try:
        from mlpoppyns.simulator.config_simulator import cfg  # the checkout's survey table (paths, targets)
        surveys = json.loads(json.dumps(cfg["surveys_radio"]))
    finally:
        os.chdir(cwd)
    for key, target in GRABER2024_TARGETS.items():
        surveys[key]["detected_real"] = max(1, round(target * target_scale))
    pending = list(seeds)
    while pending:
        batch, pending = pending[:jobs], pending[jobs:]
        procs = []
        for seed in batch:
            run = out / f"magrot_det_seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            override = {**GRABER2024_OVERRIDE, "surveys_radio": surveys, "seed_magrot": seed}
            (run / "override.json").write_text(json.dumps(override, indent=2))
            procs.append((_run(python, checkout, "simulate_population_magrot_det",
                               ["--dyn_data", str(db.resolve()), "--save_dir", str(run.resolve()),
                                "--parameter_override", str((run / "override.json").resolve())],
                               run / "log.txt"), run / "log.txt"))
            time.sleep(1.5)  # the checkout seeds its database row sampling with int(time.time()) at import
        _wait(procs)


def collect(out: Path, seeds: list[int]) -> pd.DataFrame:
    """Detected stars of PMPS, SMPS and HTRU low+mid of every seed, in the CSV columns."""
    rows = []
    for seed in seeds:
        for key, name in SURVEYS.items():
            df = pd.read_pickle(out / f"magrot_det_seed{seed}" / f"survey_{key}_results.pkl.gz", compression="gzip")
            df.columns = df.columns.get_level_values(0)
            rows.append(pd.DataFrame({"survey": name, "seed": seed,
                                      **{c: df[src].to_numpy(float) for c, src in COLUMNS.items()}}))
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlpoppyns", type=Path, required=True, help="local checkout of ML-Poppyns-Open")
    ap.add_argument("--python", default=sys.executable, help="interpreter with the research code's requirements")
    ap.add_argument("--out", type=Path, default=Path("out/research_code"))
    ap.add_argument("--dyn-data", type=Path, default=None, help="existing dynamical database (skips step 1)")
    ap.add_argument("--n-stars", type=int, default=180_000, help="stars in the dynamical database")
    ap.add_argument("--dyn-parts", type=int, default=1, help="processes building the database")
    ap.add_argument("--dyn-seed", type=int, default=2021)
    ap.add_argument("--target-scale", type=float, default=0.12, help="fraction of the Graber 2024 targets")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=1, help="detection runs at a time")
    ap.add_argument("--csv", type=Path, default=None, help="output CSV (default OUT/detections.csv)")
    args = ap.parse_args()
    checkout = args.mlpoppyns.resolve()
    if not (checkout / "mlpoppyns" / "simulator" / "simulate_population_magrot_det.py").exists():
        sys.exit(f"{checkout} is not a checkout of ML-Poppyns-Open (no mlpoppyns/simulator/"
                 "simulate_population_magrot_det.py)")
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.dyn_data or build_database(args.python, checkout, args.out, args.n_stars, args.dyn_parts,
                                         args.dyn_seed)
    detect(args.python, checkout, args.out, db, args.seeds, args.target_scale, args.jobs)
    table = collect(args.out, args.seeds)
    csv = args.csv or args.out / "detections.csv"
    table.to_csv(csv, index=False)
    print(table.groupby(["survey", "seed"]).size().to_string())
    print(f"wrote {csv}")


if __name__ == "__main__":
    main()
