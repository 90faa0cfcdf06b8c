"""Hernquist benchmark of flow-based CBE accelerations: error against ensemble size, both metrics, iso and aniso.

For the isotropic and the beta = 1/2 Hernquist sphere (Hernquist 1990; M = 1e10 Msun, a = 5 kpc) prints,
for the exact DF, for popstore's ensembles of K = 1, 2, 4, ... flows and for the published HernquistFlows
ensemble (Naik et al. 2021, arXiv:2112.07657; 1, 3, 7, 30 of its flows, read from --published and
skipped where absent), measured in the same run:

- ``3D med`` / ``3D p90``: popstore's metric, |a - a_true| / |a_true| at 50 geometric radii 0.4 a - 20 a
  (least squares on grad log f rows), 1,000 evaluation velocities per position (An et al. 2021,
  arXiv:2106.05981, Sect. 4);
- ``bias``: median signed radial error a_r / a_r,true - 1 on the same grid;
- ``x med``: x-component error |a_x / a_x,true - 1| at the papers' 50 linear radii with their velocity design
  (|v| < 0.9 v_esc, v_t > 0.1 v_esc, every |v_i| > 0.2 v_esc), grad log f rows;
- ``paper x``: the papers' definition, the same with grad f / f_ref rows (f-weighted);

plus variants of the estimator on the largest ensembles: symmetric (+v, -v) velocity pairs and the
geometric-mean ensemble (mean of log p_k instead of the mean density), and ``potential fit`` rows: one smooth
potential (radial B-splines x spherical harmonics to degree --l-max, not spherical; l = 0 rows, "sph.", assume
spherical symmetry and are a reference only) fitted to the ensemble's CBE at --fit-positions random positions x
--fit-velocities velocities, either "uniform |v|" (the papers' design with the largest speed of the 100 nearest
catalogue stars in place of the escape speed) or "stars' v" (the velocities of the nearest catalogue stars); no
position on the reported grid, no potential used; "by CV" rows choose l_max by the held-out CBE residual (Green & Ting 2020,
arXiv:2011.04673), a = -grad Phi, evaluated on the same grids (``paper x`` is then the same fit, shown as -). popstore's members each train on
their own independent draw of --n-stars stars (``train_ensemble`` with a per-seed sampler), with the
papers' scheduler (ReduceLROnPlateau factor 0.5, patience 5, threshold 1e-6, cooldown 10), a 10%
validation split and early stopping; the cost table gives epochs and CPU seconds per member.
Gradients of every member are computed once per grid (memory-bounded chunks) and cached under --out, so a
sub-ensemble costs no further flow evaluation and a rerun only evaluates what is new.

Run:  nice .venv/bin/python benchmarks/bench_flows_hernquist.py --n-stars 100000 --epochs 40 --members 4
      (--workers N: members train as Dask tasks on N local workers; --no-train: evaluate the members that
      already finished)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from popstore.estimators.flows import FlowConfig, load_flow, load_nflows, train_flow
from popstore.estimators.flows_ensemble import (
    FlowEnsemble,
    finished_member,
    load_nflows_ensemble,
    phase_space_log_df,
    train_ensemble,
)
from popstore.galaxy.dynamics.acceleration import (
    DEFAULT_MEMORY_BUDGET,
    PAPER_VELOCITIES,
    CBETerms,
    cbe_acceleration,
    cbe_terms,
    evaluation_velocities,
    mixture_terms,
    solve_cbe,
)
from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.galaxy.dynamics.metrics import error_summary, geometric_radii, on_x_axis, paper_radii
from popstore.galaxy.dynamics.potential_fit import PotentialBasis, cross_validated_l_max, fit_design, fit_potential

H = Hernquist(1e10, 5.0)
UNITS = (np.zeros(6), np.r_[[10 * H.scale_radius] * 3, [np.sqrt(2 * H.gm / H.scale_radius)] * 3])  # the papers' rescaling
PUBLISHED_DIRS = {"isotropic": "hq_iso_orig", "anisotropic": "hq_aniso_orig"}


def member_sample(seed: int, kind: str, n: int) -> np.ndarray:
    """Member ``seed``'s own training sample: ``n`` exact draws (r < 200 a) with ``default_rng(1000 + seed)``."""
    x, v = H.sample(n, np.random.default_rng(1000 + seed), kind, r_max=200 * H.scale_radius)
    return np.hstack([x, v])


def grids(n_vel: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Evaluation grids: geometric radii (3D metric), the same with symmetric velocities, the papers' linear radii
    with their velocity design (|v| < 0.9 v_esc, v_t > 0.1 v_esc, every |v_i| > 0.2 v_esc)."""
    out = {}
    for name, r, kw in (("geom", geometric_radii(H.scale_radius), {}), ("geom_sym", geometric_radii(H.scale_radius), {"symmetric": True}),
                        ("linear", paper_radii(H.scale_radius), PAPER_VELOCITIES)):
        pos = on_x_axis(r)
        vel = evaluation_velocities(pos, H.escape_speed(r), n_vel, np.random.default_rng(42), **kw)
        out[name] = (torch.tensor(pos), torch.tensor(vel), H.acceleration(pos))
    return out


FIT_RANGE = (0.4 * H.scale_radius, 20 * H.scale_radius)


def fit_grid(kind: str, n_fit: int, n_fit_vel: int, design: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, tuple[float, float]]:
    """The potential fit's random positions and velocities (:func:`fit_design` over 0.4 a - 20 a, velocity
    ``design``) from a 3e5-star catalogue of the same DF (``default_rng(99)``; the published flows' own 1e6 training
    stars are not published), plus the basis' radial range."""
    cx, cv = H.sample(300_000, np.random.default_rng(99), kind, r_max=200 * H.scale_radius)
    fx, fv, rr = fit_design(FIT_RANGE, n_fit, n_fit_vel, cx, cv, np.random.default_rng(7), design)
    return torch.tensor(fx), torch.tensor(fv), H.acceleration(fx), rr


def cached_terms(path: Path, compute) -> CBETerms:
    if path.exists():
        d = torch.load(path, weights_only=True)
        return CBETerms(**d)
    t = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: getattr(t, k) for k in ("log_f", "grad_x", "grad_v", "v")}, path)
    return t


def row(name: str, terms: dict[str, CBETerms], g, combine=mixture_terms) -> str:
    """One table row from per-member terms on every grid (``terms[grid]`` a list over members)."""
    geom = error_summary(solve_cbe(combine(terms["geom"])).numpy(), g["geom"][2])
    lin_log = error_summary(solve_cbe(combine(terms["linear"])).numpy(), g["linear"][2])
    lin_f = error_summary(solve_cbe(combine(terms["linear"]), "f").numpy(), g["linear"][2])
    return (f"{name:<40s} {100 * geom['median_3d']:7.2f} {100 * geom['p90_3d']:7.2f} {100 * geom['radial_bias']:+7.2f} "
            f"{100 * lin_log['median_x']:7.2f} {100 * lin_f['median_x']:8.2f}")


def fit_rows(name: str, fit_terms: list[CBETerms], g, args, grid: str = "fit") -> str:
    """Rows of the potential fit to the mixture of ``fit_terms`` (members' terms on ``g[grid]``), one per
    --l-max (l = 0, a spherical potential, is marked: a reference that assumes the symmetry), and one with the l_max
    (0 ... max of --l-max) of smallest cross-validated CBE residual (:func:`cross_validated_l_max`; data only)."""
    lo, hi = g[grid][3]
    x, mixed = g[grid][0].numpy(), mixture_terms(fit_terms)
    best = cross_validated_l_max(x, mixed, PotentialBasis(lo, hi, args.n_radial, 0), tuple(range(max(args.l_max) + 1)))[0]
    lines = []
    for l_max in [*args.l_max, best]:
        fit = fit_potential(x, mixed, PotentialBasis(lo, hi, args.n_radial, l_max))
        geom = error_summary(fit.acceleration(g["geom"][0].numpy()), g["geom"][2])
        lin = error_summary(fit.acceleration(g["linear"][0].numpy()), g["linear"][2])
        label = f"{name}, l<={l_max}" + (" (sph.)" if l_max == 0 else "") + (" by CV" if len(lines) == len(args.l_max) else "")
        lines.append(f"{label:<40s} {100 * geom['median_3d']:7.2f} {100 * geom['p90_3d']:7.2f} {100 * geom['radial_bias']:+7.2f} "
                     f"{100 * lin['median_x']:7.2f} {'-':>8s}")
    return "\n".join(lines)


def symmetric_row(name: str, terms: list[CBETerms], g, combine=mixture_terms) -> str:
    s = error_summary(solve_cbe(combine(terms)).numpy(), g["geom_sym"][2])
    return f"{name:<40s} {100 * s['median_3d']:7.2f} {100 * s['p90_3d']:7.2f} {100 * s['radial_bias']:+7.2f}      (3D grid only)"


def log_mean_terms(members: list[CBETerms]) -> CBETerms:
    """Geometric-mean ensemble ``log f = mean_k log p_k``: plain means of the members' gradients."""
    return CBETerms(torch.stack([m.log_f for m in members]).mean(0), torch.stack([m.grad_x for m in members]).mean(0),
                    torch.stack([m.grad_v for m in members]).mean(0), members[0].v)


def member_terms(log_f, g, cache: Path, names=("geom", "linear", "geom_sym", "fit", "fit_nb")) -> dict[str, CBETerms]:
    n_fit = "x".join(map(str, g["fit"][1].shape[:2]))
    files = {"linear": "linear_paper_velocities", "fit": f"fit_uniform_speed_{n_fit}", "fit_nb": f"fit_nearest_stars_{n_fit}"}
    return {k: cached_terms(cache / f"{files.get(k, k)}.pt", lambda k=k: cbe_terms(log_f, g[k][0], g[k][1])) for k in names}


def memory_check(ens: FlowEnsemble, grid, n_pos: int = 10) -> None:
    """Peak RSS added by one generic ``cbe_acceleration`` call on the whole ensemble DF (default memory budget)."""
    status = lambda key: next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))
    x, v = grid[0][:n_pos], grid[1][:n_pos]
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
    before, t = status("VmRSS"), time.perf_counter()
    cbe_acceleration(phase_space_log_df(ens), x, v)
    print(f"  memory: {len(ens.members)}-member ensemble DF, {x.shape[0]} x {v.shape[1]} points in one call: peak RSS "
          f"+{(status('VmHWM') - before) / 2**30:.2f} GiB (budget {DEFAULT_MEMORY_BUDGET / 2**30:.0f} GiB of graph; "
          f"unchunked graph {len(ens.members) * x.shape[0] * v.shape[1] * 40e3 / 2**30:.0f} GiB at ~40 kB/point/member), "
          f"{time.perf_counter() - t:.0f} s")


def sizes(k: int) -> list[int]:
    """Ensemble sizes to tabulate: 1, 2, 3, powers of two and ``k`` itself (at most ``k``)."""
    return sorted(n for n in {1, 2, 3, k} | {2**i for i in range(2, 8)} if n <= k)


def run_kind(kind: str, args, g, client=None) -> None:
    print(f"\n=== {kind} Hernquist DF ===")
    g = dict(g, fit=fit_grid(kind, args.fit_positions, args.fit_velocities, "uniform_speed"),
             fit_nb=fit_grid(kind, args.fit_positions, args.fit_velocities, "neighbours"))
    print(f"{'model':<40s} {'3D med':>7s} {'3D p90':>7s} {'bias':>7s} {'x med':>7s} {'paper x':>8s}   [%]")
    exact = lambda x, v: H.log_df(x, v, kind)
    print(row("exact DF", {k: [cbe_terms(exact, g[k][0], g[k][1])] for k in ("geom", "linear")}, g))
    # a neighbour's velocity can be unbound at the fit position (f = 0): a floor there gives that row no gradient
    floored = lambda x, v: torch.clamp(exact(x, v), min=-50.0)
    for grid, label in (("fit", "uniform |v|"), ("fit_nb", "stars' v")):
        print(fit_rows(f"exact DF, fit {label}", [cbe_terms(floored, g[grid][0], g[grid][1])], g, args, grid))

    cfg = FlowConfig(batch_size=args.batch_size, max_epochs=args.epochs, valid_fraction=0.1, early_stopping_patience=10,
                     transform=args.transform)
    out = Path(args.out) / f"{kind}_{args.transform}_n{args.n_stars}_e{args.epochs}"
    seeds = list(range(args.members))
    if not args.no_train:
        t = time.perf_counter()
        train_ensemble(partial(member_sample, kind=kind, n=args.n_stars), cfg, seeds, out, client=client, rescaling=UNITS,
                       progress=False)
        print(f"(training/loading {len(seeds)} members: {time.perf_counter() - t:.0f} s wall)")
    seeds = [s for s in seeds if finished_member(out, s, cfg, "independent") is not None]
    ours = {s: member_terms(phase_space_log_df(load_flow(out / f"seed_{s}")), g, out / f"terms_v{args.velocities}" / f"seed_{s}") for s in seeds}
    for k in sizes(len(seeds)) if seeds else []:
        print(row(f"popstore, {k} flow(s), {args.n_stars:.0e} stars each", {n: [ours[s][n] for s in seeds[:k]] for n in ("geom", "linear")}, g))
    for k in sizes(len(seeds)) if seeds else []:
        for grid, label in (("fit", "uniform |v|"), ("fit_nb", "stars' v")):
            print(fit_rows(f"popstore, {k}, fit {label}", [ours[s][grid] for s in seeds[:k]], g, args, grid))
    if len(seeds) > 1:
        print(symmetric_row(f"popstore, {len(seeds)}, symmetric +-v", [ours[s]["geom_sym"] for s in seeds], g))
        print(row(f"popstore, {len(seeds)}, geometric-mean ensemble", {n: [ours[s][n] for s in seeds] for n in ("geom", "linear")}, g,
                  log_mean_terms))

    pub_dir = Path(args.published) / PUBLISHED_DIRS[kind]
    pub = {}
    if pub_dir.exists():
        for s in range(args.published_members):
            model, _ = load_nflows(pub_dir, s, rescaling=UNITS)
            pub[s] = member_terms(phase_space_log_df(model), g, Path(args.out) / f"published_terms_v{args.velocities}" / kind / f"seed_{s}")
        for k in [k for k in (1, 3, 7, 30) if k < len(pub)] + [len(pub)]:
            print(row(f"published, {k} flow(s), 1e6 stars (shared)", {n: [pub[s][n] for s in range(k)] for n in ("geom", "linear")}, g))
        for k in [k for k in (1, 3, 7, 30) if k < len(pub)] + [len(pub)]:
            for grid, label in (("fit", "uniform |v|"), ("fit_nb", "stars' v")):
                print(fit_rows(f"published, {k}, fit {label}", [pub[s][grid] for s in range(k)], g, args, grid))
        print(symmetric_row(f"published, {len(pub)}, symmetric +-v", [pub[s]["geom_sym"] for s in pub], g))
        print(row(f"published, {len(pub)}, geometric-mean ensemble", {n: [pub[s][n] for s in pub] for n in ("geom", "linear")}, g,
                  log_mean_terms))
        if args.memory_check:
            memory_check(load_nflows_ensemble(pub_dir, rescaling=UNITS), g["geom"])
    else:
        print(f"published ensemble: {pub_dir} absent, row skipped")

    print("per-member training cost:")
    for s in seeds:
        sm = json.loads((out / f"seed_{s}" / "summary.json").read_text())
        cpu = f"{sm['cpu_seconds']:.0f} CPU s" if "cpu_seconds" in sm else "CPU s not recorded"
        print(f"  popstore seed {s}: {sm['epochs']} epochs on {sm.get('n_train', int(0.9 * args.n_stars))} stars, {cpu}")
    if args.cost_probe:
        with tempfile.TemporaryDirectory() as tmp:
            one = train_flow(member_sample(0, kind, args.n_stars), replace(cfg, max_epochs=1, early_stopping_patience=None), 0, tmp,
                             UNITS, progress=False)
            cpu = json.loads((one.checkpoint.parent / "summary.json").read_text())["cpu_seconds"]
        print(f"  cost probe: 1 epoch on {args.n_stars:.0e} stars = {cpu:.1f} CPU s ({args.threads} thread(s)), so a member of "
              f"{args.epochs} epochs costs ~{args.epochs * cpu / 60:.0f} CPU min")
    if pub:
        epochs = [len(load_nflows(pub_dir, s, rescaling=UNITS)[1]) for s in pub]
        print(f"  published: {np.mean(epochs):.0f} epochs on average (min {min(epochs)}, max {max(epochs)}) on 1e6 stars each (cost not published)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-stars", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--transform", choices=["affine", "spline"], default="affine")
    ap.add_argument("--velocities", type=int, default=1000)
    ap.add_argument("--fit-positions", type=int, default=4000, help="random positions of the potential fit")
    ap.add_argument("--fit-velocities", type=int, default=16, help="velocities (of the nearest catalogue stars) per position of the potential fit")
    ap.add_argument("--l-max", type=int, nargs="+", default=[4, 2, 0],
                    help="highest spherical-harmonic degrees of the fitted potentials (one row each; 0 = spherical, reference only)")
    ap.add_argument("--n-radial", type=int, default=12, help="radial B-splines of the fitted potential")
    ap.add_argument("--kinds", nargs="+", default=["isotropic", "anisotropic"])
    ap.add_argument("--published", default="../shared/data/hernquistflows_published")
    ap.add_argument("--published-members", type=int, default=30)
    ap.add_argument("--out", default="out/flows_hernquist")
    ap.add_argument("--no-train", action="store_true", help="evaluate only the members that already finished")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="train members as Dask tasks on this many local workers")
    ap.add_argument("--memory-check", action="store_true", help="peak RSS of one call on the whole published ensemble DF")
    ap.add_argument("--cost-probe", action="store_true", help="time one training epoch (CPU seconds) to project member costs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = grids(args.velocities)
    client = None
    if args.workers and not args.no_train:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, dashboard_address=None))
    for kind in args.kinds:
        run_kind(kind, args, g, client)


if __name__ == "__main__":
    main()
