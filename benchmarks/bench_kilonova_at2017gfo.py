"""GW170817's binary from the AT2017gfo light curve, with DU17 and with its emulator; and an honest speed table.

Needs the emulator of ``pipelines/kilonova_at2017gfo.toml``:

    popstore generate pipelines/kilonova_at2017gfo.toml
    popstore kilonova train pipelines/kilonova_at2017gfo.toml
    nice -n 10 .venv/bin/python benchmarks/bench_kilonova_at2017gfo.py [--steps 4000] [--out out/kilonova_at2017gfo]

Prints and writes (under ``--out``):

1. the photometry (``read_photometry``) and a check that the explicit extinction
   ``A_band = R_band E(B-V)`` turns the raw file into the extinction-corrected one;
2. the posterior of (m1, m2, Lambda1, Lambda2) with DU17 itself and with the
   emulator in its place, same data, prior and likelihood (``posterior_du17.nc``,
   ``posterior_emulator.nc``); medians and 68% intervals of chirp mass, mass
   ratio, Lambda-tilde and DU17 ejecta mass next to the published GW170817
   values; the shift of the emulator's medians in units of the DU17 posterior's
   width (half its 16-84% interval);
3. ``corner.png`` and ``predictive.png`` (data with posterior-predictive curves);
4. seconds per light curve and per 100 curves: DU17 per binary, DU17 vectorised,
   the emulator's central curve and 100 emulator draws per binary; and the cost
   of one likelihood evaluation of 32 walkers with each model.

Everything runs on one core (torch and numpy single-threaded) in one process.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from popstore.estimators.emulator import CurveEmulator  # noqa: E402
from popstore.kilonova.inference import (  # noqa: E402
    DU17Photometry,
    EmulatorPhotometry,
    LikelihoodSettings,
    Prior,
    SamplerSettings,
    fit,
    log_posterior_fn,
    median_shift,
)
from popstore.kilonova.inference_plots import plot_corner, plot_predictive, predictive_grid  # noqa: E402
from popstore.kilonova.params import LABELS, binary_table  # noqa: E402
from popstore.kilonova.photometry import AT2017GFO_EBV, Observer, extinction, read_photometry  # noqa: E402
from popstore.kilonova.workflow import speed_table  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Published GW170817 / AT2017gfo values as (low, value, high); value None: an interval only.
#: chirp mass: source frame, 1.186 +- 0.001 Msun (Abbott et al. 2019, PRX 9, 011001, table I; 2017 PRL 119, 161101);
#: mass ratio: 0.73-1.00, 90% (low-spin prior, Abbott et al. 2019);
#: Lambda-tilde: 300 +420 -230, 90% HPD (low-spin prior, Abbott et al. 2019);
#: ejecta mass (total, all components) from kilonova fits: 0.01 blue + 0.04 red = 0.05 Msun (Cowperthwaite et al.
#: 2017, ApJL 848, L17) and 0.020 blue + 0.047 purple + 0.011 red = 0.078 Msun (Villar et al. 2017, ApJL 851, L21).
PUBLISHED = {
    "chirp_mass": (1.185, 1.186, 1.187),
    "mass_ratio": (0.73, None, 1.00),
    "lambda_tilde": (70.0, 300.0, 720.0),
    "ejecta_mass": (0.05, None, 0.078),
}
QUANTITIES = ("chirp_mass", "mass_ratio", "lambda_tilde", "ejecta_mass", "ejecta_velocity", "m1", "m2")


def summary(posteriors: dict, names) -> pd.DataFrame:
    rows = {}
    for n in names:
        row = {}
        for key, post in posteriors.items():
            lo, med, hi = np.percentile(post[n].values, [16, 50, 84])
            row[key] = f"{med:.4g} [{lo:.4g}, {hi:.4g}]"
        p = PUBLISHED.get(n)
        row["published"] = "" if p is None else (f"{p[1]:.4g} [{p[0]:.4g}, {p[2]:.4g}]" if p[1] is not None
                                                  else f"[{p[0]:.4g}, {p[2]:.4g}]")
        rows[n] = row
    return pd.DataFrame(rows).T


def setup(args: argparse.Namespace, emu: CurveEmulator):
    """Data, observer, prior, likelihood settings and the two forward models."""
    data = read_photometry(args.data)
    observer = Observer(args.distance, ebv=0.0)  # the corrected file: Galactic extinction already removed
    models = {"DU17": DU17Photometry(data, observer), "emulator": EmulatorPhotometry(data, emu, observer)}
    return data, observer, Prior(), LikelihoodSettings(args.floor, args.miss), models


def posterior_section(args: argparse.Namespace, emu: CurveEmulator) -> None:
    data, observer, prior, lik, models = setup(args, emu)
    print(f"{args.data.name}: {data.sizes['obs']} points, {int(data['upper_limit'].sum())} upper limits, "
          f"{data['time'].values.min():.2f}-{data['time'].values.max():.2f} d, bands "
          f"{sorted(set(data['band'].values.tolist()))}")
    raw = read_photometry(args.raw).to_dataframe().reset_index(drop=True)
    cor = data.to_dataframe().reset_index(drop=True)
    both = raw.merge(cor, on=["time", "band"], suffixes=("_raw", "_cor"))
    resid = both["mag_raw"] - extinction(both["band"].tolist(), AT2017GFO_EBV) - both["mag_cor"]
    print(f"extinction: raw - R_band * E(B-V={AT2017GFO_EBV}) - corrected, {len(both)} common points: "
          f"max |diff| = {np.abs(resid).max():.4f} mag")

    print(f"distance {args.distance} Mpc: distance modulus {observer.distance_modulus:.3f} mag; "
          f"likelihood floor {args.floor} mag, miss {args.miss} mag")
    cfg = SamplerSettings(n_walkers=args.walkers, n_steps=args.steps, burn=args.burn)
    posteriors = {}
    for key, model in models.items():
        post = fit(model, data, prior, lik, cfg, attrs={"model": key, "distance_mpc": args.distance, "ebv": 0.0})
        path = args.out / f"posterior_{key.lower()}.nc"
        post.to_netcdf(path)
        posteriors[key] = post
        print(f"{key}: {post.sizes['draw']} samples in {post.attrs['wall_s']:.1f} s, acceptance "
              f"{post.attrs['acceptance']:.2f}, autocorrelation {post.attrs['autocorr_steps']:.0f} steps -> {path}")

    print("\nposterior medians [16%, 84%] and published values (README: sources)")
    print(summary(posteriors, QUANTITIES).to_string())
    shift = median_shift(posteriors["DU17"], posteriors["emulator"], QUANTITIES)
    print("\n(emulator median - DU17 median) / DU17 posterior width (half the 16-84% interval):")
    print("  " + "  ".join(f"{k} {v:+.2f}" for k, v in shift.items()))
    best = {k: float(p["log_posterior"].max()) for k, p in posteriors.items()}
    print("best ln L: " + ", ".join(f"{k} {v:.1f}" for k, v in best.items())
          + f"  ({data.sizes['obs']} points; DU17 at its best fit is a poor description of AT2017gfo)")

    print(f"\n{plot_corner(posteriors, ['chirp_mass', 'mass_ratio', 'lambda_tilde', 'ejecta_mass'], args.out / 'corner.png', PUBLISHED)}")
    grid = predictive_grid(data)
    print(plot_predictive(data, {"DU17": DU17Photometry(grid, observer), "emulator": EmulatorPhotometry(grid, emu, observer)},
                          posteriors, args.out / "predictive.png"))



def speed_section(args: argparse.Namespace, emu: CurveEmulator) -> None:
    data, _, prior, lik, models = setup(args, emu)
    table = binary_table(args.n_timing, seed=5)
    speed = speed_table(emu, table)
    print(f"\nspeed, one core, {args.n_timing} binaries, {len(emu.coords['band'])} bands x {len(emu.coords['time'])} times:")
    print(speed.to_string(float_format=lambda v: f"{v:.3e}"))
    x = prior.sample(args.walkers, 1)
    for key, model in models.items():
        lp = log_posterior_fn(model, data, prior, lik)
        t0 = time.perf_counter()
        for _ in range(20):
            lp(x)
        print(f"one likelihood evaluation of {args.walkers} walkers with {key}: {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")
    central, draws = speed.loc["emulator central curve (T=0)"], speed.loc["emulator, 100 draws per binary"]
    for row in ("DU17, one binary per call", "DU17 vectorised"):
        print(f"SUMMARY {row}: emulator central curve is {speed.loc[row, 's per curve'] / central['s per curve']:.3g}x "
              f"as fast per curve; 100 draws per binary are "
              f"{speed.loc[row, 's per binary prediction'] / draws['s per binary prediction']:.3g}x as fast per "
              "binary prediction (>1: emulator faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "at2017gfo_photometry_extinction_corrected.dat")
    ap.add_argument("--raw", type=Path, default=DATA / "at2017gfo_photometry.dat")
    ap.add_argument("--out", type=Path, default=Path("out/kilonova_at2017gfo"))
    ap.add_argument("--emulator", type=Path, help="default: OUT/emulator.pt")
    ap.add_argument("--distance", type=float, default=40.0, help="Mpc")
    ap.add_argument("--floor", type=float, default=0.5, help="error floor [mag]")
    ap.add_argument("--miss", type=float, default=2.0, help="residual charged where DU17 is undefined [mag]")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--burn", type=int, default=1000)
    ap.add_argument("--walkers", type=int, default=32)
    ap.add_argument("--n-timing", type=int, default=1000)
    ap.add_argument("--speed-only", action="store_true", help="only the speed table (step 4)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    emu = CurveEmulator.load(args.emulator or args.out / "emulator.pt")
    if not args.speed_only:
        posterior_section(args, emu)
    speed_section(args, emu)


if __name__ == "__main__":
    main()
