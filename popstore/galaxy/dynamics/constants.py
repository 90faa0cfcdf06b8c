"""Units and constants of :mod:`popstore.galaxy.dynamics`.

Everything in this subpackage uses galactic units: positions in kpc,
velocities in km/s, masses in Msun, so accelerations are in (km/s)^2/kpc and
times in kpc/(km/s) (= 977.79 Myr). The papers (An et al. 2021,
arXiv:2106.05981; Naik et al. 2021, arXiv:2112.07657) work in SI units; every
result here is unit-consistent, and :data:`ACC_SI` converts accelerations.
"""

from __future__ import annotations

from astropy import constants as _c
from astropy import units as _u

#: Newton's constant in kpc (km/s)^2 / Msun.
G: float = float(_c.G.to(_u.kpc * _u.km**2 / _u.s**2 / _u.Msun).value)
#: One kpc/(km/s) in Myr.
TIME_UNIT_MYR: float = float((1 * _u.kpc / (_u.km / _u.s)).to(_u.Myr).value)
#: One (km/s)^2/kpc in m/s^2.
ACC_SI: float = float((1 * _u.km**2 / _u.s**2 / _u.kpc).to(_u.m / _u.s**2).value)
