"""NPE on the detection-driven pulsar survey maps at CPU scale, the posterior of the observed ATNF + MeerKAT TPA
population beside the published posteriors, and the projected cost of a paper-scale run.

Steps (each prints its figures; the README section "Pulsar posteriors" quotes them):

    python benchmarks/bench_pulsar_sbi.py cost [--n 3]                  # seconds per detection-driven simulation
    nohup python benchmarks/bench_pulsar_sbi.py generate --minutes 60 > out/bench_pulsar_sbi/generate.log 2>&1 &
    python benchmarks/bench_pulsar_sbi.py train [--test F --valid F]    # split the done samples, train the ensemble
    python benchmarks/bench_pulsar_sbi.py report                        # calibration, observed posterior, comparison
    python benchmarks/bench_pulsar_sbi.py project [--seconds S]         # paper-scale cost on SLURM

``generate`` writes ``out/bench_pulsar_sbi/pipeline.toml`` once (later runs reuse it, so that the store resumes):
pipelines/pulsar_tsnpe_pardo2025.toml (7 parameters, P-Pdot + flux P-Pdot maps of PMPS/SMPS/HTRU) with a large
``n_samples`` upper bound, small chunks and a smaller ensemble, and stops the generation after ``--minutes``
(whole chunks are kept: a rerun resumes). The [observed] and [sbi.rounds] tables are left out (NPE on prior
draws here, no TSNPE rounds); ``report`` builds the observed store with the MeerKAT TPA fluxes itself.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench_pulsar_sbi"
SOURCE = ROOT / "pipelines" / "pulsar_tsnpe_pardo2025.toml"
DATA = ROOT.parent / "shared" / "data"
ATNF = DATA / "atnf_full_nobinary_06-08-2024.csv"
MEERKAT = DATA / "meerkat_tpa_census_posselt2023.csv"


def bench_pipeline(dm_grid: str, n_samples: int, seeds: int, dynamics_database: Path | None = None) -> Path:
    """The CPU-scale pipeline file derived from :data:`SOURCE` (written into :data:`OUT`); with a
    ``dynamics_database`` (a ``pulsar_dynamics`` store of the same dynamical settings) every population draws its
    stars' dynamics from it."""
    path = OUT / "pipeline.toml"
    if path.exists():
        return path
    text = SOURCE.read_text()
    text = text[: text.index("\n[sbi.rounds]")] + "\n"
    text = text[: text.index("\n[observed]")] + text[text.index("\n[cluster]"):]
    database = f'\ndynamics_database = "{dynamics_database.resolve()}"' if dynamics_database else ""
    subs = {r'dm_grid = "default"': f'dm_grid = "{dm_grid}"{database}',
            r"n_samples = 1000 ": f"n_samples = {n_samples} ",
            r'path = "../out/pulsar_tsnpe_pardo2025.zarr"': f'path = "{OUT / "pulsar_cpu.zarr"}"',
            r"samples_per_chunk = 64": "samples_per_chunk = 2",
            r'output = "../out/pulsar_tsnpe_pardo2025"': f'output = "{OUT / "npe"}"',
            r"test = 0.05": "test = 0.15",
            r"seeds = \[0, 1, 2, 3, 4\]": f"seeds = {list(range(seeds))}",
            r'parallel = "dask"': 'parallel = "sequential"\nthreads = 2',
            r"max_epochs = 200": "max_epochs = 150",
            r"n_draws = 1000": "n_draws = 500"}
    for old, new in subs.items():
        text, n = re.subn(old, new, text)
        if n != 1:
            raise RuntimeError(f"{SOURCE}: expected one {old!r}")
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# written by benchmarks/bench_pulsar_sbi.py from {SOURCE.name}\n" + text)
    return path


def cmd_generate(args: argparse.Namespace) -> None:
    path = bench_pipeline(args.dm_grid, args.n_samples, args.members, args.dynamics_database)
    print(f"{path}: generating for {args.minutes} min (whole chunks are kept; rerun to resume)", flush=True)
    before = store_summary(OUT / "pulsar_cpu.zarr")["done"] if (OUT / "pulsar_cpu.zarr").exists() else 0
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "popstore.cli", "generate", str(path), "--no-split"])
    try:
        proc.wait(timeout=60 * args.minutes)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=120)
    st = store_summary(OUT / "pulsar_cpu.zarr")
    wall = time.time() - t0
    print(f"{st['done']} samples done ({st['aborted']} aborted by the birth-rate cap), {st['done'] - before} in this "
          f"run's {wall:.0f} s wall on {args.workers} workers: "
          f"{wall * args.workers / max(st['done'] - before, 1):.0f} worker-s per sample", flush=True)


#: Graber et al. (2024, ApJ 968, 16), abstract (= arXiv:2312.14848 abstract): posterior of the observed
#: ATNF population, median and 95 % credible interval (-, +). NPE ensemble on the three P-Pdot maps.
GRABER_2024 = {"mu_logB": (13.10, 0.10, 0.08), "sigma_logB": (0.45, 0.05, 0.05), "mu_logP": (-1.00, 0.21, 0.26),
               "sigma_logP": (0.38, 0.18, 0.33), "a_late": (-1.80, 0.61, 0.65)}
#: Pardo-Araujo et al. (2025, A&A 696, A114): the research team's best-inferred point values for the observed
#: ATNF + MeerKAT TPA population (ice-csic-astroexotic/ML-Poppyns-Open,
#: data/paper_results/pardo_etal_2025/best_inferred_atnf/configuration.json at d962da7; spectral index -1.8 as
#: here). The paper's intervals could not be retrieved here: the repository's notebook that computes them reads
#: samples it does not hold, and the stored copies of the paper give its abstract only.
PARDO_2025 = {"mu_logB": 13.09, "sigma_logB": 0.5, "mu_logP": -0.68, "sigma_logP": 0.55, "a_late": -0.88,
              "L_radio_log10_mean": 26.17, "epsilon_L": 0.68}
#: A Milky-Way-like label vector for the cost measurement: Graber et al. 2024 medians, luminosity law at the
#: simulator's Pardo-Araujo et al. 2025 defaults (popstore.pulsars.config).
REFERENCE_LABELS = {"mu_logB": 13.10, "sigma_logB": 0.45, "mu_logP": -1.00, "sigma_logP": 0.38, "a_late": -1.80,
                    "L_radio_log10_mean": 26.17, "epsilon_L": 0.68}
#: CPU seconds of one magneto-rotational + detection simulation in the research code (reference/pulsars.md).
RESEARCH_CODE_CPU_S = (1300.0, 1840.0)


def store_summary(store: Path) -> dict[str, float]:
    """Done samples, aborted fraction and mean stars drawn per prior draw of the generated store."""
    import popstore

    ds = popstore.open_store(store)
    done = ds["done"].values.astype(bool)
    return {"done": int(done.sum()), "aborted": int((ds["aborted"].values[done] == 1).sum()),
            "mean_n_created": float(ds["n_created"].values[done].mean()) if done.any() else float("nan")}


def cmd_cost(args: argparse.Namespace) -> None:
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(bench_pipeline(args.dm_grid, args.n_samples, args.members, args.dynamics_database))
    sim = pipe.simulator()
    sim.dm()  # the DM grid is loaded (or computed) once, outside the timing
    print(f"one detection-driven simulation (pulsar_surveys, targets {sim.targets}), labels {REFERENCE_LABELS}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    cpu, stars = [], []
    for seed in range(args.n):
        c0, t0 = time.process_time(), time.perf_counter()
        out = sim.simulate(REFERENCE_LABELS, seed)
        cpu.append(time.process_time() - c0)
        stars.append(int(out["n_created"]))
        print(f"  seed {seed}: {cpu[-1]:.1f} s CPU ({time.perf_counter() - t0:.1f} s wall), {stars[-1]} stars drawn, "
              f"{cpu[-1] / stars[-1] * 1e5:.2f} CPU s per 1e5 stars", flush=True)
    per_star = float(np.sum(cpu) / np.sum(stars))
    print(f"median {np.median(cpu):.1f} CPU s per simulation at these labels; {per_star * 1e5:.2f} CPU s per 1e5 stars")
    st = store_summary(OUT / "pulsar_cpu.zarr") if (OUT / "pulsar_cpu.zarr").exists() else None
    if st and st["done"]:
        print(f"prior draws in the CPU run: {st['done']} done, {st['aborted']} aborted by the birth-rate cap, mean "
              f"{st['mean_n_created']:.3g} stars drawn -> about {per_star * st['mean_n_created']:.0f} CPU s per prior draw")
    print(f"research code (reference/pulsars.md): {RESEARCH_CODE_CPU_S[0]:.0f}-{RESEARCH_CODE_CPU_S[1]:.0f} CPU s "
          f"per simulation; ratio {RESEARCH_CODE_CPU_S[0] / np.median(cpu):.0f}-{RESEARCH_CODE_CPU_S[1] / np.median(cpu):.0f}x")


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from popstore.estimators.sbi import train_ensemble
    from popstore.estimators.sbi_pipeline import npe_config
    from popstore.pipeline import Pipeline
    from popstore.splits import split

    pipe = Pipeline.load(OUT / "pipeline.toml")
    sec = pipe.section("split")
    subsets = split(pipe.store_path, test=args.test or sec["test"], valid=args.valid or sec["valid"], seed=sec["seed"],
                    allow_incomplete=True, exclude="aborted")
    values, counts = np.unique(subsets.values, return_counts=True)
    print("split of the done samples: " + ", ".join(f"{v} {c}" for v, c in zip(values, counts)), flush=True)
    sbi = pipe.section("sbi")
    t0 = time.perf_counter()
    paths = train_ensemble(pipe.store_path, pipe.path_of("sbi", "output"), npe_config(sbi), sbi["seeds"], None, False)
    print(f"trained {len(paths)} members in {time.perf_counter() - t0:.0f} s wall")
    for path in paths:
        blob = torch.load(path, weights_only=False)
        print(f"  {path.name}: best epoch {blob['best_epoch']} of {len(blob['valid_loss'])}, valid loss "
              f"{blob['valid_loss'][blob['best_epoch']]:.3f} (first epoch {blob['valid_loss'][0]:.3f})")


def cmd_report(args: argparse.Namespace) -> None:
    import popstore
    from popstore.estimators.calibration import MIN_TEST
    from popstore.estimators.sbi_pipeline import calibrate, observed_posterior
    from popstore.pulsars.catalog import observed_store, write_observed_store

    pipeline = OUT / "pipeline.toml"
    n_test = int((popstore.open_store(OUT / "pulsar_cpu.zarr")["split"].values == "test").sum())
    if n_test >= MIN_TEST:
        print("calibration on the test split (popstore sbi calibrate):")
        print(calibrate(pipeline, progress=False).to_string(float_format=lambda v: f"{v:.3g}"), flush=True)
    else:
        print(f"calibration NOT run: {n_test} test samples; sbi's TARP needs >= {MIN_TEST} "
              "(num_bins = n // 10) and the SBC classifier check >= 5", flush=True)
    obs_path = OUT / "observed_atnf_meerkat.zarr"
    if not popstore.store.store_exists(obs_path):
        write_observed_store(observed_store(ATNF, popstore.open_store(OUT / "pulsar_cpu.zarr"), MEERKAT), obs_path)
    obs = popstore.open_store(obs_path)
    print(f"observed store: {dict(zip(obs['survey'].values.tolist(), obs['n_observed'].values.tolist()))} pulsars, "
          f"flux maps from {dict(zip(obs['survey'].values.tolist(), obs['n_observed_flux'].values.tolist()))} "
          f"({obs.attrs['flux_source']})")
    draws, table = observed_posterior(pipeline, obs_path, n_draws=args.n_draws)
    space_ranges = {n: (popstore.open_store(OUT / "pulsar_cpu.zarr")[n].attrs["prior_low"],
                        popstore.open_store(OUT / "pulsar_cpu.zarr")[n].attrs["prior_high"]) for n in table.index}
    print("posterior of the observed ATNF + MeerKAT TPA population (this CPU run) beside Graber et al. 2024 "
          "(abstract; 95 % credible), Pardo-Araujo et al. 2025 (point values) and the prior:")
    print(f"{'label':>20} {'median':>8} {'68% interval':>18} {'95% interval':>18} | {'Graber 2024 95%':>22} | "
          f"{'Pardo 2025':>10} | {'Pardo in 68%/95%':>16} | prior")
    for name, row in table.iterrows():
        g = GRABER_2024.get(name)
        pub = f"{g[0]:.2f} [{g[0] - g[1]:.2f}, {g[0] + g[2]:.2f}]" if g else "-"
        pardo = PARDO_2025.get(name)
        inside = "-" if pardo is None else (
            f"{'yes' if row['16%'] <= pardo <= row['84%'] else 'no'}/{'yes' if row['2.5%'] <= pardo <= row['97.5%'] else 'no'}")
        lo, hi = space_ranges[name]
        print(f"{name:>20} {row['median']:8.3f} [{row['16%']:7.3f}, {row['84%']:7.3f}] "
              f"[{row['2.5%']:7.3f}, {row['97.5%']:7.3f}] | {pub:>22} | {'-' if pardo is None else f'{pardo:.2f}':>10} | "
              f"{inside:>16} | [{lo:g}, {hi:g}]")
    print("(95 % interval width / prior width: " + ", ".join(
        f"{n} {(r['97.5%'] - r['2.5%']) / (space_ranges[n][1] - space_ranges[n][0]):.2f}" for n, r in table.iterrows())
        + ")")
    print(f"draws, corner plot, table: {OUT / 'npe'}/posterior_{obs_path.stem}.nc/.png/.csv")


def cmd_project(args: argparse.Namespace) -> None:
    cores = args.jobs * args.cores
    print(f"projected cost at {args.seconds:.0f} CPU s per simulation (benchmarks/bench_pulsar_sbi.py cost), on "
          f"{args.jobs} SLURM jobs x {args.cores} cores = {cores} cores:")
    for name, n in (("Graber et al. 2024 NPE, pipelines/pulsar_sbi_graber2024.toml n_samples", 100_000),
                    ("Pardo-Araujo et al. 2025 TSNPE, pulsar_tsnpe_pardo2025.toml 1000 + 4 x 1000", 5_000)):
        core_h = n * args.seconds / 3600
        print(f"  {name}: {n} simulations, {core_h:,.0f} core-hours, {core_h / cores:,.1f} h wall "
              f"(research code at {RESEARCH_CODE_CPU_S[0]:.0f}-{RESEARCH_CODE_CPU_S[1]:.0f} s: "
              f"{n * RESEARCH_CODE_CPU_S[0] / 3600:,.0f}-{n * RESEARCH_CODE_CPU_S[1] / 3600:,.0f} core-hours)")


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder of the pipeline, store, models and reports")
    sub = ap.add_subparsers(dest="step", required=True)

    def with_pipeline_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--n-samples", type=int, default=4000, help="upper bound of the Latin-hypercube table")
        p.add_argument("--dm-grid", default="default", choices=("coarse", "default"))
        p.add_argument("--members", type=int, default=3, help="ensemble members")
        p.add_argument("--dynamics-database", type=Path, default=None,
                       help="pulsar_dynamics store the populations draw their dynamics from (same dynamical settings)")
        return p

    p = with_pipeline_options(sub.add_parser("generate", help="simulate in the background for --minutes"))
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=2, help="[cluster] n_workers (for the core-s figure)")
    p.set_defaults(func=cmd_generate)
    p = with_pipeline_options(sub.add_parser("cost", help="CPU seconds of one detection-driven simulation"))
    p.add_argument("--n", type=int, default=2, help="simulations timed (seeds 0..n-1)")
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("train", help="split the done samples and train the ensemble")
    p.add_argument("--test", type=float, default=None, help="test fraction (default: the pipeline's [split])")
    p.add_argument("--valid", type=float, default=None, help="valid fraction of the rest (default: [split])")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("report", help="calibration, observed posterior, published posteriors")
    p.add_argument("--n-draws", type=int, default=10_000)
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("project", help="paper-scale cost on a SLURM cluster")
    p.add_argument("--seconds", type=float, required=True, help="CPU s per simulation (from 'cost')")
    p.add_argument("--jobs", type=int, default=20, help="SLURM worker jobs ([cluster] max_jobs)")
    p.add_argument("--cores", type=int, default=16, help="cores per job ([cluster] cores)")
    p.set_defaults(func=cmd_project)
    args = ap.parse_args()
    OUT = args.out.resolve()
    args.func(args)


if __name__ == "__main__":
    main()
