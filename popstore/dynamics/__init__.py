"""Stellar dynamics for phase-space mocks and the CBE acceleration method.

- :mod:`~popstore.dynamics.constants`: units (kpc, km/s, Msun) and G;
- :mod:`~popstore.dynamics.hernquist`: Hernquist sphere, isotropic and beta = 1/2 DFs, exact samplers;
- :mod:`~popstore.dynamics.rejection`: exact vectorised rejection sampling of speeds;
- :mod:`~popstore.dynamics.potentials`: MWPotential2014-like Milky Way potential (torch);
- :mod:`~popstore.dynamics.staeckel`: Staeckel-fudge actions (galpy) in that potential, differentiable;
- :mod:`~popstore.dynamics.quasi_isothermal`: quasi-isothermal disc DFs (Staeckel or epicyclic actions), exact samplers, log f;
- :mod:`~popstore.dynamics.orbits`: vectorised leapfrog;
- :mod:`~popstore.dynamics.acceleration`: least-squares accelerations from the collisionless Boltzmann equation;
- :mod:`~popstore.dynamics.catalogue`: catalogue stores as arrays, the missing-v_los subset.
"""
