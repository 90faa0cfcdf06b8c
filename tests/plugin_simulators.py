"""A user's own simulator, outside popstore: found by ``module:Class`` or through an entry point."""

from __future__ import annotations

import numpy as np

from popstore.simulator import Axis, Output, Parameter, Simulator


class Plane(Simulator):
    """map(y, x) = tilt * x + offset, plus unit-variance noise from the sample's seed."""

    version = "1"

    def __init__(self, n: int = 4) -> None:
        self.n = n

    @property
    def parameters(self):
        return (Parameter("tilt", -1.0, 1.0), Parameter("offset", 0.0, 10.0))

    @property
    def axes(self):
        return (Axis.linear("y", 0.0, 1.0, self.n, units="m"), Axis.linear("x", 0.0, 1.0, self.n, units="m"))

    @property
    def outputs(self):
        return (Output("plane", ("y", "x"), units="1"),)

    @property
    def config(self):
        return {"n": self.n}

    def simulate(self, params, seed):
        x = (np.arange(self.n) + 0.5) / self.n
        noise = np.random.default_rng(seed).standard_normal((self.n, self.n))
        return {"plane": params["tilt"] * x[None, :] + params["offset"] + noise}
