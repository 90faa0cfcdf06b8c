"""The SBI stages of a pipeline file: train an NPE ensemble, calibrate it, apply it to an observation.

Reads the ``[sbi]`` section next to the core sections (``pipelines/gaussian_fields_sbi.toml`` is an
example); paths are relative to the pipeline file. Outputs, all in ``[sbi] output``:

- ``npe_seed<N>.pt``: one checkpoint per ensemble member (:func:`~popstore.estimators.sbi.train_npe`);
- ``calibration_seed<N>.nc/.png`` and ``calibration_ensemble.nc/.png``: the calibration report of each
  member and of the ensemble on the test split (:mod:`popstore.estimators.calibration`);
- ``posterior_<name>.nc/.png/.csv``: posterior draws of an observed store in physical units, a corner
  plot, and medians with 68% and 95% intervals.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
import torch
import xarray as xr

from popstore.compat import check_compatible
from popstore.errors import UserError
from popstore.estimators.calibration import calibration_report, save_report
from popstore.estimators.sbi import (
    NPEConfig, ParameterSpace, load_ensemble, load_posterior, member_path, posterior_draws, train_ensemble,
)
from popstore.pipeline import Pipeline, section_schema
from popstore.plotting import figure
from popstore.store import open_store
from popstore.torchdata import MapDataset, make_loader

# schema of this stage's section (entry point of the "popstore.pipeline_sections" group)
SBISection = section_schema(
    "sbi", NPEConfig, output=(str, ...), seeds=(Optional[list[int]], None),
    parallel=(Optional[Literal["sequential", "dask"]], None), n_draws=(Optional[int], None),
    n_test=(Optional[int], None), resources=(Optional[dict[str, float]], None),
)


def npe_config(section: dict) -> NPEConfig:
    """The :class:`NPEConfig` fields of an ``[sbi]`` section."""
    names = {f.name for f in fields(NPEConfig)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in section.items() if k in names}
    return NPEConfig(**kw)


def _members(pipe: Pipeline) -> list[Path]:
    sec = pipe.section("sbi")
    return [member_path(pipe.path_of("sbi", "output"), s) for s in sec.get("seeds", [0])]


def train(pipeline: str | Path, progress: bool = True) -> list[Path]:
    """Generate and split the store (resuming), then train the ensemble (one Dask task per member
    with ``parallel = "dask"``; finished members are kept)."""
    from popstore.cluster import cluster_client

    pipe = Pipeline.load(pipeline)
    sec = pipe.section("sbi")
    report = pipe.generate(progress=progress)
    if not report.complete:
        raise RuntimeError(f"generation incomplete: {report}")
    if "split" not in open_store(pipe.store_path).coords:
        pipe.split()
    cfg, seeds, out = npe_config(sec), sec.get("seeds", [0]), pipe.path_of("sbi", "output")
    if sec.get("parallel", "sequential") == "dask":
        with cluster_client(pipe.section("cluster")) as client:
            return train_ensemble(pipe.store_path, out, cfg, seeds, client, progress, sec.get("resources"))
    return train_ensemble(pipe.store_path, out, cfg, seeds, None, progress)


def held_out_pairs(store: str | Path, space: ParameterSpace, inputs: list[str], n: int | None = None):
    """``(theta, x)`` of the test split: theta in the inference space, at most ``n`` samples."""
    test = MapDataset(store, "test", inputs, list(space.names), normalize="none")
    if len(test) == 0:
        raise UserError(f"{store}: the test split is empty")
    x, theta = next(iter(make_loader(test, min(len(test), n or len(test)), shuffle=False)))
    return space.to_inference(theta.float()), x


def calibrate(pipeline: str | Path, progress: bool = True) -> pd.DataFrame:
    """Calibration report of every member and of the ensemble; returns the summary table."""
    pipe = Pipeline.load(pipeline)
    sec = pipe.section("sbi")
    paths = _members(pipe)
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no trained member at {missing[0]}; run 'popstore sbi train' first")
    out = pipe.path_of("sbi", "output")
    rows = {}
    candidates = [(f"seed{p.stem.removeprefix('npe_seed')}", [p]) for p in paths]
    if len(paths) > 1:
        candidates.append(("ensemble", paths))
    for name, group in candidates:
        posterior, space, inputs = load_ensemble(group) if len(group) > 1 else load_posterior(group[0])
        theta, x = held_out_pairs(pipe.store_path, space, inputs, sec.get("n_test"))
        rep = calibration_report(posterior, theta, x, space.names, sec.get("n_draws", 1000), progress=progress)
        save_report(rep, out / f"calibration_{name}")
        rows[name] = {"max |coverage - level|": rep.attrs["max_coverage_error"],
                      **{f"SBC KS p {k}": float(v) for k, v in zip(space.names, rep.sbc_ks_pvalue.values)},
                      "TARP ATC": rep.attrs["tarp_atc"], "n_test": rep.attrs["n_test"]}
    return pd.DataFrame(rows).T


def observed_posterior(pipeline: str | Path, observed: str | Path, n_draws: int = 10_000, seed: int = 0,
                       sample: int = 0) -> tuple[xr.Dataset, pd.DataFrame]:
    """Posterior of the ensemble given sample ``sample`` of an ``observed`` store made on the same bins
    (checked), in physical units; saved as ``posterior_<observed>.nc``, ``.png`` (corner) and ``.csv``."""
    pipe = Pipeline.load(pipeline)
    paths = _members(pipe)
    if not all(p.exists() for p in paths):
        raise UserError("the ensemble is not trained; run 'popstore sbi train' first")
    posterior, space, inputs = load_ensemble(paths) if len(paths) > 1 else load_posterior(paths[0])
    obs, sim = open_store(observed), open_store(pipe.store_path)
    check_compatible(obs, sim, inputs)
    if not 0 <= sample < obs.sizes["sample"]:
        raise UserError(f"sample {sample} is outside the observed store's {obs.sizes['sample']} samples")
    # channels as MapDataset stacks them: each variable's dims before its last two folded in, in order
    x = torch.as_tensor(np.concatenate([np.asarray(obs[v].isel(sample=sample).values, dtype=np.float32)
                                        .reshape(-1, *obs[v].shape[-2:]) for v in inputs]))[None]
    draws = space.to_physical(torch.as_tensor(posterior_draws(posterior, x, n_draws, seed)[:, 0])).numpy()
    ds = xr.Dataset({n: ("draw", draws[:, i], {k: sim[n].attrs.get(k, "") for k in ("units", "long_name")})
                     for i, n in enumerate(space.names)},
                    attrs={"observed": str(observed), "sample": sample, "members": [str(p) for p in paths]})
    q = np.quantile(draws, [0.025, 0.16, 0.5, 0.84, 0.975], axis=0)
    table = pd.DataFrame(q.T, index=list(space.names), columns=["2.5%", "16%", "median", "84%", "97.5%"])
    stem = pipe.path_of("sbi", "output") / f"posterior_{Path(str(observed)).stem}"
    ds.to_netcdf(stem.with_suffix(".nc"))
    table.to_csv(stem.with_suffix(".csv"))
    corner_plot(ds, stem.with_suffix(".png"))
    return ds, table


def corner_plot(draws: xr.Dataset, path: str | Path) -> Path:
    """Pairwise 2D histograms and 1D marginals of posterior ``draws`` (one variable per parameter)."""
    names = list(draws.data_vars)
    n = len(names)
    fig, axes = figure(n, n, figsize=(2.6 * n, 2.6 * n), squeeze=False)
    for i, yi in enumerate(names):
        for j, xj in enumerate(names):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
            elif i == j:
                ax.hist(draws[xj].values, bins=40, color="C0", histtype="step")
                for q in np.quantile(draws[xj].values, [0.16, 0.5, 0.84]):
                    ax.axvline(q, color="k", ls=":", lw=1)
                ax.set_yticks([])
            else:
                ax.hist2d(draws[xj].values, draws[yi].values, bins=40, cmap="Blues")
            if i == n - 1:
                units = draws[xj].attrs.get("units", "")
                ax.set_xlabel(xj + (f" [{units}]" if units not in ("", "1") else ""))
            if j == 0 and i > 0:
                ax.set_ylabel(yi)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
