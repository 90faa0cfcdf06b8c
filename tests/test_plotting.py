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
