"""Stellar dynamics for phase-space mocks and the CBE acceleration method.

- :mod:`~popstore.galaxy.dynamics.constants`: units (kpc, km/s, Msun) and G;
- :mod:`~popstore.galaxy.dynamics.hernquist`: Hernquist sphere, isotropic and beta = 1/2 DFs, exact samplers;
- :mod:`~popstore.galaxy.dynamics.rejection`: exact vectorised rejection sampling of speeds;
- :mod:`~popstore.galaxy.dynamics.potentials`: MWPotential2014-like Milky Way potential (torch);
- :mod:`~popstore.galaxy.dynamics.staeckel`: Staeckel-fudge actions (galpy) in that potential, differentiable;
- :mod:`~popstore.galaxy.dynamics.quasi_isothermal`: quasi-isothermal disc DFs (Staeckel or epicyclic actions), exact samplers, log f;
- :mod:`~popstore.galaxy.dynamics.orbits`: vectorised leapfrog;
- :mod:`~popstore.galaxy.dynamics.acceleration`: least-squares accelerations from the collisionless Boltzmann equation;
- :mod:`~popstore.galaxy.dynamics.potential_fit`: one smooth potential fitted to the CBE at all positions at once;
- :mod:`~popstore.galaxy.dynamics.catalogue`: catalogue stores as arrays, the missing-v_los subset.
"""
