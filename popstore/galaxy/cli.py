"""``popstore flows {missing-rv,train,train-missing-rv,accelerations,figures} PIPELINE.toml``.

Phase-space mocks, flow ensembles and CBE accelerations (An et al. 2021;
Naik et al. 2021); see :mod:`popstore.galaxy.workflow` for the
pipeline sections and ``pipelines/flows_*.toml`` for examples. Figures are
drawn from netCDF caches next to them; ``--recompute`` refreshes a cache.
"""

from __future__ import annotations

import argparse

from popstore.cli import add_stage_commands


def _missing_rv(args: argparse.Namespace) -> int:
    import numpy as np

    from popstore.galaxy.dynamics.catalogue import catalogue_arrays, missing_rv_subset
    from popstore.pipeline import Pipeline
    from popstore.store import open_store

    pipe = Pipeline.load(args.pipeline)
    sec = pipe.section("missing_rv")
    x, v = catalogue_arrays(open_store(pipe.store_path))
    sub = missing_rv_subset(x, v, np.random.default_rng(int(sec.get("seed", 0))), tuple(sec.get("r_window", (7.0, 9.0))),
                            float(sec.get("missing_fraction", 0.5)), float(sec.get("sun_x", 8.0)))
    out = pipe.path_of("missing_rv", "path")
    sub.to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    print(f"{out}: {sub.sizes['star']} stars in R = {sub.attrs['r_window_kpc']} kpc, {int(sub.has_vlos.sum())} with v_los")
    return 0


def _train(args: argparse.Namespace) -> int:
    from popstore.galaxy.workflow import train
    from popstore.pipeline import Pipeline

    for r in train(Pipeline.load(args.pipeline), progress=not args.quiet):
        print(f"seed {r.seed}: {len(r.losses)} epochs, best epoch {r.best_epoch}, checkpoint {r.checkpoint}")
    return 0


def _train_missing_rv(args: argparse.Namespace) -> int:
    from popstore.galaxy.workflow import train_missing_rv_flows
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    train_missing_rv_flows(pipe, progress=not args.quiet)
    print(f"factorised DF n(x) p(v | x): {pipe.path_of('missing_rv', 'output')}")
    return 0


def _accelerations(args: argparse.Namespace) -> int:
    import torch
    import xarray as xr

    from popstore.galaxy.figures import cached_figure, draw_accelerations
    from popstore.galaxy.workflow import (
        acceleration_data,
        relative_errors,
    )
    from popstore.pipeline import Pipeline

    pipe = Pipeline.load(args.pipeline)
    torch.set_num_threads(int(pipe.section("flows").get("threads", 1)))
    png = cached_figure(pipe.path_of("accelerations", "figure"), lambda: acceleration_data(pipe, not args.quiet),
                        draw_accelerations, args.recompute)
    with xr.open_dataset(png.with_suffix(".nc"), engine="h5netcdf") as ds:
        ds = ds.load()
    names = {"median_3d": "3D median %", "p90_3d": "3D p90 %", "max_3d": "3D max %", "median_x": "x-comp median %", "radial_bias": "radial bias %"}
    print("relative to the true acceleration (potential); 3D: |a - a_true|/|a_true|, x-comp: |a_x/a_x,true - 1| "
          "(the papers' metric; theirs also uses linear radii and the f-weighted rows of 'ensemble_f_weighted'):")
    print((100 * relative_errors(ds)).rename(columns=names).to_string(float_format="%.2f"))
    if "acc_exact_df" in ds:
        print("relative to the CBE acceleration of the exact generating DF (the flows' own error):")
        print((100 * relative_errors(ds, "acc_exact_df")).rename(columns=names).to_string(float_format="%.2f"))
    print(png)
    return 0


def _figures(args: argparse.Namespace) -> int:
    import torch

    from popstore.galaxy.figures import (
        cached_figure,
        df_slice_data,
        draw_df_slice,
        draw_losses,
        loss_data,
    )
    from popstore.galaxy.workflow import ensemble, hernquist_model
    from popstore.pipeline import Pipeline
    from popstore.store import open_store

    pipe = Pipeline.load(args.pipeline)
    fsec, sec = pipe.section("flows"), pipe.section("figures")
    torch.set_num_threads(int(fsec.get("threads", 1)))
    seeds = [int(s) for s in fsec.get("seeds", [0])]
    print(cached_figure(pipe.path_of("figures", "losses"), lambda: loss_data(pipe.path_of("flows", "output"), seeds), draw_losses, args.recompute))

    def slice_data():
        ens = ensemble(pipe)
        fns = {"ensemble": ens.log_prob}
        ds = open_store(pipe.store_path)
        if ds.attrs["simulator"] == "hernquist":
            h, kind = hernquist_model(ds), pipe.section("simulator").get("config", {}).get("df", "isotropic")
            fns["exact"] = lambda p: h.log_df(p[:, :3], p[:, 3:], kind)
        return df_slice_data(fns, sec["slice_axes"], sec["slice_ranges"], sec["slice_fixed"], int(sec.get("slice_n", 120)))

    print(cached_figure(pipe.path_of("figures", "df_slice"), slice_data, draw_df_slice, args.recompute))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_stage_commands(subparsers, "flows", "normalising-flow DFs and CBE accelerations on a phase-space "
                             "catalogue store (made by 'popstore generate')", "flows_command", (
        ("missing-rv", _missing_rv, "write the missing-line-of-sight-velocity subset ([missing_rv] path)"),
        ("train", _train, "train the [flows] ensemble on the catalogue"),
        ("train-missing-rv", _train_missing_rv, "train the factorised DF n(x) p(v|x) on the [missing_rv] subset ([missing_rv] output)"),
        ("accelerations", _accelerations, "CBE accelerations vs truth: figure + cached data, error table"),
        ("figures", _figures, "training-loss and DF-slice figures (from cached data when present)"),
    ))
    for q in sub.choices.values():
        q.add_argument("--recompute", action="store_true", help="recompute cached figure data")
