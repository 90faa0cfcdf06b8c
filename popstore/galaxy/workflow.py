"""Pipeline stages of the flow/acceleration workflow (``popstore flows ...``).

Sections of a pipeline file (see ``pipelines/flows_*.toml``):

- ``[simulator]``, ``[priors]``, ``[store]``, ``[cluster]`` as for any
  pipeline; the catalogue store is made by ``popstore generate``, with the
  exact label values in ``[priors.fixed]`` and ``n_samples`` chunks of
  ``n_stars`` each.
- ``[flows]``: :class:`~popstore.estimators.flows.FlowConfig` fields, plus
  ``output`` (directory of ``seed_<k>`` members), ``seeds``, ``rescaling``
  (``"hernquist"``: positions / 10 a, velocities / sqrt(2 G M / a), the
  papers' choice; ``"standard"``: mean and std), ``parallel``
  (``"sequential"`` or ``"dask"``: one task per seed on the ``[cluster]``,
  each needing the worker ``resources``, e.g. ``{GPU = 1}``; members that
  finished in an earlier run are not retrained), ``sampling``
  (``"shared"``, the default: every member trains on all selected stars;
  ``"bootstrap"`` or ``"disjoint"``: each member on its own resample or
  share, :func:`~popstore.estimators.flows_ensemble.member_rows`),
  ``threads`` (torch threads), ``sphere_radius`` (keep stars within this
  distance [kpc] of the Sun at ``(sun_x, 0, 0)``; solar neighbourhood).
- ``[missing_rv]``: ``path`` of the missing-line-of-sight-velocity subset
  (``popstore flows missing-rv``), ``output`` (directory of the factorised
  DF's ``positions/`` and ``velocities/`` ensembles, ``popstore flows
  train-missing-rv``; :mod:`popstore.galaxy.missing_rv`) and
  optional :class:`~popstore.estimators.flows.FlowConfig` fields that
  override those of ``[flows]`` for these flows.
- ``[accelerations]``: where to evaluate (Hernquist: ``radii`` =
  ``"geometric"``, popstore's grid, or ``"linear"``, the papers' radii and
  velocity design), the
  figure path and ``memory_budget`` (bytes of autograd graph at a time); a
  trained ``[missing_rv] output`` adds the factorised DF (``missing_rv``) to
  the comparison. Each member's gradients are computed once and mixed
  exactly into the ensemble's; ``ensemble_f_weighted`` is the same ensemble
  with the papers' f-weighted least squares. ``potential_fit = true``
  (Hernquist stores) adds ``ensemble_potential_fit``: one smooth potential
  fitted to the ensemble's CBE at ``fit_positions`` random positions (log-uniform
  radii over the evaluated range widened by 1.6 each way) x ``fit_velocities``
  velocities, ``fit_design = "neighbours"`` (those of the nearest catalogue stars, default) or
  ``"uniform_speed"`` (:func:`~popstore.galaxy.dynamics.potential_fit.fit_design`), basis ``n_radial`` x degree ``l_max``
  (``"cv"``: the degree 0-4 of smallest held-out CBE residual; :mod:`popstore.galaxy.dynamics.potential_fit`).
- ``[figures]``: paths of the loss and DF-slice figures and the slice definition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal, Optional, Union

import numpy as np
import pandas as pd
import torch
import xarray as xr

from popstore.cluster import cluster_client
from popstore.errors import UserError
from popstore.galaxy.dynamics.acceleration import (
    DEFAULT_MEMORY_BUDGET,
    PAPER_VELOCITIES,
    cbe_acceleration,
    cbe_terms,
    evaluation_velocities,
    mixture_terms,
    solve_cbe,
)
from popstore.galaxy.dynamics.catalogue import catalogue_arrays
from popstore.galaxy.dynamics.hernquist import Hernquist
from popstore.galaxy.dynamics.potential_fit import PotentialBasis, cross_validated_l_max, fit_design, fit_potential
from popstore.galaxy.dynamics.metrics import (
    error_summary,
    geometric_radii,
    on_x_axis,
    paper_radii,
)
from popstore.estimators.flows import FlowConfig
from popstore.estimators.flows_ensemble import (
    FlowEnsemble,
    load_ensemble,
    phase_space_log_df,
    train_ensemble,
)
from popstore.galaxy.missing_rv import load_missing_rv, train_missing_rv
from popstore.pipeline import Pipeline, section_schema
from popstore.store import open_store


Vector3 = tuple[float, float, float]
# schemas of this stage's sections (entry points of the "popstore.pipeline_sections" group)
FlowsSection = section_schema(
    "flows", FlowConfig, output=(str, ...), seeds=(Optional[list[int]], None), threads=(Optional[int], None),
    parallel=(Optional[Literal["sequential", "dask"]], None), rescaling=(Optional[Literal["standard", "hernquist"]], None),
    sphere_radius=(Optional[float], None), sun_x=(Optional[float], None),
    resources=(Optional[dict[str, float]], None), sampling=(Optional[Literal["shared", "bootstrap", "disjoint"]], None),
)
MissingRVSection = section_schema(
    "missing_rv", FlowConfig, path=(Optional[str], None), output=(Optional[str], None), seed=(Optional[int], None),
    seeds=(Optional[list[int]], None), r_window=(Optional[tuple[float, float]], None),
    missing_fraction=(Optional[float], None), sun_x=(Optional[float], None),
)
AccelerationsSection = section_schema(
    "accelerations", figure=(Optional[str], None), seed=(Optional[int], None), n_positions=(Optional[int], None),
    n_velocities=(Optional[int], None), r_min_over_a=(Optional[float], None), r_max_over_a=(Optional[float], None),
    start=(Optional[Vector3], None), stop=(Optional[Vector3], None),
    radii=(Optional[Literal["geometric", "linear"]], None), memory_budget=(Optional[float], None),
    potential_fit=(Optional[bool], None), fit_positions=(Optional[int], None), fit_velocities=(Optional[int], None),
    l_max=(Optional[Union[int, Literal["cv"]]], None), n_radial=(Optional[int], None),
    fit_design=(Optional[Literal["uniform_speed", "neighbours"]], None),
)
FiguresSection = section_schema(
    "figures", losses=(Optional[str], None), df_slice=(Optional[str], None), slice_axes=(Optional[list[str]], None),
    slice_ranges=(Optional[list[tuple[float, float]]], None), slice_fixed=(Optional[dict[str, float]], None),
    slice_n=(Optional[int], None),
)


def flow_config(section: Mapping[str, Any]) -> FlowConfig:
    """The :class:`FlowConfig` fields found in a ``[flows]`` section."""
    names = {f.name for f in fields(FlowConfig)}
    return FlowConfig(**{k: v for k, v in section.items() if k in names})


def hernquist_model(ds: xr.Dataset) -> Hernquist:
    """The Hernquist model of a ``hernquist`` catalogue store (labels of its first sample)."""
    return Hernquist(float(ds["mass"].values[0]), float(ds["scale_radius"].values[0]))


def training_data(pipe: Pipeline) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(n, 6) phase-space array of the selected stars and the rescaling of ``[flows]``."""
    sec = pipe.section("flows")
    ds = open_store(pipe.store_path)
    x, v = catalogue_arrays(ds)
    if "sphere_radius" in sec:
        sun = np.array([float(sec.get("sun_x", 8.0)), 0.0, 0.0])
        keep = np.linalg.norm(x - sun, axis=1) < float(sec["sphere_radius"])
        x, v = x[keep], v[keep]
    kind = sec.get("rescaling", "standard")
    if kind == "hernquist":
        h = hernquist_model(ds)
        scale = np.r_[[10 * h.scale_radius] * 3, [np.sqrt(2 * h.gm / h.scale_radius)] * 3]
        rescaling = (np.zeros(6), scale)
    elif kind == "standard":
        rescaling = None
    else:
        raise ValueError(f"[flows] rescaling must be 'hernquist' or 'standard', got {kind!r}")
    return np.hstack([x, v]), rescaling


def train(pipe: Pipeline, progress: bool = True) -> list:
    """Train the ``[flows]`` ensemble on the catalogue (sequentially or one Dask task per seed)."""
    sec = pipe.section("flows")
    torch.set_num_threads(int(sec.get("threads", 1)))
    data, rescaling = training_data(pipe)
    cfg = flow_config(sec)
    seeds = [int(s) for s in sec.get("seeds", [0])]
    out = pipe.path_of("flows", "output")
    sampling = sec.get("sampling", "shared")
    if sec.get("parallel", "sequential") == "dask":
        with cluster_client(pipe.section("cluster")) as c:
            return train_ensemble(data, cfg, seeds, out, client=c, rescaling=rescaling, resources=sec.get("resources"),
                                  sampling=sampling)
    return train_ensemble(data, cfg, seeds, out, rescaling=rescaling, progress=progress, sampling=sampling)


def train_missing_rv_flows(pipe: Pipeline, progress: bool = True) -> None:
    """Train the factorised DF of ``[missing_rv]`` on its subset (``[flows]`` settings, overridden by ``[missing_rv]``)."""
    sec = pipe.section("missing_rv")
    torch.set_num_threads(int(pipe.section("flows").get("threads", 1)))
    subset = xr.open_zarr(pipe.path_of("missing_rv", "path"), consolidated=False).load()
    cfg = flow_config({**pipe.section("flows"), **sec})
    seeds = [int(s) for s in sec.get("seeds", pipe.section("flows").get("seeds", [0]))]
    train_missing_rv(subset, cfg, seeds, pipe.path_of("missing_rv", "output"), progress=progress)


def ensemble(pipe: Pipeline) -> FlowEnsemble:
    return load_ensemble(pipe.path_of("flows", "output"), [int(s) for s in pipe.section("flows").get("seeds", [0])])


def acceleration_data(pipe: Pipeline, progress: bool = True) -> xr.Dataset:
    """Accelerations of every member, of the ensemble and the truth at the ``[accelerations]`` positions.

    Hernquist stores: ``n_positions`` on the x axis from ``r_min_over_a`` to
    ``r_max_over_a`` (0.4 a - 20 a, log-spaced; ``radii = "linear"``: the
    papers' ``linspace(0, r_max_over_a, n + 1)[1:]`` with their velocity
    design :data:`~popstore.galaxy.dynamics.acceleration.PAPER_VELOCITIES`),
    the paper's evaluation velocities, plus the exact-DF result. Solar-neighbourhood stores:
    positions on a line from ``start`` to ``stop`` [kpc] (default along R at
    z = 0 across the sphere), ``n_velocities`` velocities per position drawn
    from the ensemble itself; truth from the potential.
    """
    sec = pipe.section("accelerations")
    ds = open_store(pipe.store_path)
    if sec.get("potential_fit", False) and ds.attrs["simulator"] != "hernquist":
        raise UserError("[accelerations] potential_fit is implemented for Hernquist stores only")
    ens = ensemble(pipe)
    rng = np.random.default_rng(int(sec.get("seed", 42)))
    n_pos, n_vel = int(sec.get("n_positions", 50)), int(sec.get("n_velocities", 1000))
    if ds.attrs["simulator"] == "hernquist":
        h = hernquist_model(ds)
        hi = float(sec.get("r_max_over_a", 20.0))
        paper = sec.get("radii", "geometric") == "linear"
        if paper:
            pos = on_x_axis(paper_radii(h.scale_radius, n_pos, hi))
        else:
            pos = on_x_axis(geometric_radii(h.scale_radius, n_pos, float(sec.get("r_min_over_a", 0.4)), hi))
        vel = evaluation_velocities(pos, h.escape_speed(pos[:, 0]), n_vel, rng, **(PAPER_VELOCITIES if paper else {}))
        truth = h.acceleration(pos)
        df_kind = pipe.section("simulator").get("config", {}).get("df", "isotropic")
        logdfs = {"exact_df": lambda x, v: h.log_df(x, v, df_kind)}
        coord = ("r", pos[:, 0], {"units": "kpc", "long_name": "galactocentric radius (x axis)"})
    else:
        start = np.asarray(sec.get("start", [7.5, 0.0, 0.0]), dtype=float)
        stop = np.asarray(sec.get("stop", [8.5, 0.0, 0.0]), dtype=float)
        pos = start + np.linspace(0, 1, n_pos)[:, None] * (stop - start)
        vel = typical_draws(ens, n_pos * n_vel, int(sec.get("seed", 42)))[:, 3:].reshape(n_pos, n_vel, 3)
        mixture = pipe.simulator().mixture
        truth = mixture.potential.acceleration(torch.tensor(pos)).numpy()
        # the generating DF itself (meaningful for the equilibrium sample only: kick_vz = time_myr = 0)
        logdfs = {"exact_df": mixture.log_df} if float(ds["kick_vz"].values[0]) == 0 and float(ds["time_myr"].values[0]) == 0 else {}
        coord = ("s", np.linalg.norm(pos - start, axis=1), {"units": "kpc", "long_name": f"distance from {start.tolist()} towards {stop.tolist()}"})
    if "output" in pipe.section("missing_rv") and pipe.path_of("missing_rv", "output").exists():
        logdfs["missing_rv"] = phase_space_log_df(load_missing_rv(pipe.path_of("missing_rv", "output")))
    xt, vt = torch.tensor(pos), torch.tensor(vel)
    budget = float(sec.get("memory_budget", DEFAULT_MEMORY_BUDGET))
    accs = {k: cbe_acceleration(f, xt, vt, budget, progress=progress).detach().numpy() for k, f in logdfs.items()}
    members = [cbe_terms(phase_space_log_df(m), xt, vt, budget, progress) for m in ens.members]
    accs |= {f"seed_{i}": solve_cbe(t).numpy() for i, t in enumerate(members)}
    mixed = mixture_terms(members)
    accs |= {"ensemble": solve_cbe(mixed).numpy(), "ensemble_f_weighted": solve_cbe(mixed, "f").numpy()}
    if sec.get("potential_fit", False):
        r = np.linalg.norm(pos, axis=1)
        fx, fv, (lo, hi) = fit_design((r.min(), r.max()), int(sec.get("fit_positions", 4000)), int(sec.get("fit_velocities", 16)),
                                      *catalogue_arrays(ds), rng, sec.get("fit_design", "neighbours"))
        fit_terms = mixture_terms([cbe_terms(phase_space_log_df(m), torch.tensor(fx), torch.tensor(fv), budget, progress)
                                   for m in ens.members])
        l_max = sec.get("l_max", 4)
        if l_max == "cv":
            l_max = cross_validated_l_max(fx, fit_terms, PotentialBasis(lo, hi, int(sec.get("n_radial", 12)), 0))[0]
        basis = PotentialBasis(lo, hi, int(sec.get("n_radial", 12)), int(l_max))
        accs["ensemble_potential_fit"] = fit_potential(fx, fit_terms, basis).acceleration(pos)
    dim = coord[0]
    data = {"truth": ((dim, "component"), truth, {"units": "km2 s-2 kpc-1", "long_name": "true acceleration"}),
            "position": ((dim, "component"), pos, {"units": "kpc"})}
    data.update({f"acc_{k}": ((dim, "component"), a, {"units": "km2 s-2 kpc-1", "long_name": f"CBE acceleration, {k}"}) for k, a in accs.items()})
    return xr.Dataset(data, coords={dim: xr.Variable(dim, coord[1], coord[2]), "component": ["x", "y", "z"]},
                      attrs={"store": str(pipe.store_path), "n_velocities": n_vel})


def typical_draws(ens: FlowEnsemble, n: int, seed: int, max_sigma: float = 6.0) -> np.ndarray:
    """``n`` draws from the ensemble within ``max_sigma`` of the data in every rescaled coordinate.

    An affine MAF maps a rare base draw through exponentials and can return
    absurd points (1e11 km/s); those are not where the DF is constrained, so
    draws outside the box (centre ``shift``, half-width ``max_sigma * scale``
    of the first member's rescaling) are dropped.
    """
    ref = ens.members[0]
    shift, scale = ref.shift.numpy(), ref.scale.numpy()
    draws = ens.sample(int(n * 1.1) + 10, seed=seed).numpy()
    keep = np.all(np.abs(draws - shift) < max_sigma * scale, axis=1)
    if keep.sum() < n:
        raise RuntimeError(f"only {keep.sum()} of {len(draws)} flow draws are within {max_sigma} sigma of the data")
    return draws[keep][:n]


def relative_errors(ds: xr.Dataset, reference: str = "truth") -> pd.DataFrame:
    """Both accuracy metrics (:mod:`popstore.galaxy.dynamics.metrics`) for every ``acc_*`` variable.

    Columns: ``median_3d``, ``p90_3d`` (3D vector error), ``radial_bias``
    (median signed radial error) and, for positions on the x axis (Hernquist),
    ``median_x`` (the papers' x-component error; their full definition also
    uses linear radii and ``ensemble_f_weighted``). ``reference``:
    ``"truth"`` (the potential) or another variable, e.g. ``"acc_exact_df"``
    (the CBE acceleration of the generating DF, which isolates the flows'
    error from any non-equilibrium of the mock).
    """
    ref = ds[reference].values
    on_axis = np.allclose(ds["position"].values[:, 1:], 0)
    rows = {k[4:]: error_summary(ds[k].values, ref) for k in ds.data_vars if k.startswith("acc_") and k != reference}
    table = pd.DataFrame(rows).T
    return table if on_axis else table.drop(columns="median_x")
