"""Small simulators for the core tests (importable by Dask worker processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from popstore.simulator import Axis, Output, Parameter, Simulator


class Ramp(Simulator):
    """A deterministic toy: map = a * x + b * y + noise(seed); fails when ``a > fail_above``.

    ``kill_marker``: the first worker to simulate sample value ``a == kill_a`` creates the
    marker file and kills its own process (a worker dying mid-task); retries then succeed.
    ``crash_a``: every worker that simulates ``a == crash_a`` dies (a simulator that segfaults).
    ``nan_above``: samples with ``a > nan_above`` return a NaN pixel (a simulator gone numerically wrong).
    ``delay`` seconds of sleep per sample slow it down for interruption tests.
    """

    name = "ramp"
    version = "1"

    def __init__(self, n: int = 8, fail_above: float = np.inf, kill_marker: str = "", kill_a: float = -1.0,
                 delay: float = 0.0, crash_a: float = -1.0, nan_above: float = np.inf) -> None:
        self.n, self.fail_above, self.kill_marker, self.kill_a, self.delay = n, fail_above, kill_marker, kill_a, delay
        self.crash_a, self.nan_above = crash_a, nan_above

    @property
    def parameters(self):
        return (Parameter("a", 0.0, 1.0, units="K", long_name="slope in x"),
                Parameter("b", 0.1, 10.0, log=True, units="K", long_name="slope in y"))

    @property
    def axes(self):
        return (Axis.linear("y", -1.0, 1.0, self.n, units="kpc", long_name="height"),
                Axis("x", edges=np.logspace(0, 2, self.n + 1), units="s", long_name="period", log=True),
                Axis("band", values=np.array(["g", "r"]), long_name="photometric band"))

    @property
    def outputs(self):
        return (Output("image", ("band", "y", "x"), units="K", long_name="toy map"),
                Output("n_bright", (), dtype="int64", role="diagnostic", long_name="pixels above 0"))

    @property
    def config(self):
        return {"n": self.n}

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        if self.delay:
            time.sleep(self.delay)
        if params["a"] > self.fail_above:
            raise RuntimeError(f"a = {params['a']:.3f} is unphysical")
        if self.kill_marker and params["a"] == self.kill_a and not Path(self.kill_marker).exists():
            Path(self.kill_marker).touch()
            os._exit(1)
        if params["a"] == self.crash_a:
            os._exit(1)
        y, x = np.meshgrid(np.linspace(-1, 1, self.n), np.linspace(0, 1, self.n), indexing="ij")
        noise = np.random.default_rng(seed).normal(size=(2, self.n, self.n))
        image = params["a"] * x + params["b"] * y + noise
        if params["a"] > self.nan_above:
            image[0, 0, 0] = np.nan
        return {"image": image, "n_bright": int((image > 0).sum())}


class BatchRamp(Ramp):
    """:class:`Ramp` vectorised over samples; the whole batch raises if any sample is unphysical."""

    calls = 0

    def simulate_batch(self, params, seeds):
        rows = [self.simulate(row, int(s)) for row, s in zip(params.to_dict("records"), seeds)]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class LinearGaussian(Simulator):
    """x(y, x) = theta_0 * 1 + theta_1 * g(x) + sigma * noise: a linear-Gaussian model whose posterior under
    its uniform prior is known exactly (a Gaussian truncated to the prior box), for calibration tests."""

    name = "linear_gaussian"
    version = "1"

    def __init__(self, n: int = 8, sigma: float = 1.0) -> None:
        self.n, self.sigma = n, sigma

    @property
    def parameters(self):
        return (Parameter("offset", -2.0, 2.0), Parameter("gradient", -2.0, 2.0))

    @property
    def axes(self):
        return (Axis.linear("y", 0.0, 1.0, self.n, units="m"), Axis.linear("x", 0.0, 1.0, self.n, units="m"))

    @property
    def outputs(self):
        return (Output("field", ("y", "x"), units="1", long_name="linear field plus noise"),)

    @property
    def config(self):
        return {"n": self.n, "sigma": self.sigma}

    def design(self) -> np.ndarray:
        """The (n*n, 2) design matrix M: x = M theta + sigma * noise."""
        g = np.broadcast_to(np.linspace(-1.0, 1.0, self.n)[None, :], (self.n, self.n))
        return np.stack([np.ones(self.n * self.n), g.ravel()], axis=1)

    def simulate(self, params, seed):
        theta = np.array([params["offset"], params["gradient"]])
        noise = np.random.default_rng(seed).standard_normal(self.n * self.n)
        return {"field": (self.design() @ theta + self.sigma * noise).reshape(self.n, self.n)}

    def exact_posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the untruncated Gaussian posterior for maps ``x`` (B, n, n)."""
        m = self.design()
        cov = np.linalg.inv(m.T @ m) * self.sigma**2
        return x.reshape(len(x), -1) @ m @ cov.T / self.sigma**2, cov


class Counts(Simulator):
    """Two float32 maps per sample: ``counts``, rare Poisson counts (mostly empty bins, like a pulsar count
    map), and ``field``, Gaussian noise around ``level`` (incompressible, like a continuous field).
    Fails (raises) when ``level > fail_above``."""

    name = "counts"
    version = "1"

    def __init__(self, n: int = 32, fail_above: float = np.inf) -> None:
        self.n, self.fail_above = n, fail_above

    @property
    def parameters(self):
        return (Parameter("rate", 0.01, 0.05, long_name="mean count per bin"), Parameter("level", 0.0, 1.0))

    @property
    def axes(self):
        return (Axis.linear("y", 0.0, 1.0, self.n, units="m"), Axis.linear("x", 0.0, 1.0, self.n, units="m"))

    @property
    def outputs(self):
        return (Output("counts", ("y", "x"), units="1", long_name="stars per bin"),
                Output("field", ("y", "x"), units="1", long_name="noisy level"))

    @property
    def config(self):
        return {"n": self.n}

    def simulate(self, params, seed):
        if params["level"] > self.fail_above:
            raise RuntimeError(f"level = {params['level']:.3f} is unphysical")
        rng = np.random.default_rng(seed)
        return {"counts": rng.poisson(params["rate"], (self.n, self.n)).astype(np.float32),
                "field": params["level"] + rng.normal(size=(self.n, self.n))}
