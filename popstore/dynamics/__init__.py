"""Stellar dynamics: distribution functions, potentials, samplers and the acceleration method."""
