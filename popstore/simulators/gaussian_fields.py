"""``gaussian_fields``: 2D multi-field maps of a log-normal random field.

The stand-in for the CAMELS Multifield Dataset (Villaescusa-Navarro et al.
2022, ApJS 259, 61) in tests and demos: two physical parameters shape the
field's power spectrum, a nuisance parameter smooths it, and several fields
per sample are nonlinear functions of the same underlying field.

Model, on a periodic ``npix x npix`` grid of side ``box_size``:

1. A Gaussian field ``g`` with power per Fourier mode
   ``P(k) = amplitude * k**-slope / <k**-slope>`` (``k`` in units of the
   fundamental mode, ``<.>`` the mean over all modes of the grid with the
   ``k = 0`` mode set to zero), so that ``amplitude`` is exactly the pixel
   variance of ``g`` before smoothing and ``slope`` is the spectral index.
2. Smoothing by a Gaussian beam of standard deviation ``smoothing`` pixels:
   ``g_k -> g_k exp(-k_phys**2 s**2 / 2)``.
3. ``density = exp(g - sigma_g**2 / 2)`` with ``sigma_g**2`` the analytic
   variance of the smoothed ``g``: a log-normal density contrast with
   ensemble mean 1 (Coles & Jones 1991, MNRAS 248, 1).
4. ``temperature = T0 * density**(gamma - 1)``: the power-law
   temperature-density relation of the photo-heated intergalactic medium
   (Hui & Gnedin 1997, MNRAS 292, 27), T0 = 1e4 K, gamma = 1.6 by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from popstore.cf import megaparsec_over_h
from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.simulators import register


@register("gaussian_fields")
class GaussianFields(Simulator):
    """Log-normal density and temperature maps (see module docstring).

    Parameters
    ----------
    npix : int
        Pixels per side (a power of two keeps the CNN happy).
    box_size : float
        Side of the periodic box, Mpc/h (h = 0.6711 as in CAMELS; stored as the CF unit 1.490091 megaparsec).
    T0 : float
        Temperature at mean density, K.
    gamma : float
        Slope of the temperature-density relation.
    """

    version = "1"

    def __init__(self, npix: int = 64, box_size: float = 25.0, T0: float = 1.0e4, gamma: float = 1.6) -> None:
        if npix < 4:
            raise ValueError(f"npix must be >= 4, got {npix}")
        self.npix, self.box_size, self.T0, self.gamma = int(npix), float(box_size), float(T0), float(gamma)
        k = np.fft.fftfreq(self.npix, d=1.0 / self.npix)  # integer wavenumbers, fundamental-mode units
        self._k = np.hypot(k[:, None], k[None, :])
        self._nonzero = self._k > 0

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("amplitude", 0.1, 1.0, long_name="variance of the log-density field before smoothing"),
            Parameter("slope", 1.0, 3.0, long_name="spectral index n of P(k) ~ k^-n"),
            Parameter("smoothing", 0.5, 2.0, units="1", long_name="Gaussian beam standard deviation in pixels (nuisance)"),
        )

    @property
    def axes(self) -> tuple[Axis, ...]:
        return (
            Axis.linear("y", 0.0, self.box_size, self.npix, units=megaparsec_over_h(0.6711), long_name="comoving y"),
            Axis.linear("x", 0.0, self.box_size, self.npix, units=megaparsec_over_h(0.6711), long_name="comoving x"),
        )

    @property
    def outputs(self) -> tuple[Output, ...]:
        return (
            Output("density", ("y", "x"), units="1", long_name="density contrast rho / <rho>"),
            Output("temperature", ("y", "x"), units="K", long_name="gas temperature"),
        )

    @property
    def config(self) -> dict[str, Any]:
        return {"npix": self.npix, "box_size": self.box_size, "T0": self.T0, "gamma": self.gamma}

    def power(self, amplitude: float, slope: float, smoothing: float) -> np.ndarray:
        """Power per Fourier mode of the smoothed Gaussian field, shape (npix, npix)."""
        shape = np.zeros_like(self._k)
        shape[self._nonzero] = self._k[self._nonzero] ** -slope
        p = amplitude * shape / shape.mean()
        k_pix = 2 * np.pi * self._k / self.npix  # radians per pixel
        return p * np.exp(-((k_pix * smoothing) ** 2))

    def gaussian_field(self, params: Mapping[str, float], seed: int) -> tuple[np.ndarray, float]:
        """The smoothed Gaussian field ``g`` and its analytic pixel variance."""
        p = self.power(params["amplitude"], params["slope"], params["smoothing"])
        white = np.random.default_rng(seed).standard_normal((self.npix, self.npix))
        g = np.fft.ifft2(np.fft.fft2(white) * np.sqrt(p)).real
        return g, float(p.mean())

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        g, var = self.gaussian_field(params, seed)
        density = np.exp(g - var / 2)
        return {"density": density, "temperature": self.T0 * density ** (self.gamma - 1)}
