"""Birth positions drawn from the YMW16 electron-density table (the reference's option to the spiral arms)."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("ymw16", reason="YMW16 (pip install pyymw16) is not installed")

from popstore.pulsars import birth  # noqa: E402
from popstore.pulsars.config import PulsarConfig  # noqa: E402
from popstore.pulsars.dm import ymw16_ne_plane  # noqa: E402

CFG = PulsarConfig(birth_model="ymw16_density", ymw16_table_step_kpc=0.5)


def test_plane_density_is_in_the_pulsar_frame():
    """n_e integrated from the Sun along a line of sight gives YMW16's own DM for that direction:
    towards the Galactic centre (-y) and towards l = 90 deg (+x) from the Sun at (0, 8.3) kpc."""
    from popstore.pulsars.dm import ymw16_dm_direct

    s = np.linspace(0.0, 5.0, 2001)  # kpc along the line of sight
    towards_gc = ymw16_ne_plane(np.zeros_like(s), CFG.sun_y_kpc - s)
    towards_l90 = ymw16_ne_plane(s, np.full_like(s, CFG.sun_y_kpc))
    for ne, l_deg in ((towards_gc, 0.0), (towards_l90, 90.0)):
        dm = np.trapezoid(ne, s * 1e3)  # pc cm^-3
        # 2%: the Sun is 6 pc above z = 0; a mirrored x axis would be 7% off towards l = 90 deg
        assert dm == pytest.approx(ymw16_dm_direct(l_deg, 0.0, 5.0), rel=0.02)
    assert ymw16_ne_plane(0.0, 0.0) > 1.0  # the Galactic-centre component (n_gc = 6.2 cm^-3) at the origin


def test_births_follow_the_table():
    """With the arm rotation switched off (an infinite period) births follow the n_e table."""
    cfg = dataclasses.replace(CFG, arm_rotation_period_yr=1e300)
    rng = np.random.default_rng(3)
    n = 200_000
    pos = birth.sample_birth_positions(birth.sample_ages(n, rng, cfg), rng, cfg)
    x, y, ne = birth.ymw16_plane_table(CFG.r_max_kpc, CFG.ymw16_table_step_kpc)
    assert np.hypot(x, y).max() <= CFG.r_max_kpc and np.all(ne >= 0)

    def region(px, py):  # 6 x 6 squares with edges on cell edges (multiples of the cell size)
        edges = [-10.0, -5.0, 0.0, 5.0, 10.0]
        return 6 * np.digitize(px, edges) + np.digitize(py, edges)

    expected = n * np.bincount(region(x, y), weights=ne, minlength=36) / ne.sum()
    counts = np.bincount(region(pos[0], pos[1]), minlength=36)
    sigma = np.sqrt(expected * (1 - expected / n))
    assert np.all(np.abs(counts - expected) < 5 * sigma + 1)
    assert (((counts - expected) / np.maximum(sigma, 1)) ** 2).sum() < 36 + 5 * np.sqrt(2 * 36)  # chi^2, 35 dof


def test_births_are_rotated_back_with_the_arms():
    """The table's births are turned by 2 pi age / 2.5e8 yr about the Galactic centre, as the spiral-arm
    births are (research code: the density structure rotates rigidly): same draws, same radii and heights,
    azimuths offset by exactly that angle; 0.75 rad for the oldest (3e7 yr) stars."""
    n = 20_000
    age = birth.sample_ages(n, np.random.default_rng(0), CFG)
    still = birth.sample_birth_positions(age, np.random.default_rng(1),
                                         dataclasses.replace(CFG, arm_rotation_period_yr=1e300))
    turned = birth.sample_birth_positions(age, np.random.default_rng(1), CFG)
    np.testing.assert_allclose(np.hypot(turned[0], turned[1]), np.hypot(still[0], still[1]), rtol=1e-12)
    np.testing.assert_array_equal(turned[2], still[2])
    dphi = np.angle(np.exp(1j * (np.arctan2(turned[1], turned[0]) - np.arctan2(still[1], still[0]))))
    np.testing.assert_allclose(dphi, 2 * np.pi * age / 2.5e8, atol=1e-9)
    assert dphi.max() == pytest.approx(2 * np.pi * 3e7 / 2.5e8, abs=1e-3)


def test_bad_birth_settings_are_clear_errors():
    with pytest.raises(ValueError, match="birth_model"):
        PulsarConfig(birth_model="ymw17")
    with pytest.raises(ValueError, match="ymw16_table_step_kpc"):
        PulsarConfig(birth_model="ymw16_density", ymw16_table_step_kpc=0.0)
