"""Galactic dynamics: phase-space mocks, normalising-flow distribution functions and accelerations.

The method of An et al. (2021, arXiv:2106.05981) and Naik et al. (2021, arXiv:2112.07657):

- :mod:`~popstore.galaxy.dynamics`: Hernquist and quasi-isothermal disc DFs, potentials, orbits,
  least-squares accelerations from the collisionless Boltzmann equation;
- :mod:`~popstore.galaxy.hernquist_simulator` (``hernquist``) and
  :mod:`~popstore.galaxy.solar_neighbourhood_simulator` (``solar_neighbourhood``): catalogue simulators;
- :mod:`~popstore.galaxy.workflow`, :mod:`~popstore.galaxy.missing_rv`, :mod:`~popstore.galaxy.figures`:
  the pipeline stages, the subset without line-of-sight velocities, and the figures;
- :mod:`~popstore.galaxy.cli`: ``popstore flows ...``.

The flows themselves are generic density estimators (:mod:`popstore.estimators.flows`).
"""
