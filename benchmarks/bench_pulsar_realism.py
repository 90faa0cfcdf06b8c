"""Realism of the detection-driven pulsar populations against the ATNF survey subsets.

For each whole-model setting (``pardo2025``: Pardo-Araujo et al. 2025, A&A 696, A114, at
its best-fit labels, the config defaults; ``graber2024``: Graber et al. 2024, ApJ 968, 16,
its luminosity law and spectral index at its posterior medians) the ``pulsar_surveys``
detection stage is run for several seeds and the detected stars of PMPS, SMPS and HTRU
(low + mid latitude) are compared with the ATNF pulsars that popstore's own filters
(:mod:`popstore.pulsars.catalog`) assign to each survey: log P, log Pdot, l, |b|, DM,
distance, height |z| = d sin|b| (kpc) and log S1400. Printed per survey and quantity: the observed median, the
simulated median (pooled over seeds) and the two-sample Kolmogorov-Smirnov D (mean and
largest over seeds). Observed distances are the catalogue's DIST (mostly YMW16 DM
distances, Yao, Manchester & Wang 2017); observed fluxes are the MeerKAT TPA 1429 MHz
fluxes (Posselt et al. 2023) when ``--meerkat`` is given, else ATNF S1400.

``--probes`` runs the candidate causes of the distance / DM excess one at a time (at
``--probe-setting``, usually with ``--target-scale 0.25``) and prints, per probe, the
detected median distance and DM and their KS D for PMPS and HTRU plus the birth rate:
each probe changes one ingredient (sky temperature, beam-offset loss, scattering,
DM smearing, scale height, kicks, birth model, luminosity law, FFT-search efficiency,
neutron-star radius) so its effect on the detected distances is measured alone.

``--research-catalogue CSV`` puts the research code's own detections beside ours: the per-star CSV that
``benchmarks/research_code_detections.py`` writes from a local checkout of ML-Poppyns-Open (columns survey, seed,
P, Pdot, l, b, d, dm, S1400), compared with the same ATNF subsets; printed as one table with popstore's
``--research-setting`` run (medians and KS D of both codes), or alone when that setting is not run.
``--research-database DIR`` compares the research code's dynamical database (``final_pop_dyn.csv`` of its
``simulate_population_dyn.py``) with as many stars of popstore's dynamical stage: medians of the present-day
distance, |z|, Galactocentric radius and age, and their two-sample KS D, for all stars and per survey sky area.

    python benchmarks/bench_pulsar_realism.py --seeds 0 1 2
    python benchmarks/bench_pulsar_realism.py --probes --target-scale 0.25 --seeds 0
    python benchmarks/bench_pulsar_realism.py --settings graber2024 \\
        --research-catalogue out/research_code/detections.csv
    python benchmarks/bench_pulsar_realism.py --settings --research-database out/research_code/dyn_database
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from popstore.pulsars import surveys as survey_models  # noqa: E402
from popstore.pulsars.config import PulsarConfig  # noqa: E402
from popstore.pulsars.coords import to_observables  # noqa: E402
from popstore.pulsars.catalog import filter_atnf, read_atnf, read_meerkat, survey_subsets  # noqa: E402
from popstore.pulsars.config import GRABER2024_POSTERIOR_MEDIANS  # noqa: E402
from popstore.pulsars.detected import DEFAULT_TARGETS, PulsarSurveys  # noqa: E402
from popstore.pulsars.population import simulate_dynamics  # noqa: E402
from popstore.pulsars.survey_maps import MAP_SURVEYS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Detection targets of the Graber et al. (2024) run (PMPS, SMPS, HTRU low+mid, HTRU high).
GRABER2024_TARGETS = {"PMPS": 1009, "SMPS": 218, "HTRU_low_mid": 1023, "HTRU_high": 20}
#: setting -> (labels, targets)
SETTINGS: dict[str, tuple[dict[str, float], dict[str, int]]] = {
    "pardo2025": ({}, DEFAULT_TARGETS),  # labels at the config defaults = the Pardo-Araujo et al. (2025) best fit
    "graber2024": (GRABER2024_POSTERIOR_MEDIANS, GRABER2024_TARGETS),
}
QUANTITIES = ("log P", "log Pdot", "l", "|b|", "DM", "distance", "|z|", "log S1400")


def simulated_quantities(det: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compared quantities of simulated detections (P s, Pdot, l b deg, dm pc cm^-3, d kpc, S1400 Jy)."""
    return {"log P": np.log10(det["P"]), "log Pdot": np.log10(det["Pdot"]), "l": det["l"], "|b|": np.abs(det["b"]),
            "DM": det["dm"], "distance": det["d"], "|z|": det["d"] * np.sin(np.radians(np.abs(det["b"]))),
            "log S1400": np.log10(det["S1400"])}


def observed_quantities(atnf: Path, meerkat: Path | None) -> dict[str, dict[str, np.ndarray]]:
    """The compared quantities of the ATNF survey subsets (NaN-free per quantity)."""
    df, _ = filter_atnf(read_atnf(atnf))
    subsets = survey_subsets(df)
    flux = read_meerkat(meerkat) if meerkat else None
    out = {}
    for s, sub in subsets.items():
        s1400 = (sub.merge(flux, on="PSRJ", suffixes=("_atnf", ""))["S1400"].to_numpy(float) if flux is not None
                 else sub["S1400"].to_numpy(float) / 1e3)
        q = {"log P": np.log10(sub["P0"].to_numpy(float)), "log Pdot": np.log10(sub["P1"].to_numpy(float)),
             "l": sub["Gl"].to_numpy(float), "|b|": np.abs(sub["Gb"].to_numpy(float)),
             "DM": sub["DM"].to_numpy(float), "distance": sub["DIST"].to_numpy(float),
             "|z|": sub["DIST"].to_numpy(float) * np.sin(np.radians(np.abs(sub["Gb"].to_numpy(float)))),
             "log S1400": np.log10(s1400)}
        out[s] = {k: v[np.isfinite(v)] for k, v in q.items()}
    return out


def detect(setting: str, seed: int, target_scale: float, dm_grid: str, sim_kw: Mapping | None = None,
           labels: Mapping[str, float] | None = None) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """Detected-star quantities per map survey and the birth rate (per century) of one run."""
    base_labels, targets = SETTINGS[setting]
    targets = {k: max(1, round(v * target_scale)) for k, v in targets.items()}
    sim = PulsarSurveys(targets=targets, setting=setting, dm_grid=dm_grid, **dict(sim_kw or {}))
    run = sim.run({**base_labels, **dict(labels or {})}, np.random.default_rng(seed))
    return {s: simulated_quantities(run.detected[d]) for s, d in MAP_SURVEYS.items()}, run.birth_rate


def summary(obs: np.ndarray, runs: list[dict[str, dict[str, np.ndarray]]], survey: str,
            quantity: str) -> tuple[float, float, float]:
    """Simulated median (pooled over runs) and the KS D against ``obs``: mean and largest over runs."""
    pooled = np.concatenate([r[survey][quantity] for r in runs])
    ds = [ks_2samp(obs, r[survey][quantity]).statistic for r in runs]
    return float(np.median(pooled)), float(np.mean(ds)), float(np.max(ds))


def realism_table(obs: Mapping[str, Mapping[str, np.ndarray]], runs: list[dict[str, dict[str, np.ndarray]]]) -> list[str]:
    """Rows survey | quantity | observed median | simulated median | KS D mean (max) over seeds."""
    rows = []
    for s in MAP_SURVEYS:
        for q in QUANTITIES:
            med, dmean, dmax = summary(obs[s][q], runs, s, q)
            rows.append(f"| {s} | {q} | {np.median(obs[s][q]):.3g} | {med:.3g} | {dmean:.3f} ({dmax:.3f}) |")
    return rows


def research_runs(csv: Path) -> list[dict[str, dict[str, np.ndarray]]]:
    """Per-seed detected-star quantities of the research code from ``research_code_detections.py``'s CSV."""
    df = pd.read_csv(csv)
    columns = {"survey", "seed", "P", "Pdot", "l", "b", "d", "dm", "S1400"}
    if not columns <= set(df.columns):
        raise SystemExit(f"{csv}: missing columns {sorted(columns - set(df.columns))} (expected the CSV of "
                         "benchmarks/research_code_detections.py)")
    values = sorted(columns - {"survey", "seed"})
    return [{s: simulated_quantities({c: g.loc[g["survey"] == s, c].to_numpy(float) for c in values})
             for s in MAP_SURVEYS} for _, g in df.groupby("seed")]


def comparison_table(obs: Mapping[str, Mapping[str, np.ndarray]], ours: list[dict[str, dict[str, np.ndarray]]],
                     research: list[dict[str, dict[str, np.ndarray]]]) -> list[str]:
    """Rows survey | quantity | observed median | popstore median, KS D | research-code median, KS D | KS D
    between the two codes' detections (all runs pooled)."""
    rows = []
    for s in MAP_SURVEYS:
        for q in QUANTITIES:
            cells = [f"{m:.3g} | {dmean:.3f} ({dmax:.3f})" for m, dmean, dmax in
                     (summary(obs[s][q], runs, s, q) for runs in (ours, research))]
            between = ks_2samp(*(np.concatenate([r[s][q] for r in runs]) for runs in (ours, research))).statistic
            rows.append(f"| {s} | {q} | {np.median(obs[s][q]):.3g} | {' | '.join(cells)} | {between:.3f} |")
    return rows


def research_dynamics(db: Path, cfg: PulsarConfig) -> dict[str, np.ndarray]:
    """Age (yr), Galactocentric radius R and height z (kpc) and popstore's sky coordinates (l, b, dec deg, d kpc)
    of the stars of a research-code dynamical database (``final_pop_dyn.csv``: age, cylindrical r, phi, z and
    v_r, v_phi, v_z in km/s, in the model frame of :mod:`popstore.pulsars.coords`, the Sun on +y)."""
    df = pd.read_csv(db / "final_pop_dyn.csv", header=[0, 1], index_col=0)
    df.columns = df.columns.get_level_values(0)
    r, phi, z = (df[c].to_numpy(float) for c in ("r", "phi", "z"))
    v_r, v_phi, v_z = (df[c].to_numpy(float) for c in ("v_r", "v_phi", "v_z"))
    cos_p, sin_p = np.cos(phi), np.sin(phi)
    pos = np.stack([r * cos_p, r * sin_p, z])
    vel = np.stack([v_r * cos_p - v_phi * sin_p, v_r * sin_p + v_phi * cos_p, v_z])
    return {"age": df["age"].to_numpy(float), "R": r, "z": z, **to_observables(pos, vel, cfg)}


def dynamics_table(research: Mapping[str, np.ndarray], seed: int) -> list[str]:
    """Rows area | n research/popstore | medians research/popstore and KS D of d, |z|, R, age."""
    cfg = PulsarConfig()
    ours = simulate_dynamics(len(research["age"]), np.random.default_rng(seed), cfg)
    ours["R"] = np.hypot(ours["x"], ours["y"])
    areas = {"all stars": None, **{f"{k} area": v.sky for k, v in survey_models.SURVEYS.items()}}
    rows = []
    for name, area in areas.items():
        sel = [np.ones(len(c["age"]), bool) if area is None else area.contains(c["l"], c["b"], c["dec"])
               for c in (research, ours)]
        cells = []
        for q in ("d", "z", "R", "age"):
            a, b = (np.abs(c[q][m]) for c, m in zip((research, ours), sel))
            cells.append(f"{np.median(a):.3g} / {np.median(b):.3g} | {ks_2samp(a, b).statistic:.3f}")
        rows.append(f"| {name} | {sel[0].sum()} / {sel[1].sum()} | {' | '.join(cells)} |")
    return rows


def _patched(name: str, fn: Callable) -> Callable[[], contextlib.AbstractContextManager]:
    return lambda: mock.patch.object(survey_models, name, fn)


def _const_gain(n, survey, rng):
    return np.full(n, survey.G0)


#: probe -> (simulator keywords, label overrides, patch of a survey-model function or None)
PROBES: dict[str, tuple[dict, dict, Callable[[], contextlib.AbstractContextManager] | None]] = {
    "baseline": ({}, {}, None),
    "T_sky = 0 (bound on Haslam vs analytic)": ({}, {}, _patched("sky_temperature", lambda l, b, f: np.zeros(np.shape(l)))),
    "T_sky x 3": ({}, {}, _patched("sky_temperature", lambda l, b, f, _t=survey_models.sky_temperature: 3 * _t(l, b, f))),
    "gain G0 (no beam-offset loss)": ({}, {}, _patched("beam_gain", _const_gain)),
    "no scattering": ({}, {}, _patched("scattering_time_327", lambda dm, rng, sigma_dex=0.5: np.zeros(np.shape(dm)))),
    "scattering x 10": ({}, {}, _patched("scattering_time_327", lambda dm, rng, sigma_dex=0.5,
                                         _t=survey_models.scattering_time_327: 10 * _t(dm, rng, sigma_dex))),
    "no DM smearing": ({}, {}, _patched("dm_smearing", lambda dm, bw, f: np.zeros(np.shape(dm)))),
    "h_c = 0.05 kpc": ({"h_c_kpc": 0.05}, {}, None),
    "no kicks (sigma_k = 1 km/s)": ({"kick_sigma_kms": 1.0}, {}, None),
    "sigma_k = 130 km/s (half of Hobbs et al. 2005)": ({"kick_sigma_kms": 130.0}, {}, None),
    "birth_model ymw16_density": ({"birth_model": "ymw16_density"}, {}, None),
    "luminosity sigma 0.4 dex": ({"L_radio_log10_sigma": 0.4}, {}, None),
    "fft_search": ({"fft_search": True}, {}, None),
    "ns_radius bsk24": ({"ns_radius": "bsk24"}, {}, None),
}


@contextlib.contextmanager
def probe_context(patch: Callable[[], contextlib.AbstractContextManager] | None) -> Iterator[None]:
    with patch() if patch else contextlib.nullcontext():
        yield


def probe_table(obs, setting: str, seeds: list[int], target_scale: float, dm_grid: str, probes: list[str]) -> list[str]:
    """Rows probe | PMPS median d, DM, |z|, KS D(d), KS D(DM) | same for HTRU | birth rate."""
    rows = []
    for name in probes:
        kw, labels, patch = PROBES[name]
        with probe_context(patch):
            runs = [detect(setting, seed, target_scale, dm_grid, kw, labels) for seed in seeds]
        cells = []
        for s in ("PMPS", "HTRU"):
            d = np.concatenate([r[0][s]["distance"] for r in runs])
            dm = np.concatenate([r[0][s]["DM"] for r in runs])
            kd = np.mean([ks_2samp(obs[s]["distance"], r[0][s]["distance"]).statistic for r in runs])
            kdm = np.mean([ks_2samp(obs[s]["DM"], r[0][s]["DM"]).statistic for r in runs])
            z = np.concatenate([r[0][s]["|z|"] for r in runs])
            cells.append(f"{np.median(d):.2f} | {np.median(dm):.0f} | {np.median(z):.3f} | {kd:.3f} | {kdm:.3f}")
        rows.append(f"| {name} | {' | '.join(cells)} | {np.mean([r[1] for r in runs]):.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atnf", type=Path, default=DATA / "atnf_full_nobinary_06-08-2024.csv")
    ap.add_argument("--meerkat", type=Path, default=DATA / "meerkat_tpa_census_posselt2023.csv",
                    help="MeerKAT TPA table for the observed fluxes ('' for ATNF S1400)")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS),
                    help="settings popstore runs (none: only the --research-catalogue table)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--target-scale", type=float, default=1.0, help="fraction of the detection targets")
    ap.add_argument("--dm-grid", default="default", choices=("default", "coarse"))
    ap.add_argument("--probes", action="store_true", help="run the candidate causes of the distance excess")
    ap.add_argument("--probe-setting", default="graber2024", choices=list(SETTINGS))
    ap.add_argument("--only", nargs="*", default=None, help="subset of the probe names")
    ap.add_argument("--research-catalogue", type=Path, default=None,
                    help="CSV of the research code's detections (benchmarks/research_code_detections.py)")
    ap.add_argument("--research-setting", default="graber2024", choices=list(SETTINGS),
                    help="the setting the research catalogue was simulated at")
    ap.add_argument("--research-database", type=Path, default=None,
                    help="research-code dynamical database directory (final_pop_dyn.csv)")
    args = ap.parse_args()
    if args.research_database:
        db = research_dynamics(args.research_database, PulsarConfig())
        print(f"dynamical stage: research-code database {args.research_database} ({len(db['age'])} stars) vs "
              f"popstore simulate_dynamics (defaults, seed {args.seeds[0]}); medians research / popstore, KS D")
        print("| stars | n | d kpc | KS D(d) | abs z kpc | KS D(z) | R kpc | KS D(R) | age yr | KS D(age) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(dynamics_table(db, args.seeds[0])))
    research = research_runs(args.research_catalogue) if args.research_catalogue else None
    obs = observed_quantities(args.atnf, args.meerkat if str(args.meerkat) not in ("", ".") else None)
    print("observed ATNF subsets:", {s: len(v["log P"]) for s, v in obs.items()},
          "| fluxes:", "MeerKAT TPA" if str(args.meerkat) not in ("", ".") else "ATNF S1400")
    if args.probes:
        print(f"\nprobes at {args.probe_setting}, target scale {args.target_scale}, seeds {args.seeds}")
        print("| probe | PMPS d kpc | PMPS DM | PMPS abs z kpc | PMPS KS D(d) | PMPS KS D(DM) | HTRU d kpc | HTRU DM | "
              "HTRU abs z kpc | HTRU KS D(d) | HTRU KS D(DM) | birth rate / century |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("| observed (ATNF) | " + " | ".join(
            f"{np.median(obs[s]['distance']):.2f} | {np.median(obs[s]['DM']):.0f} | {np.median(obs[s]['|z|']):.3f} | |"
            for s in ("PMPS", "HTRU")) + " |")
        probe_table(obs, args.probe_setting, args.seeds, args.target_scale, args.dm_grid, args.only or list(PROBES))
        return
    for setting in args.settings:
        t0 = time.perf_counter()
        runs = [detect(setting, seed, args.target_scale, args.dm_grid) for seed in args.seeds]
        print(f"\n{setting}: seeds {args.seeds}, target scale {args.target_scale}, "
              f"birth rate {np.mean([r[1] for r in runs]):.2f} per century, {time.perf_counter() - t0:.0f} s")
        print("| survey | quantity | ATNF median | simulated median | KS D mean (max) |")
        print("|---|---|---|---|---|")
        print("\n".join(realism_table(obs, [r[0] for r in runs])))
        if research is not None and setting == args.research_setting:
            print(f"\n{setting}: popstore beside the research code ({len(research)} runs of ML-Poppyns-Open, "
                  f"detected per run: {_counts(research)})")
            print("| survey | quantity | ATNF median | popstore median | popstore KS D | research code median | "
                  "research code KS D | KS D popstore vs research code |")
            print("|---|---|---|---|---|---|---|---|")
            print("\n".join(comparison_table(obs, [r[0] for r in runs], research)))
    if research is not None and args.research_setting not in args.settings:
        print(f"\nresearch code at {args.research_setting}: {len(research)} runs, "
              f"detected per run: {_counts(research)}")
        print("| survey | quantity | ATNF median | research code median | research code KS D mean (max) |")
        print("|---|---|---|---|---|")
        print("\n".join(realism_table(obs, research)))


def _counts(runs: list[dict[str, dict[str, np.ndarray]]]) -> str:
    return ", ".join(f"{s} {'/'.join(str(len(r[s]['log P'])) for r in runs)}" for s in MAP_SURVEYS)


if __name__ == "__main__":
    main()
