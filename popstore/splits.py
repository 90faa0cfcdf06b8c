"""Train/valid/test splits as an index coordinate of the store, and label statistics.

Semantics follow the mlpoppyns research code (Graber et al. 2024, ApJ 968, 16):
the ``test`` fraction is drawn from the whole set first, then the ``valid``
fraction from the remainder, each uniformly at random without replacement;
everything else is ``train``. With ``groups`` (e.g. the CAMELS simulation a
map came from) whole groups are assigned, so no group is split across subsets.

The result is the non-dimension coordinate ``split(sample)`` with values
``"train"``, ``"valid"``, ``"test"`` (``"excluded"`` for samples that are not
``done`` when ``allow_incomplete=True``, or flagged by ``exclude``) and the fractions and seed in its
attrs, so ``ds.sel(sample=ds.split == "train")`` is a training set.

Label statistics (mean, std with ddof=0, min, max) of the full set and of the
training split are stored as ``label_stats(subset, label, statistic)``, so a
model never needs a side file to normalise its targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from popstore.errors import UserError
from popstore.store import STATISTICS, label_names, open_store, write_variables

SUBSETS = ("train", "valid", "test")


def assign_splits(n: int, test: float, valid: float, seed: int) -> np.ndarray:
    """Subset name for each of ``n`` items (mlpoppyns semantics, see module docstring)."""
    check_fractions(test, valid)
    rng = np.random.default_rng(seed)
    n_test = int(round(test * n))
    n_valid = int(round(valid * (n - n_test)))
    if n - n_test - n_valid < 1:
        raise UserError(f"fractions test={test}, valid={valid} leave no training item out of {n}")
    order = rng.permutation(n)
    out = np.full(n, "train", dtype=object)
    out[order[:n_test]] = "test"
    out[order[n_test:n_test + n_valid]] = "valid"
    return out


def check_fractions(test: float, valid: float) -> None:
    """Raise :class:`UserError` unless both fractions lie in [0, 1) and ``test + valid < 1``.

    ``valid`` is a fraction of the remainder, so any pair in [0, 1) is
    computable; but a sum of 1 or more (``--test 0.6 --valid 0.6`` keeps 16 %
    for training) means the fractions were read as shares of the whole, which
    cannot add up: refused rather than training on a sliver of the data.
    """
    for name, f in (("test", test), ("valid", valid)):
        if not (isinstance(f, (int, float, np.integer, np.floating)) and 0 <= f < 1):
            raise UserError(f"{name} fraction must lie in [0, 1), got {f!r}")
    if test + valid >= 1:
        raise UserError(f"test={test} + valid={valid} >= 1 would leave training only "
                        f"{(1 - test) * (1 - valid):.1%} of the samples; use smaller fractions "
                        "(test: share of all samples, valid: share of the rest)")


def _sample_variable(ds: xr.Dataset, name: str, option: str) -> np.ndarray:
    """Values of the per-sample variable ``name`` (``groups``/``exclude``), refusing maps and unknown names."""
    if name not in ds.variables:
        per_sample = [k for k, v in ds.variables.items() if v.dims == ("sample",) and k not in ("sample", "done")]
        raise UserError(f"{option}={name!r}: no such variable; per-sample variables: {per_sample}")
    if ds[name].dims != ("sample",):
        raise UserError(f"{option}={name!r} has dims {ds[name].dims}; it needs one value per sample, dims ('sample',)")
    return ds[name].values


def label_statistics(labels: np.ndarray) -> np.ndarray:
    """(mean, std, min, max) of each column of ``labels`` (n, L); shape (L, 4)."""
    return np.stack([labels.mean(0), labels.std(0), labels.min(0), labels.max(0)], axis=1)


def split(
    store: str | Path,
    test: float = 0.1,
    valid: float = 0.1,
    seed: int = 0,
    groups: str | None = None,
    allow_incomplete: bool = False,
    exclude: str | None = None,
) -> xr.DataArray:
    """Write the ``split`` coordinate and ``label_stats`` into ``store``; return ``split``.

    Parameters
    ----------
    store
        Path or fsspec URL of a popstore store.
    test, valid
        Fraction of the whole set for testing; fraction of the remainder for validation.
    seed
        Seed of the random assignment.
    groups
        Name of a variable along ``sample`` whose equal values must share a subset.
    allow_incomplete
        Mark samples that are not ``done`` as ``"excluded"`` instead of refusing.
    exclude
        Name of a variable along ``sample`` (e.g. the ``aborted`` flag of
        ``pulsar_surveys``); samples where it is non-zero are ``"excluded"``.
    """
    check_fractions(test, valid)
    ds = open_store(store)
    excluded = _sample_variable(ds, exclude, "exclude") if exclude else None
    group_keys = _sample_variable(ds, groups, "groups") if groups else None
    done = ds["done"].values
    if not done.all() and not allow_incomplete:
        raise UserError(f"{store}: {int((~done).sum())} samples are not done; finish generation "
                        "or pass allow_incomplete=True")
    usable = done & (excluded == 0) if exclude else done
    keys = group_keys[usable] if groups else np.arange(int(usable.sum()))
    unique, inverse = np.unique(keys, return_inverse=True)
    values = np.full(ds.sizes["sample"], "excluded", dtype=object)
    values[usable] = assign_splits(len(unique), test, valid, seed)[inverse]
    attrs = {"long_name": "dataset subset", "test_fraction": test, "valid_fraction": valid, "seed": seed,
             "valid_fraction_of": "remainder after test", "groups": groups or "", "excluded_by": exclude or ""}
    split_da = xr.DataArray(values, dims="sample", attrs=attrs, name="split")

    labels = label_names(ds)
    table = np.stack([ds[n].values for n in labels], axis=1) if labels else np.empty((ds.sizes["sample"], 0))
    stats = np.stack([label_statistics(table[usable]), label_statistics(table[values == "train"])])
    stats_da = xr.DataArray(
        stats, dims=("subset", "label", "statistic"),
        coords={"subset": ("subset", ["full", "train"], {"long_name": "samples the statistics are over"}),
                "label": ("label", labels, {"long_name": "label variable"}),
                "statistic": ("statistic", list(STATISTICS), {"long_name": "statistic"})},
        attrs={"long_name": "label statistics (std with ddof=0)"},
    )
    write_variables(store, {"split": split_da, "label_stats": stats_da})
    return split_da
