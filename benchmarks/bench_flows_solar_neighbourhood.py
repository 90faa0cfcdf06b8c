"""Solar-neighbourhood mock generation: serial loop vs popstore.generate on a Dask LocalCluster.

Prints the wall time of ``--chunks`` chunks of ``--stars`` stars written
(a) by a plain serial loop over ``simulate`` (no store), (b) by
``popstore.generate`` into one Zarr store with ``--workers`` single-threaded
Dask workers (cluster start-up included), and their ratio; the cost of the
leapfrog evolution per star per Myr; energy conservation over ``--time-myr``;
how many stars fall within 1 kpc of the Sun (the flows' training set); and
the equilibrium floor of the mock: CBE accelerations of the exact generating
DF (Staeckel-action qDFs, and the old epicyclic ones) vs the potential.

Run:  nice -n 10 .venv/bin/python benchmarks/bench_flows_solar_neighbourhood.py --chunks 4 --stars 10000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import popstore
from popstore.cluster import cluster_client
from popstore.galaxy.dynamics.acceleration import cbe_acceleration
from popstore.galaxy.dynamics.catalogue import catalogue_arrays
from popstore.galaxy.dynamics.orbits import leapfrog
from popstore.galaxy.dynamics.quasi_isothermal import QuasiIsothermalMixture, Selection
from popstore.simulators import get_simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--stars", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-myr", type=float, default=100.0)
    ap.add_argument("--phi-max", type=float, default=0.15, help="azimuthal wedge half-opening [rad]")
    ap.add_argument("--floor-stars", type=int, default=5000, help="stars near the Sun for the equilibrium floor")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sim = get_simulator("solar_neighbourhood", n_stars=args.stars, phi_max=args.phi_max)
    params = pd.DataFrame({"kick_vz": [20.0] * args.chunks, "time_myr": [args.time_myr] * args.chunks})

    t = time.perf_counter()
    for i, row in enumerate(params.to_dict("records")):
        sim.simulate(row, i)
    serial = time.perf_counter() - t
    print(f"serial simulate, {args.chunks} chunks x {args.stars} stars, {args.time_myr:g} Myr: {serial:.1f} s")

    tmp = Path(tempfile.mkdtemp())
    try:
        t = time.perf_counter()
        with cluster_client({"kind": "local", "n_workers": args.workers}) as c:
            report = popstore.generate(sim, params, tmp / "sn.zarr", client=c, samples_per_chunk=1, progress=False)
        dask = time.perf_counter() - t
        print(f"popstore.generate, {args.workers} Dask workers, into one store: {dask:.1f} s ({report})")
        print(f"ratio serial / generate: {serial / dask:.2f} (cluster start-up included; CPU shared with other jobs)")
        x, _ = catalogue_arrays(popstore.open_store(tmp / "sn.zarr"))
    finally:
        shutil.rmtree(tmp)

    per = serial / (args.chunks * args.stars * max(args.time_myr, 1e-9))
    print(f"evolution + sampling cost: {1e6 * per:.2f} us per star per Myr (dt = {sim.dt_myr} Myr)")
    pot = sim.mixture.potential
    x0, v0, _ = sim.mixture.sample(args.stars, np.random.default_rng(0), sim.selection)
    x1, v1 = leapfrog(pot.acceleration, x0, v0, args.time_myr, sim.dt_myr)
    energy = lambda x, v: pot.potential(torch.tensor(x)).numpy() + 0.5 * (v**2).sum(1)
    de = np.abs(energy(x1, v1) / energy(x0, v0) - 1)
    print(f"|dE/E| after {args.time_myr:g} Myr: median {np.median(de):.1e}, 99th percentile {np.percentile(de, 99):.1e}, max {de.max():.1e}")
    near = np.linalg.norm(x - np.array([8.0, 0, 0]), axis=1) < 1.0
    print(f"stars within 1 kpc of the Sun: {near.sum()} of {len(x)} ({100 * near.mean():.2f}%)")

    # floor of the mock: CBE accelerations of the exact generating qDF against the potential
    # (Staeckel actions: the default; epicyclic actions: the old, ~6% out-of-equilibrium DF, for comparison)
    local_sel = Selection(7.0, 9.0, 1.0, args.phi_max)
    for actions in ("staeckel", "epicyclic"):
        mix = QuasiIsothermalMixture(sim.mixture.populations, actions=actions)
        t = time.perf_counter()
        x0, v0, _ = mix.sample(args.floor_stars, np.random.default_rng(1), local_sel)
        print(f"{actions} qDF: {args.floor_stars} stars in R = 7..9 kpc, |z| < 1 kpc sampled in {time.perf_counter() - t:.1f} s")
        local = v0[np.linalg.norm(x0 - np.array([8.0, 0, 0]), axis=1) < 1.0]
        for label, pos in (("R = 7.5..8.5 kpc, z = 0", np.c_[np.linspace(7.5, 8.5, 11), np.zeros(11), np.zeros(11)]),
                           ("R = 8 kpc, |z| = 0.1 kpc", np.array([[8.0, 0, 0.1], [8.0, 0, -0.1]])),
                           ("R = 8 kpc, |z| = 0.5 kpc", np.array([[8.0, 0, 0.5], [8.0, 0, -0.5]]))):
            vel = local[np.random.default_rng(2).integers(len(local), size=(len(pos), 1000))]
            acc = cbe_acceleration(mix.log_df, torch.tensor(pos), torch.tensor(vel)).numpy()
            true = pot.acceleration(torch.tensor(pos)).numpy()
            err = np.linalg.norm(acc - true, axis=1) / np.linalg.norm(true, axis=1)
            print(f"  exact {actions} qDF CBE acceleration vs potential at {label}: median error {100 * np.median(err):.2f}%, "
                  f"a_R ratio {np.median(acc[:, 0] / true[:, 0]):.4f}" + (f", a_z ratio {np.median(acc[:, 2] / true[:, 2]):.4f}" if abs(pos[0, 2]) > 0 else ""))

if __name__ == "__main__":
    main()
