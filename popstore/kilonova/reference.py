"""Access to the published DU17 implementation (gwemlightcurves) for validation and timing.

gwemlightcurves (Coughlin et al., GPL-3) is *not* a dependency and none of its
code is part of popstore: :func:`load_gwemlightcurves_du17` imports its two
DU17 modules from an unpacked source distribution at run time (e.g. after
``pip download --no-deps gwemlightcurves`` and ``tar xzf``), bypassing its
package ``__init__`` whose LIGO dependencies are not installable here.
"""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from popstore.kilonova.ejecta import baryonic_mass, compactness_from_lambda
from popstore.kilonova.lightcurve import DU17Settings, time_grid

_LC_IMPORTS = ("from .model import register_model", "from .. import KNTable",
               "from gwemlightcurves.EjectaFits.DiUj2017 import calc_meje, calc_vej")


def load_gwemlightcurves_du17(src: str | Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``(EjectaFits.DiUj2017, KNModels.io.DiUj2017)`` of the gwemlightcurves source tree at ``src``."""
    pkg = Path(src) / "gwemlightcurves"
    fits_file, lc_file = pkg / "EjectaFits/DiUj2017.py", pkg / "KNModels/io/DiUj2017.py"
    if not (fits_file.exists() and lc_file.exists()):
        raise FileNotFoundError(f"{src} is not an unpacked gwemlightcurves source distribution")
    spec = importlib.util.spec_from_file_location("gwem_du17_fits", fits_file)
    fits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fits)
    text = lc_file.read_text()
    for line in _LC_IMPORTS:
        text = text.replace(line, "")
    lc = types.ModuleType("gwem_du17_lc")
    exec(compile(text.split("register_model('DiUj2017'")[0], str(lc_file), "exec"), lc.__dict__)
    return fits, lc


def gwemlightcurves_curve(
    fits: types.ModuleType,
    lc: types.ModuleType,
    settings: DU17Settings = DU17Settings(),
    t_grid: tuple[float, float, float] = (0.0, 11.0, 0.01),
) -> Callable[[float, float, float, float], np.ndarray]:
    """A function ``(m1, m2, lambda1, lambda2) -> (4, n_time)`` g, r, i, z magnitudes computed by gwemlightcurves.

    Compactnesses and baryonic masses come from popstore's Yagi-Yunes relations;
    phi_ej = 4 theta_ej + pi / 2 (DU17 eq. 3.13) is passed in, since the
    package's own ``calc_phej`` returns 4 theta pi / 2. Binaries without ejecta
    give NaN curves (gwemlightcurves drops them).
    """
    n_t = len(time_grid(*t_grid))

    def curve(m1: float, m2: float, lambda1: float, lambda2: float) -> np.ndarray:
        c1, c2 = compactness_from_lambda([lambda1, lambda2])
        mb1, mb2 = baryonic_mass([m1, m2], [c1, c2])
        mej = fits.calc_meje(m1, mb1, c1, m2, mb2, c2)
        if mej <= 0:
            return np.full((4, n_t), np.nan)
        theta = fits.calc_qej(m1, c1, m2, c2)
        with np.errstate(all="ignore"):
            _, _, mag = lc.calc_lc(t_grid[0], t_grid[1], t_grid[2], mej, fits.calc_vej(m1, c1, m2, c2), settings.v_min,
                                   theta, 4 * theta + np.pi / 2, settings.kappa, settings.eps0, settings.alpha,
                                   settings.eth, 0)
        return np.stack([mag[k] for k in (1, 2, 3, 4)])

    return curve
