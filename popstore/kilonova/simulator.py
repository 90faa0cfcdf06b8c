"""``kilonova_du17``: DU17 kilonova light curves of binary neutron stars.

One sample is one binary ``(m1, m2, lambda1, lambda2)`` (``m1 >= m2``; build
tables with :func:`popstore.kilonova.params.binary_table`, which also orders
the Lambdas) and its absolute magnitudes (default g, r, i, z) on a fixed time grid
(Dietrich & Ujevic 2017, see :mod:`popstore.kilonova.lightcurve`), with the
ejecta properties as diagnostics.

The model is deterministic; the seed only drives the optional label noise:
with ``mass_noise > 0`` or ``lambda_noise > 0`` each sample also stores noisy
"observed" labels ``m1_obs, m2_obs, lambda1_obs, lambda2_obs``
(:func:`popstore.kilonova.params.perturb_labels`) that an emulator or an
inference network can be trained on instead of the true ones.

:meth:`KilonovaDU17.simulate_batch` is the vectorised form (whole parameter
table at once); :meth:`simulate` is its one-row case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from popstore.kilonova.ejecta import ejecta_from_binary
from popstore.kilonova.lightcurve import ALL_BANDS, BAND_WAVELENGTH, BANDS, DU17Settings, band_magnitudes, time_grid
from popstore.kilonova.params import (
    LABELS,
    binary_parameters,
    binary_table,
    check_ordering,
    noise_draws,
    perturb_labels,
)
from popstore.cf import SOLAR_MASS, SPEED_OF_LIGHT
from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.simulators import register

_DIAGNOSTICS = (
    ("ejecta_mass", SOLAR_MASS, "dynamical ejecta mass in solar masses (DU17 eq. 3.1)"),
    ("ejecta_velocity", SPEED_OF_LIGHT, "ejecta velocity sqrt(v_rho^2 + v_z^2) in units of c (DU17 eq. 3.9)"),
    ("theta_ej", "rad", "ejecta polar opening angle (DU17 eq. 3.12)"),
    ("phi_ej", "rad", "ejecta azimuthal opening angle 4 theta + pi/2 (DU17 eq. 3.13)"),
)


@register("kilonova_du17")
class KilonovaDU17(Simulator):
    """DU17 light curves; every keyword is stored in the config (see module docstring).

    Parameters
    ----------
    t_min, t_max, dt : time grid [day] (KilonovaML: 0, 11, 0.01).
    bands : subset of ``u, g, r, i, z, y, J, H, K`` (default g, r, i, z, as KilonovaML).
    kappa, eps0, alpha, eth, v_min : :class:`~popstore.kilonova.lightcurve.DU17Settings`.
    m_range, lambda_range : per-star prior ranges (metadata of the labels).
    mass_noise : Gaussian sigma [Msun] of the observed masses (0: no noisy labels).
    lambda_noise : fractional (log-normal) sigma of the observed Lambdas.
    """

    version = "1"

    def __init__(
        self,
        t_min: float = 0.0,
        t_max: float = 11.0,
        dt: float = 0.01,
        bands: Sequence[str] = BANDS,
        kappa: float = 10.0,
        eps0: float = 1.58e10,
        alpha: float = 1.2,
        eth: float = 0.5,
        v_min: float = 0.02,
        m_range: Sequence[float] = (1.0, 2.0),
        lambda_range: Sequence[float] = (50.0, 5000.0),
        mass_noise: float = 0.0,
        lambda_noise: float = 0.0,
    ) -> None:
        unknown = [b for b in bands if b not in BAND_WAVELENGTH]
        if unknown or not bands:
            raise ValueError(f"bands must be a non-empty subset of {ALL_BANDS}, got {list(bands)}")
        if mass_noise < 0 or lambda_noise < 0:
            raise ValueError("label noise levels must be >= 0")
        self.time = time_grid(t_min, t_max, dt)
        self.bands = tuple(bands)
        self.settings = DU17Settings(kappa=kappa, eps0=eps0, alpha=alpha, eth=eth, v_min=v_min)
        self.m_range = (float(m_range[0]), float(m_range[1]))
        self.lambda_range = (float(lambda_range[0]), float(lambda_range[1]))
        self.mass_noise = float(mass_noise)
        self.lambda_noise = float(lambda_noise)
        self._grid = dict(t_min=float(t_min), t_max=float(t_max), dt=float(dt))

    @property
    def noisy(self) -> bool:
        return self.mass_noise > 0 or self.lambda_noise > 0

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return binary_parameters(self.m_range, self.lambda_range)

    def parameter_table(self, n: int, seed: int, design: str = "uniform",
                        ranges: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
        """``n`` ordered binaries (``m1 >= m2``, ``lambda1 <= lambda2``, :func:`binary_table`).

        Per-star ranges come from ``m_range`` and ``lambda_range``; ``ranges`` is not supported.
        """
        if ranges:
            raise ValueError("kilonova_du17: set m_range / lambda_range in [simulator.config], not [priors.ranges]")
        return binary_table(n, seed, self.m_range, self.lambda_range, design)

    @property
    def axes(self) -> tuple[Axis, ...]:
        return (
            Axis("band", values=list(self.bands), long_name="photometric band",
                 attrs={"wavelength_angstrom": [BAND_WAVELENGTH[b] for b in self.bands]}),
            Axis("time", values=self.time, units="day", long_name="time since merger"),
        )

    @property
    def outputs(self) -> tuple[Output, ...]:
        outs = [Output("mag", ("band", "time"), units="1",
                       long_name="DU17 absolute AB magnitude (NaN where the model is undefined)", finite=False)]
        outs += [Output(n, (), dtype="float64", units=u, long_name=ln, role="diagnostic") for n, u, ln in _DIAGNOSTICS]
        if self.noisy:
            outs += [Output(f"{n}_obs", (), dtype="float64", units=p.units, long_name=f"noisy {p.long_name}",
                            role="diagnostic") for n, p in zip(LABELS, self.parameters)]
        return tuple(outs)

    @property
    def config(self) -> dict[str, Any]:
        return {**self._grid, "bands": list(self.bands), **{k: v for k, v in self.settings.to_dict().items()
                                                           if k != "distance_pc"},
                "m_range": list(self.m_range), "lambda_range": list(self.lambda_range),
                "mass_noise": self.mass_noise, "lambda_noise": self.lambda_noise}

    def simulate_batch(self, params: pd.DataFrame, seeds: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """All samples of ``params`` at once; outputs get a leading ``sample`` axis.

        Rows must be ordered (``m1 >= m2``, ``lambda1 <= lambda2``; ``ValueError``
        otherwise), so a box prior from :func:`popstore.priors.sample_table`
        fails loudly instead of filling the store with unphysical binaries.

        ``seeds`` (one per row) are needed only for noisy labels; row ``i``
        draws its noise from ``np.random.default_rng(seeds[i])``, exactly as
        :meth:`simulate` does.
        """
        check_ordering(params)
        cols = [params[c].to_numpy(dtype=float) for c in LABELS]
        ej = ejecta_from_binary(*cols)
        out = {"mag": band_magnitudes(ej, self.time, self.bands, self.settings),
               "ejecta_mass": ej.mass, "ejecta_velocity": ej.velocity, "theta_ej": ej.theta, "phi_ej": ej.phi}
        if self.noisy:
            if seeds is None or len(seeds) != len(params):
                raise ValueError("noisy labels need one seed per row")
            noisy = perturb_labels(params[list(LABELS)], noise_draws(seeds), self.mass_noise, self.lambda_noise)
            out.update({f"{c}_obs": noisy[c].to_numpy() for c in LABELS})
        return out

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        batch = self.simulate_batch(pd.DataFrame([{c: float(params[c]) for c in LABELS}]), [seed])
        return {k: v[0] for k, v in batch.items()}
