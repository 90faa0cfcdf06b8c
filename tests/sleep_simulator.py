"""A simulator whose cost is a fixed sleep, for cluster tests and the scaling benchmark.

Importing this module registers it as ``"sleep"`` (only then: it is not part of popstore's
registry), so a pipeline file can name it when the driver imports this module first:

    PYTHONPATH=$REPO:$REPO/tests python -c \\
        "import sleep_simulator, popstore.cli as c; raise SystemExit(c.main())" generate PIPELINE.toml

Worker processes and jobs import it by the same name through the inherited ``PYTHONPATH``.
``delay`` is not part of :attr:`Sleep.config`, so stores made with different delays (e.g. a fast
LocalCluster reference and a slow SLURM run) have the same fingerprint and must be bit-identical.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.simulators import register


@register("sleep")
class Sleep(Simulator):
    """``delay`` seconds of sleep, then an ``npix x npix`` map ``a + b * N(0, 1)`` from the sample's seed."""

    version = "1"

    def __init__(self, npix: int = 8, delay: float = 0.0) -> None:
        self.npix, self.delay = npix, delay

    @property
    def parameters(self):
        return (Parameter("a", 0.0, 1.0, units="1", long_name="offset"),
                Parameter("b", 0.1, 1.0, units="1", long_name="noise amplitude"))

    @property
    def axes(self):
        return (Axis.linear("y", 0.0, 1.0, self.npix, units="1", long_name="y"),
                Axis.linear("x", 0.0, 1.0, self.npix, units="1", long_name="x"))

    @property
    def outputs(self):
        return (Output("map", ("y", "x"), dtype="float32", units="1", long_name="noise map"),)

    @property
    def config(self):
        return {"npix": self.npix}

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        noise = np.random.default_rng(seed).standard_normal((self.npix, self.npix))
        return {"map": params["a"] + params["b"] * noise}
