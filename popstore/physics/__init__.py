"""Physics shared by more than one science domain (so that no domain imports another).

- :mod:`~popstore.physics.profiles`: Hernquist, Miyamoto-Nagai and NFW potentials and forces (numpy or torch).
"""
