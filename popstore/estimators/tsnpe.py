"""Truncated sequential neural posterior estimation (TSNPE; Deistler, Goncalves & Macke 2022,
NeurIPS 35, "Truncated proposals for scalable and hassle-free simulation-based inference").

Round 0 is amortised NPE on prior draws (:func:`popstore.estimators.sbi.train_npe`). Each later
round draws new parameters from the prior truncated to the ``1 - quantile`` highest-probability
region of the previous round's posterior given the observation (sbi's
:class:`~sbi.utils.RestrictedPrior` with :func:`~sbi.utils.get_density_thresholder`), simulates
them into a store of their own with :func:`popstore.generate`, and retrains the estimator on all
rounds' stores with the ordinary NPE loss (truncated proposals need no loss correction). The
Pardo-Araujo et al. (2025, A&A 696, A114) pulsar posteriors were made this way.

Every step is resumable: a round's parameter table is written (atomically) before its simulations
start and reused on a rerun, the generation resumes like any other, and a trained member is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sbi.utils import RestrictedPrior, get_density_thresholder

from popstore.estimators.sbi import ParameterSpace


@dataclass(frozen=True)
class RoundsConfig:
    """Settings of the TSNPE rounds after round 0.

    ``n_rounds``: rounds after the amortised round 0; ``simulations_per_round``: new simulations in each;
    ``truncation_quantile``: posterior mass left out of the truncated prior (Deistler et al. 2022 use
    1e-4); ``support_samples``: posterior draws that estimate the density threshold; ``sample``: the
    sample of the observed store to condition on.
    """

    n_rounds: int = 2
    simulations_per_round: int = 1000
    truncation_quantile: float = 1e-4
    support_samples: int = 1_000_000
    sample: int = 0


def truncated_prior(posterior, x_o: torch.Tensor, space: ParameterSpace, quantile: float,
                    support_samples: int) -> RestrictedPrior:
    """The prior of ``space`` restricted to the ``1 - quantile`` highest-density region of ``posterior``
    given the observation ``x_o`` ``(1, C, H, W)`` (inference space)."""
    posterior.set_default_x(x_o)
    inside = get_density_thresholder(posterior, quantile=quantile, num_samples_to_estimate_support=support_samples)
    return RestrictedPrior(space.prior(), inside, sample_with="rejection")


def proposal_table(restricted: RestrictedPrior, space: ParameterSpace, n: int, seed: int,
                   fixed: Mapping[str, float]) -> pd.DataFrame:
    """``n`` draws of the truncated prior as a parameter table for :func:`popstore.generate`
    (:meth:`ParameterSpace.table`: the store records the full prior; the truncation is the proposal)."""
    torch.manual_seed(seed)
    return space.table(restricted.sample((n,), show_progress_bars=False, print_rejected_frac=False), fixed)


def load_or_draw(path: str | Path, draw) -> pd.DataFrame:
    """The round's parameter table at ``path`` (``.csv``) if a previous run wrote it, else ``draw()``
    written there first (renamed into place when whole), so a rerun simulates the same parameters."""
    path = Path(path)
    if path.exists():
        table = pd.read_csv(path, index_col=0)
        meta = pd.read_json(path.with_suffix(".json"), typ="series")
        table.attrs["ranges"] = {k: tuple(v) for k, v in meta["ranges"].items()}
        table.attrs["fixed"] = list(meta["fixed"])
        return table
    table = draw()
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.Series({"ranges": table.attrs["ranges"], "fixed": table.attrs["fixed"]}).to_json(path.with_suffix(".json"))
    partial = path.with_name(f".{path.name}.partial")
    table.to_csv(partial)
    os.replace(partial, path)
    return table


def prior_fraction(restricted: RestrictedPrior, n: int = 100_000) -> float:
    """Fraction of the prior volume inside the truncated region (rejection sampling of ``n`` prior draws)."""
    return float(restricted.prior_acceptance(num_rejection_samples=n, force_update=True))


def round_seeds(seed: int, n_rounds: int) -> Sequence[int]:
    """A distinct simulation seed for each round (round 0 keeps the store's own ``seed``)."""
    return [int(s) for s in np.random.SeedSequence([seed, 7919]).generate_state(n_rounds + 1)]
