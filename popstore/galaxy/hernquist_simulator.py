"""``hernquist``: phase-space catalogues of a Hernquist sphere (one catalogue per sample).

Stars are drawn exactly from the isotropic or the beta = 1/2 anisotropic DF
(:mod:`popstore.galaxy.dynamics.hernquist`), truncated at ``r < r_max_over_a * a``
(200 a in An et al. 2021, arXiv:2106.05981), optionally with the papers'
multiplicative noise: every component times N(1, ``noise``). Stars and noise
use independent streams of the sample's seed, so stores that differ only in
``noise`` hold noisy copies of the *same* stars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from popstore.cf import KILOPARSEC, SOLAR_MASS
from popstore.galaxy.dynamics.hernquist import Hernquist, multiplicative_noise
from popstore.simulator import Output, Parameter, Simulator
from popstore.simulators import register

POSITIONS = (("x", "x"), ("y", "y"), ("z", "z"))
VELOCITIES = (("vx", "x"), ("vy", "y"), ("vz", "z"))


def phase_space_outputs(dtype: str = "float64") -> tuple[Output, ...]:
    """Galactocentric Cartesian positions [kpc] and velocities [km/s] along ``star``."""
    pos = tuple(Output(n, ("star",), dtype, KILOPARSEC, f"{a} position", role="catalogue") for n, a in POSITIONS)
    vel = tuple(Output(n, ("star",), dtype, "km s-1", f"{a} velocity", role="catalogue") for n, a in VELOCITIES)
    return pos + vel


@register("hernquist")
class HernquistCatalogue(Simulator):
    """Mock catalogue of ``n_stars`` stars from a Hernquist DF (see module docstring).

    Parameters
    ----------
    n_stars : int
        Stars per catalogue.
    df : {"isotropic", "anisotropic"}
        Hernquist (1990) isotropic DF or the beta = 1/2 DF of Baes & Dejonghe (2002).
    noise : float
        Fractional Gaussian noise on every coordinate (0, 0.01, 0.1 in the paper).
    r_max_over_a : float
        Truncation radius in units of the scale radius.
    """

    version = "1"

    def __init__(self, n_stars: int = 100_000, df: str = "isotropic", noise: float = 0.0, r_max_over_a: float = 200.0) -> None:
        if n_stars < 1:
            raise ValueError(f"n_stars must be >= 1, got {n_stars}")
        if df not in ("isotropic", "anisotropic"):
            raise ValueError(f"df must be 'isotropic' or 'anisotropic', got {df!r}")
        if noise < 0 or r_max_over_a <= 0:
            raise ValueError("need noise >= 0 and r_max_over_a > 0")
        self.n_stars, self.df, self.noise, self.r_max_over_a = int(n_stars), df, float(noise), float(r_max_over_a)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("mass", 1e9, 1e12, log=True, units=SOLAR_MASS, long_name="total mass M (solar masses)"),
            Parameter("scale_radius", 1.0, 20.0, units=KILOPARSEC, long_name="scale radius a"),
        )

    @property
    def outputs(self) -> tuple[Output, ...]:
        return phase_space_outputs()

    @property
    def sizes(self) -> dict[str, int]:
        return {"star": self.n_stars}

    @property
    def config(self) -> dict[str, Any]:
        return {"n_stars": self.n_stars, "df": self.df, "noise": self.noise, "r_max_over_a": self.r_max_over_a}

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        model = Hernquist(float(params["mass"]), float(params["scale_radius"]))
        x, v = model.sample(self.n_stars, np.random.default_rng([seed, 0]), self.df, self.r_max_over_a * model.scale_radius)
        noise_rng = np.random.default_rng([seed, 1])
        x, v = multiplicative_noise(x, self.noise, noise_rng), multiplicative_noise(v, self.noise, noise_rng)
        return {name: a[:, i] for names, a in ((POSITIONS, x), (VELOCITIES, v)) for i, (name, _) in enumerate(names)}
