"""``solar_neighbourhood``: chunks of a Milky Way disc catalogue (Naik et al. 2021, arXiv:2112.07657).

One *sample* is one chunk of ``n_stars`` stars drawn exactly from a mixture
of quasi-isothermal DFs (:mod:`popstore.galaxy.dynamics.quasi_isothermal`) with
Staeckel actions (delta = 0.45 R0, as in the paper; ``actions="epicyclic"``
for the faster but ~6% out-of-equilibrium epicyclic version) in the
MWPotential2014-like potential (:mod:`popstore.galaxy.dynamics.potentials`), inside
``r_min < R < r_max``, ``|z| < z_max`` (1-16 kpc, 2.5 kpc in the paper).
A store of many samples with the same labels is one catalogue split into
chunks, written in parallel by :func:`popstore.generate`;
:func:`popstore.galaxy.dynamics.catalogue.catalogue_arrays` views it as one.

Labels (the disequilibrium of the sample):

- ``kick_vz`` [km/s]: the *perturbation*. Every star receives the same
  impulsive vertical velocity kick ``v_z -> v_z + kick_vz``, the impulse
  approximation of a distant perturber's passage that winds up into the
  vertical phase spiral (Antoja et al. 2018, Nature 561, 360; Binney &
  Schoenrich 2018, MNRAS 481, 1501). ``kick_vz = 0`` is the equilibrium
  (fiducial) sample. This is our concrete definition of "perturbed".
  With ``kick_fraction`` < 1 (config) only that fraction of the stars, chosen
  at random, is kicked: LocalFlows' experiment (Naik et al. 2021,
  arXiv:2112.07657; 10% of the stars kicked by +20 km/s in v_z), a
  perturbation localised in phase space rather than a bulk shift.
- ``time_myr`` [Myr]: the kicked sample is then integrated for this long in
  the potential (leapfrog, :func:`popstore.galaxy.dynamics.orbits.leapfrog`);
  0, 200 and 500 Myr give the paper's snapshots. The spatial cut applies at
  t = 0 only, so the number of stars per chunk is fixed.

``phi_max`` < pi samples an azimuthal wedge around the Sun only (exact for
this axisymmetric setup, see :class:`~popstore.galaxy.dynamics.quasi_isothermal.Selection`);
after an evolution every star's azimuth is redrawn in the wedge
(:func:`~popstore.galaxy.dynamics.quasi_isothermal.randomise_azimuth`), since the
evolved full-disc sample is still axisymmetric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from popstore.galaxy.dynamics.orbits import leapfrog
from popstore.galaxy.dynamics.quasi_isothermal import (
    DEFAULT_POPULATIONS,
    QuasiIsothermal,
    QuasiIsothermalMixture,
    Selection,
    randomise_azimuth,
)
from popstore.simulator import Output, Parameter, Simulator
from popstore.simulators import register
from popstore.galaxy.hernquist_simulator import POSITIONS, VELOCITIES, phase_space_outputs


@register("solar_neighbourhood")
class SolarNeighbourhood(Simulator):
    """One chunk of a quasi-isothermal disc catalogue (see module docstring).

    Parameters
    ----------
    n_stars : int
        Stars per chunk (sample).
    populations : sequence of dict
        :class:`~popstore.galaxy.dynamics.quasi_isothermal.QuasiIsothermal` keyword
        sets; default: the three-population disc ``DEFAULT_POPULATIONS``.
    r_min, r_max, z_max : float
        Spatial selection at t = 0 [kpc].
    phi_max : float
        Half-opening [rad] of the azimuthal wedge around the Sun (pi: whole disc).
    dt_myr : float
        Leapfrog step [Myr].
    actions : {"staeckel", "epicyclic"}
        Actions of the qDFs (see :class:`~popstore.galaxy.dynamics.quasi_isothermal.QuasiIsothermalMixture`).
    delta : float or None
        Staeckel focal distance [kpc] (None: 0.45 R0).
    rejection_bounds : sequence of float or None
        Per-population bounds of the Staeckel sampler (None: the defaults).
    torch_threads : int
        torch intra-op threads in the worker (1: one simulation per core).
    kick_fraction : float
        Fraction of the stars (exactly ``round(kick_fraction * n_stars)``, drawn at random) that receive
        ``kick_vz``; 1 kicks every star.
    """

    version = "2"

    def __init__(self, n_stars: int = 25_000, populations: Sequence[Mapping[str, float]] | None = None,
                 r_min: float = 1.0, r_max: float = 16.0, z_max: float = 2.5, phi_max: float = np.pi,
                 dt_myr: float = 0.5, torch_threads: int = 1, actions: str = "staeckel", delta: float | None = None,
                 rejection_bounds: Sequence[float] | None = None, kick_fraction: float = 1.0) -> None:
        if n_stars < 1:
            raise ValueError(f"n_stars must be >= 1, got {n_stars}")
        if not 0 < kick_fraction <= 1:
            raise ValueError(f"kick_fraction must be in (0, 1], got {kick_fraction}")
        self.kick_fraction = float(kick_fraction)
        pops = tuple(QuasiIsothermal(**p) for p in populations) if populations is not None else DEFAULT_POPULATIONS
        if dt_myr <= 0:
            raise ValueError(f"need dt_myr > 0, got {dt_myr}")
        self.n_stars, self.dt_myr, self.torch_threads = int(n_stars), float(dt_myr), int(torch_threads)
        self.selection = Selection(float(r_min), float(r_max), float(z_max), float(phi_max))
        self.mixture = QuasiIsothermalMixture(pops, actions=actions, delta=delta, rejection_bounds=rejection_bounds)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("kick_vz", 0.0, 50.0, units="km s-1", long_name="impulsive vertical velocity kick"),
            Parameter("time_myr", 0.0, 1000.0, units="Myr", long_name="time evolved after the kick"),
        )

    @property
    def outputs(self) -> tuple[Output, ...]:
        return phase_space_outputs() + (Output("population", ("star",), "int8", "1", "index of the qDF population", role="catalogue"),)

    @property
    def sizes(self) -> dict[str, int]:
        return {"star": self.n_stars}

    @property
    def config(self) -> dict[str, Any]:
        return {"n_stars": self.n_stars, "populations": [asdict(p) for p in self.mixture.populations],
                **asdict(self.selection), "dt_myr": self.dt_myr, "torch_threads": self.torch_threads,
                "actions": self.mixture.actions, "delta": self.mixture.staeckel.delta if self.mixture.staeckel else None,
                "proposal": [list(c) for c in self.mixture.proposal], "rejection_bounds": self.mixture.rejection_bounds.tolist(),
                "potential": asdict(self.mixture.potential)} | (
                    {"kick_fraction": self.kick_fraction} if self.kick_fraction < 1 else {})  # stores kicked whole keep their identity

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        torch.set_num_threads(self.torch_threads)
        rng = np.random.default_rng(seed)
        x, v, pop = self.mixture.sample(self.n_stars, rng, self.selection)
        if self.kick_fraction < 1:
            v[rng.choice(self.n_stars, size=round(self.kick_fraction * self.n_stars), replace=False), 2] += float(params["kick_vz"])
        else:
            v[:, 2] += float(params["kick_vz"])
        if float(params["time_myr"]) > 0:
            x, v = leapfrog(self.mixture.potential.acceleration, x, v, float(params["time_myr"]), self.dt_myr)
            x, v = randomise_azimuth(x, v, self.selection.phi_max, rng)
        out = {name: a[:, i] for names, a in ((POSITIONS, x), (VELOCITIES, v)) for i, (name, _) in enumerate(names)}
        out["population"] = pop.astype(np.int8)
        return out
