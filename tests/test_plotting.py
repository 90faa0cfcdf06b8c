"""Generic map plotting on a hand-made dataset (no simulator needed)."""

import numpy as np
import pytest
import xarray as xr

from popstore.plotting import coordinate_edges, map_variables, plot_maps


def dataset():
    e = np.geomspace(1e-3, 1e2, 6)
    ds = xr.Dataset(
        {
            "grid": (("sample", "survey", "y", "p"), np.random.default_rng(0).random((2, 3, 4, 5)), {"role": "input", "units": "count"}),
            "curve": (("sample", "p"), np.ones((2, 5)), {"role": "input"}),
            "theta": (("sample",), [0.1, 0.2], {"role": "label"}),
            "p_bnds": (("p", "nv"), np.stack([e[:-1], e[1:]], 1)),
        },
        coords={"p": ("p", np.sqrt(e[1:] * e[:-1]), {"units": "s", "long_name": "period", "bounds": "p_bnds", "scale": "log"}),
                "y": ("y", [0.5, 1.5, 2.5, 3.5], {"units": "kpc"}), "survey": ["A", "B", "C"]},
    )
    return ds


def test_edges_from_bounds_and_from_centres():
    ds = dataset()
    np.testing.assert_allclose(coordinate_edges(ds, "p"), np.geomspace(1e-3, 1e2, 6))
    np.testing.assert_allclose(coordinate_edges(ds, "y"), [0, 1, 2, 3, 4])
    assert map_variables(ds) == ["grid"]  # 1D inputs are not maps


def test_one_panel_per_leading_index(tmp_path):
    ds = dataset()
    fig = plot_maps(ds, sample=1)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == [f"grid (survey={s})" for s in "ABC"]
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_ylabel() == "y [kpc]"
    assert "theta=0.2" in fig._suptitle.get_text()
    with pytest.raises(IndexError):
        plot_maps(ds, sample=5)
    with pytest.raises(KeyError, match="not in the store"):
        plot_maps(ds, 0, ["nope"])
    assert plot_maps(ds, 0, path=tmp_path / "g.png").exists()


def test_titles_use_long_name_and_colour_bars_name_the_variable():
    ds = dataset()
    ds["grid"].attrs["long_name"] = "pulsar counts"
    fig = plot_maps(ds, sample=0)
    assert [a.get_title() for a in fig.axes if a.get_title()][0] == "pulsar counts (survey=A)"
    assert any(a.get_ylabel() == "grid [count]" for a in fig.axes)  # colour-bar axes


def test_log_colour_scale_for_positive_maps_spanning_decades():
    from matplotlib.colors import LogNorm

    from popstore.plotting import use_log_scale

    assert use_log_scale(np.array([0.0, 1.0, 1e3]))  # empty bins aside, 3 decades
    assert not use_log_scale(np.array([1.0, 50.0]))
    assert not use_log_scale(np.array([-1.0, 1e3]))
    assert use_log_scale(np.array([1.0, 2.0]), log=True) and not use_log_scale(np.array([1.0, 1e6]), log=False)
    ds = dataset()
    ds["grid"][:] = 10.0 ** np.random.default_rng(1).uniform(0, 5, ds["grid"].shape)
    mesh = plot_maps(ds, sample=0).axes[0].collections[0]
    assert isinstance(mesh.norm, LogNorm)
    assert not isinstance(plot_maps(ds, sample=0, log=False).axes[0].collections[0].norm, LogNorm)


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    """A notebook's backend stays as it was (the library never calls matplotlib.use)."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import test_plotting as t;"
            f"t.plot_maps(t.dataset(), path=r'{tmp_path / 'm.png'}');"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    run = subprocess.run([sys.executable, "-c", code], cwd=__import__("pathlib").Path(__file__).parent,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m.png").stat().st_size > 5000


def test_predictive_check_on_map_totals(tmp_path):
    """Predicted maps whose totals are 1, 2, ..., 100 times the observed map's: p = P(T_pred >= T_obs) = 1."""
    from popstore.plotting import plot_predictive, predictive_totals

    obs = dataset().isel(sample=[0])
    k = np.arange(1, 101, dtype=float)
    pred = xr.concat([dataset().isel(sample=[0])] * 100, "sample")
    pred["grid"] = pred["grid"] * xr.DataArray(k, dims="sample")
    table = predictive_totals(obs, pred, ["grid"])
    total = obs["grid"].isel(sample=0).sum(("y", "p")).values
    assert list(table.index) == [f"grid (survey={s})" for s in "ABC"]
    np.testing.assert_allclose(table["observed"], total)
    np.testing.assert_allclose(table["predictive median"], 50.5 * total)
    np.testing.assert_allclose(table["p-value"], 1.0)
    pred["grid"] = pred["grid"] / 50.0  # totals k/50: half of the draws reach the observed total
    np.testing.assert_allclose(predictive_totals(obs, pred, ["grid"])["p-value"], 0.51)
    png = plot_predictive(obs, pred, ["grid"], path=tmp_path / "ppc.png")
    assert png.stat().st_size > 20_000
