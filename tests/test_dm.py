"""YMW16 DM grid: agreement with direct calls, caching round trip, input checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ymw16", reason="YMW16 (pip install pyymw16) is not installed")

from popstore.pulsars.dm import DMGrid, GridSpec, ymw16_dm_direct  # noqa: E402


@pytest.fixture(scope="module")
def coarse(tmp_path_factory) -> DMGrid:
    return DMGrid.load("coarse", cache_dir=tmp_path_factory.mktemp("dm"), progress=False)


def test_direct_calls_are_physical():
    # DM grows with distance along a line of sight and is larger in the plane than out of it
    d = np.array([0.5, 1.0, 2.0, 5.0, 10.0])
    dm_plane = ymw16_dm_direct(np.full(5, 30.0), np.zeros(5), d)
    assert np.all(np.diff(dm_plane) > 0)
    dm_high = ymw16_dm_direct(np.full(5, 30.0), np.full(5, 60.0), d)
    assert np.all(dm_high < dm_plane)
    # towards the pole DM saturates at the thick-disc column ~ n1 H1 = 0.01132 cm^-3 * 1673 pc ~ 19 (YMW16 table 2)
    assert ymw16_dm_direct(0.0, 90.0, 30.0) == pytest.approx(0.01132 * 1673, rel=0.1)


def test_grid_reproduces_direct_calls_at_nodes(coarse):
    rng = np.random.default_rng(0)
    spec = coarse.spec
    il, ib, idd = (rng.integers(0, len(a), 40) for a in (spec.l, spec.b, spec.d))
    l, b, d = np.array(spec.l)[il], np.array(spec.b)[ib], np.array(spec.d)[idd]
    np.testing.assert_allclose(coarse(l, b, d), ymw16_dm_direct(l, b, d), rtol=1e-6, atol=1e-6)


def test_grid_is_monotonic_in_distance_and_periodic_in_l(coarse):
    d = np.linspace(0, 40, 200)
    dm = coarse(np.full(200, -45.0), np.full(200, 0.3), d)
    assert np.all(np.diff(dm) >= 0)
    assert dm[-1] == coarse(-45.0, 0.3, 35.0)  # clipped beyond the last node
    np.testing.assert_allclose(coarse(190.0, 2.0, 3.0), coarse(-170.0, 2.0, 3.0))


def test_cache_round_trip(coarse, tmp_path):
    coarse.to_zarr(tmp_path / "g.zarr")
    back = DMGrid.from_zarr(tmp_path / "g.zarr")
    assert back.spec == coarse.spec
    np.testing.assert_array_equal(back.dm, coarse.dm)
    assert "YMW16" in back.attrs["model"] and "pyymw16" in back.attrs["implementation"]


def test_bad_input(coarse):
    with pytest.raises(ValueError, match="latitude"):
        coarse(0.0, 91.0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        coarse(0.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="unknown DM grid preset"):
        GridSpec.preset("ultra")
