"""Calibration of a posterior on held-out simulations, with sbi's diagnostics.

- expected coverage (Deistler et al. 2022, arXiv:2210.04815): the fraction of test samples whose
  true parameters lie inside the posterior's highest-density region of credibility level ``alpha``,
  at :data:`LEVELS`; a calibrated posterior gives ``alpha`` (above: conservative, below: overconfident);
- simulation-based calibration (Talts et al. 2018, arXiv:1804.06788): the rank of each true
  parameter among posterior draws, uniform when calibrated, with a KS test per parameter;
- TARP (Lemos, Coogan et al. 2023, arXiv:2302.03026): expected coverage of random reference
  balls, necessary and sufficient for accuracy.

:func:`calibration_report` runs all three (sbi's :func:`~sbi.diagnostics.run_sbc`,
:func:`~sbi.diagnostics.check_sbc`, :func:`~sbi.diagnostics.run_tarp`,
:func:`~sbi.diagnostics.check_tarp`) and returns the numbers as one :class:`xarray.Dataset`,
saved as netCDF with a PNG figure by :func:`save_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

from popstore.errors import UserError
from popstore.plotting import figure

#: Credibility levels of the expected-coverage table.
MIN_TEST = 10  # sbi's TARP bins the test pairs into n // 10 bins
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.683, 0.8, 0.9, 0.95, 0.99)


def expected_coverage(ranks: np.ndarray, n_draws: int, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Coverage at each credibility level from highest-density ranks.

    ``ranks[i]`` is the number of posterior draws for test sample ``i`` that are more probable than
    its true parameters (sbi's ``run_sbc`` with ``reduce_fns = -log_prob``); the truth lies in the
    ``alpha`` highest-density region when fewer than ``alpha * n_draws`` draws beat it.
    """
    r = np.asarray(ranks, dtype=float).reshape(len(ranks), -1)[:, 0]
    return np.array([(r < a * n_draws).mean() for a in levels])


def calibration_report(posterior, thetas: torch.Tensor, xs: torch.Tensor, names: Sequence[str], n_draws: int = 1000,
                       seed: int = 0, progress: bool = False) -> xr.Dataset:
    """Expected coverage, SBC ranks with KS p-values, and TARP of ``posterior`` on test pairs ``(thetas, xs)``.

    ``thetas`` are in the posterior's own parameter space (``(N, P)``), ``xs`` its inputs.
    """
    if len(thetas) < MIN_TEST:
        raise UserError(f"calibration needs at least {MIN_TEST} test samples (TARP bins them by tens); got {len(thetas)}")
    torch.manual_seed(seed)
    ranks, dap = run_sbc(thetas, xs, posterior, num_posterior_samples=n_draws, show_progress_bar=progress)
    checks = check_sbc(ranks, thetas, dap, num_posterior_samples=n_draws)
    torch.manual_seed(seed + 1)

    def minus_log_prob(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # HPD ranks; no leakage normalisation
        return -posterior.log_prob(theta, x=x, norm_posterior=False)

    hpd, _ = run_sbc(thetas, xs, posterior, num_posterior_samples=n_draws, reduce_fns=minus_log_prob,
                     show_progress_bar=progress, use_batched_sampling=True)
    torch.manual_seed(seed + 2)
    ecp, alpha = run_tarp(thetas, xs, posterior, num_posterior_samples=n_draws, show_progress_bar=progress)
    atc, tarp_ks = check_tarp(ecp, alpha)
    levels = np.asarray(LEVELS)
    coverage = expected_coverage(hpd.numpy(), n_draws)
    return xr.Dataset(
        {
            "coverage": ("level", coverage,
                         {"long_name": "expected coverage of the highest-density region", "units": "1"}),
            "sbc_rank": (("test_sample", "label"), ranks.numpy().astype(np.int64),
                         {"long_name": "rank of the true value among posterior draws", "n_draws": n_draws}),
            "sbc_ks_pvalue": ("label", checks["ks_pvals"].numpy(),
                              {"long_name": "KS p-value of SBC rank uniformity"}),
            "sbc_c2st": ("label", checks["c2st_ranks"].numpy(),
                         {"long_name": "classifier accuracy, ranks vs uniform (0.5: uniform)"}),
            "tarp_coverage": ("tarp_level", ecp.numpy(), {"long_name": "TARP expected coverage probability"}),
        },
        coords={"level": ("level", levels, {"long_name": "credibility level", "units": "1"}),
                "label": ("label", list(names)),
                "tarp_level": ("tarp_level", alpha.numpy(), {"long_name": "TARP credibility level"})},
        attrs={"n_test": len(thetas), "n_draws": n_draws, "tarp_atc": float(atc), "tarp_ks_pvalue": float(tarp_ks),
               "max_coverage_error": float(np.abs(coverage - levels).max())},
    )


def save_report(report: xr.Dataset, out: str | Path) -> tuple[Path, Path]:
    """``report`` as ``<out>.nc`` and a figure ``<out>.png`` (coverage, SBC rank histograms, TARP)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nc, png = out.with_suffix(".nc"), out.with_suffix(".png")
    report.to_netcdf(nc)
    n_labels = report.sizes["label"]
    fig, axes = figure(1, n_labels + 2, figsize=(3.4 * (n_labels + 2), 3.2), squeeze=False)
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(report.level, report.coverage, "o-")
    ax.set(xlabel="credibility level", ylabel="expected coverage", title=f"HPD coverage ({report.attrs['n_test']} tests)")
    n_draws = report.sbc_rank.attrs["n_draws"]
    for j, name in enumerate(report.label.values):
        ax = axes[0, j + 1]
        ax.hist(report.sbc_rank.sel(label=name), bins=20, range=(0, n_draws), color="C1")
        ax.axhline(report.attrs["n_test"] / 20, color="k", ls=":", lw=1)
        ax.set(xlabel=f"SBC rank of {name}", title=f"KS p = {float(report.sbc_ks_pvalue.sel(label=name)):.2f}")
    ax = axes[0, -1]
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(report.tarp_level, report.tarp_coverage)
    ax.set(xlabel="credibility level", ylabel="TARP coverage", title=f"TARP (ATC {report.attrs['tarp_atc']:.3f})")
    fig.savefig(png, dpi=110)
    return nc, png
