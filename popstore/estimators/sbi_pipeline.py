"""The SBI stages of a pipeline file: train an NPE ensemble, calibrate it, apply it to an observation.

Reads the ``[sbi]`` section next to the core sections (``pipelines/gaussian_fields_sbi.toml`` is an
example); paths are relative to the pipeline file. Outputs, all in ``[sbi] output``:

- ``npe_seed<N>.pt``: one checkpoint per ensemble member (:func:`~popstore.estimators.sbi.train_npe`);
- ``calibration_seed<N>.nc/.png`` and ``calibration_ensemble.nc/.png``: the calibration report of each
  member and of the ensemble on the test split (:mod:`popstore.estimators.calibration`);
- ``posterior_<name>.nc/.png/.csv``: posterior draws of an observed store in physical units, a corner
  plot, and medians with 68% and 95% intervals;
- ``predictive_<name>[_round<R>].zarr/.png/.csv``: a posterior predictive check: the pipeline's simulator
  run at posterior draws (a store), the observed maps beside the predicted ones, and the predictive
  distribution of each map's total against the observed total;
- ``round<R>/``: truncated sequential NPE (:mod:`popstore.estimators.tsnpe`, the ``[sbi.rounds]`` table):
  each round's parameter table (``parameters.csv``), its store (``store.zarr``), its members, and
  ``round.json`` (simulations, fraction of the prior kept); ``rounds.csv`` summarises the rounds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
import torch
import xarray as xr
from pydantic import Field

from popstore.compat import check_compatible
from popstore.errors import UserError
from popstore.estimators.calibration import calibration_report, save_report
from popstore.estimators.sbi import (
    NPEConfig, ParameterSpace, load_ensemble, member_path, posterior_draws, select_members, train_ensemble,
)
from popstore.estimators.tsnpe import (
    RoundsConfig, load_or_draw, prior_fraction, proposal_table, round_seeds, truncated_prior,
)
from popstore.pipeline import Pipeline, section_schema
from popstore.plotting import figure
from popstore.store import open_store
from popstore.torchdata import MapDataset, make_loader

# schema of this stage's section (entry point of the "popstore.pipeline_sections" group)
RoundsSection = section_schema("rounds", RoundsConfig, observed=(str, ...))
SBISection = section_schema(
    "sbi", NPEConfig, output=(str, ...), seeds=(Optional[list[int]], None),
    parallel=(Optional[Literal["sequential", "dask"]], None), n_draws=(Optional[int], None),
    n_test=(Optional[int], None), resources=(Optional[dict[str, float]], None),
    drop_members_worse_than=(Optional[float], Field(None, ge=0)), rounds=(Optional[RoundsSection], None),
)


def npe_config(section: dict) -> NPEConfig:
    """The :class:`NPEConfig` fields of an ``[sbi]`` section."""
    names = {f.name for f in fields(NPEConfig)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in section.items() if k in names}
    return NPEConfig(**kw)


def _round_dir(pipe: Pipeline, round: int) -> Path:
    out = pipe.path_of("sbi", "output")
    return out if round == 0 else out / f"round{round}"


def _members(pipe: Pipeline, round: int = 0) -> list[Path]:
    """Checkpoints of the ensemble of TSNPE ``round`` (0: the amortised ensemble of ``popstore sbi train``)."""
    return [member_path(_round_dir(pipe, round), s) for s in pipe.section("sbi").get("seeds", [0])]


def _ensemble(pipe: Pipeline, round: int = 0) -> tuple[list[Path], list[Path]]:
    """``(kept, dropped)`` members of round ``round``'s ensemble under ``[sbi] drop_members_worse_than``
    (nats of best validation loss above the best member's; :func:`~popstore.estimators.sbi.select_members`)."""
    return select_members(_members(pipe, round), pipe.section("sbi").get("drop_members_worse_than"))


def _check_sample(observed: xr.Dataset, sample: int) -> None:
    if not 0 <= sample < observed.sizes["sample"]:
        raise UserError(f"sample {sample} is outside the observed store's {observed.sizes['sample']} samples")


def _applied(pipe: Pipeline, observed: str | Path, sample: int, round: int):
    """The round-``round`` members kept by ``[sbi] drop_members_worse_than``, their ensemble ``(posterior, space,
    inputs)``, and the ``observed`` and training stores, after checking that every member exists, the sample is in
    range and the bins agree."""
    if not all(p.exists() for p in _members(pipe, round)):
        raise UserError(f"the round-{round} ensemble is not trained; run 'popstore sbi "
                        f"{'train' if round == 0 else 'rounds'}' first")
    paths, _ = _ensemble(pipe, round)
    obs, sim = open_store(observed), open_store(pipe.store_path)
    _check_sample(obs, sample)
    ensemble = load_ensemble(paths)
    check_compatible(obs, sim, ensemble[2])
    return paths, ensemble, obs, sim


def observation(observed: xr.Dataset, inputs: list[str], sample: int = 0) -> torch.Tensor:
    """Sample ``sample`` of an observed store as the network reads it: ``(1, C, H, W)``, each variable's dims
    before its last two folded into channels, in order (as :class:`~popstore.MapDataset` stacks them)."""
    _check_sample(observed, sample)
    return torch.as_tensor(np.concatenate([np.asarray(observed[v].isel(sample=sample).values, dtype=np.float32)
                                           .reshape(-1, *observed[v].shape[-2:]) for v in inputs]))[None]


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
    """Calibration report of every member and of the ensemble (the members kept by ``[sbi]
    drop_members_worse_than``, named with the dropped ones in its report); returns the summary table."""
    pipe = Pipeline.load(pipeline)
    sec = pipe.section("sbi")
    paths = _members(pipe)
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no trained member at {missing[0]}; run 'popstore sbi train' first")
    out = pipe.path_of("sbi", "output")
    rows = {}
    kept, dropped = _ensemble(pipe)
    candidates = [(f"seed{p.stem.removeprefix('npe_seed')}", [p]) for p in paths]
    if len(paths) > 1:
        candidates.append(("ensemble", kept))
    for name, group in candidates:
        posterior, space, inputs = load_ensemble(group)
        theta, x = held_out_pairs(pipe.store_path, space, inputs, sec.get("n_test"))
        rep = calibration_report(posterior, theta, x, space.names, sec.get("n_draws", 1000), progress=progress)
        rep.attrs.update(members=" ".join(p.name for p in group),
                         dropped_members=" ".join(p.name for p in dropped) if name == "ensemble" else "")
        save_report(rep, out / f"calibration_{name}")
        rows[name] = {"max |coverage - level|": rep.attrs["max_coverage_error"],
                      **{f"SBC KS p {k}": float(v) for k, v in zip(space.names, rep.sbc_ks_pvalue.values)},
                      "TARP ATC": rep.attrs["tarp_atc"], "n_test": rep.attrs["n_test"], "members": len(group)}
    return pd.DataFrame(rows).T


def observed_posterior(pipeline: str | Path, observed: str | Path, n_draws: int = 10_000, seed: int = 0,
                       sample: int = 0, round: int = 0) -> tuple[xr.Dataset, pd.DataFrame]:
    """Posterior of the ensemble of TSNPE ``round`` (0: ``popstore sbi train``'s) given sample ``sample`` of
    an ``observed`` store made on the same bins (checked), in physical units; saved as
    ``posterior_<observed>[_round<R>].nc``, ``.png`` (corner) and ``.csv``."""
    pipe = Pipeline.load(pipeline)
    paths, (posterior, space, inputs), obs, sim = _applied(pipe, observed, sample, round)
    x = observation(obs, inputs, sample)
    draws = space.to_physical(torch.as_tensor(posterior_draws(posterior, x, n_draws, seed)[:, 0])).numpy()
    ds = xr.Dataset({n: ("draw", draws[:, i], {k: sim[n].attrs.get(k, "") for k in ("units", "long_name")})
                     for i, n in enumerate(space.names)},
                    attrs={"observed": str(observed), "sample": sample, "round": round,
                           "members": [str(p) for p in paths]})
    table = intervals(ds)
    stem = pipe.path_of("sbi", "output") / (f"posterior_{Path(str(observed)).stem}" + (f"_round{round}" if round else ""))
    ds.to_netcdf(stem.with_suffix(".nc"))
    table.to_csv(stem.with_suffix(".csv"))
    corner_plot(ds, stem.with_suffix(".png"))
    return ds, table


def posterior_predictive(pipeline: str | Path, observed: str | Path, n_sims: int = 100, seed: int = 0,
                         sample: int = 0, round: int = 0, progress: bool = True) -> pd.DataFrame:
    """Posterior predictive check of an ``observed`` store: ``n_sims`` simulations with the pipeline's
    simulator at draws of the round-``round`` posterior (a store, made on the pipeline's cluster and
    resumable), a figure of the observed maps beside the predicted ones, and a table of each map's
    observed total against its predictive distribution (:func:`popstore.plotting.predictive_totals`)."""
    from popstore.plotting import plot_predictive, predictive_totals

    pipe = Pipeline.load(pipeline)
    _, (posterior, space, inputs), obs, _ = _applied(pipe, observed, sample, round)
    theta = torch.as_tensor(posterior_draws(posterior, observation(obs, inputs, sample), n_sims, seed)[:, 0])
    stem = pipe.path_of("sbi", "output") / (f"predictive_{Path(str(observed)).stem}" + (f"_round{round}" if round else ""))
    report = pipe.generate(progress=progress, params=space.table(theta, pipe.section("priors").get("fixed", {})),
                           path=stem.with_suffix(".zarr"), seed=seed)
    if not report.complete:
        raise RuntimeError(f"posterior predictive simulations incomplete ({report}); rerun to resume")
    predicted = open_store(stem.with_suffix(".zarr"))
    maps = [v for v in inputs if obs[v].ndim >= 3]
    plot_predictive(obs, predicted, maps, sample, stem.with_suffix(".png"))
    table = predictive_totals(obs, predicted, maps, sample)
    table.to_csv(stem.with_suffix(".csv"))
    return table


def intervals(draws: xr.Dataset) -> pd.DataFrame:
    """Median and the 68% and 95% central intervals of each parameter's posterior ``draws``."""
    q = np.quantile(np.stack([draws[n].values for n in draws.data_vars], 1), [0.025, 0.16, 0.5, 0.84, 0.975], axis=0)
    return pd.DataFrame(q.T, index=list(draws.data_vars), columns=["2.5%", "16%", "median", "84%", "97.5%"])


def rounds(pipeline: str | Path, progress: bool = True) -> pd.DataFrame:
    """Truncated sequential NPE on the ``[sbi.rounds]`` observation: round 0 as ``popstore sbi train``, then
    ``n_rounds`` rounds of truncated-prior simulations and retraining on every round's store. Resumes
    where a killed run stopped. Returns (and writes to ``rounds.csv``) one row per round: the simulations
    trained on, the fraction of the prior kept, and the observation's posterior median and 68% interval."""
    from popstore.cluster import cluster_client
    from popstore.splits import split

    pipe = Pipeline.load(pipeline)
    sec = pipe.section("sbi")
    if "rounds" not in sec:
        raise UserError(f"{pipe.path}: TSNPE needs an [sbi.rounds] table (n_rounds, simulations_per_round, observed)")
    rsec = dict(sec["rounds"])
    observed = pipe.resolve(rsec.pop("observed"), "[sbi.rounds] observed")
    cfg = RoundsConfig(**rsec)
    obs = open_store(observed)
    _check_sample(obs, cfg.sample)  # before any work
    train(pipeline, progress)
    npe, seeds, st = npe_config(sec), sec.get("seeds", [0]), pipe.section("store")
    _, space, inputs = load_ensemble(_ensemble(pipe, 0)[0])
    check_compatible(obs, open_store(pipe.store_path), inputs)
    x_o = observation(obs, inputs, cfg.sample)
    fixed = pipe.section("priors").get("fixed", {})
    seeds_r, stores = round_seeds(st.get("seed", 0), cfg.n_rounds), [pipe.store_path]
    dask = sec.get("parallel", "sequential") == "dask"
    with cluster_client(pipe.section("cluster")) as client:
        for r in range(1, cfg.n_rounds + 1):
            d = _round_dir(pipe, r)
            stores.append(d / "store.zarr")
            if all(p.exists() for p in _members(pipe, r)):
                continue
            previous, space, _ = load_ensemble(_ensemble(pipe, r - 1)[0])
            torch.manual_seed(seeds_r[r])
            restricted = truncated_prior(previous, x_o, space, cfg.truncation_quantile, cfg.support_samples)
            table = load_or_draw(d / "parameters.csv", lambda: proposal_table(
                restricted, space, cfg.simulations_per_round, seeds_r[r], fixed))
            report = pipe.generate(client, progress, params=table, path=stores[-1], seed=seeds_r[r])
            if not report.complete:
                raise RuntimeError(f"round {r}: generation incomplete ({report}); rerun to resume")
            if "split" not in open_store(stores[-1]).coords:
                split(stores[-1], test=0.0, valid=pipe.section("split").get("valid", 0.1), seed=seeds_r[r])
            (d / "round.json").write_text(json.dumps({
                "round": r, "simulations": len(table), "prior_fraction": prior_fraction(restricted),
                "truncation": asdict(cfg), "observed": str(observed)}))
            train_ensemble(stores, d, npe, seeds, client if dask else None, progress, sec.get("resources"))
    rows = []
    for r in range(cfg.n_rounds + 1):
        ds, table = observed_posterior(pipeline, observed, sample=cfg.sample, round=r)
        info = json.loads((_round_dir(pipe, r) / "round.json").read_text()) if r else {"prior_fraction": 1.0}
        rows.append({"round": r, "simulations": sum(open_store(s).sizes["sample"] for s in stores[:r + 1]),
                     "prior_fraction": info["prior_fraction"],
                     **{f"{n} {c}": table.loc[n, c] for n in table.index for c in ("16%", "median", "84%")}})
    summary = pd.DataFrame(rows).set_index("round")
    summary.to_csv(pipe.path_of("sbi", "output") / "rounds.csv")
    return summary


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
