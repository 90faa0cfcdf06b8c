"""The azimuthally averaged power spectrum of 2D maps as a fixed torch layer, and an embedding built on it.

For a statistically isotropic Gaussian random field the power spectrum is a sufficient statistic of its
parameters: the field's likelihood depends on the map only through ``|x_k|^2`` averaged over directions.
It is the summary cosmology reaches for first, and the baseline that the CAMELS and CAMELS Multifield
Dataset networks are measured against (Villaescusa-Navarro et al. 2021, ApJ 915, 71;
Villaescusa-Navarro et al. 2022, ApJS 259, 61). :class:`PowerSpectrum` computes it with :func:`torch.fft.fft2`
for a whole batch at once, with no weights; :class:`SpectrumEmbedding` follows it with a small MLP to the
summary handed to a density estimator.
"""

from __future__ import annotations

import torch
from torch import nn


class PowerSpectrum(nn.Module):
    """Azimuthally averaged power spectrum of every map in ``(..., H, W)`` (batch and channel axes first).

    Per Fourier mode ``P_k = |X_k|^2 / (H W)``, with ``X`` the unnormalised discrete Fourier transform
    (:func:`torch.fft.fft2`): white noise of variance ``s^2`` has ``P_k = s^2`` on average, and by Parseval
    the sum of ``P_k`` over every mode but ``k = 0`` is ``H W`` times the map's variance. Wavenumbers are in
    cycles per pixel (:func:`numpy.fft.fftfreq`; multiply by the map side in pixels for cycles per map side);
    ``|k|`` is binned into shells of width ``1 / min(H, W)`` cycles per pixel (the fundamental mode of the
    shorter side) centred on its multiples, from the fundamental up to the corners of the Fourier plane
    (``|k| = 0.5 sqrt 2`` for square maps), so every mode but ``k = 0`` is in exactly one shell. The ``k = 0``
    mode, the map mean, is not part of the spectrum. Shells holding no mode (possible for elongated maps) are
    left out.

    Output ``(..., n_bins)``: the mean ``P_k`` of each shell, or its natural logarithm where ``log``.
    Attributes: ``k`` (mean ``|k|`` of each shell's modes, cycles per pixel) and ``counts`` (modes per shell).
    """

    def __init__(self, shape: tuple[int, int], log: bool = True) -> None:
        super().__init__()
        h, w = (int(n) for n in shape)
        self.shape, self.log = (h, w), log
        k = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(h, dtype=torch.float64),
                                        torch.fft.fftfreq(w, dtype=torch.float64), indexing="ij")).flatten()
        # mode 0 of the flattened plane is k = 0; the others go to the shell nearest their |k|
        shells, index = torch.unique(torch.round(k[1:] * min(h, w)).clamp_min(1), return_inverse=True)
        weights = torch.zeros(h * w, len(shells), dtype=torch.float64)
        weights[torch.arange(1, h * w), index] = 1.0
        counts = weights.sum(0)
        self.register_buffer("weights", (weights / counts).float(), persistent=False)
        self.register_buffer("counts", counts.long(), persistent=False)
        self.register_buffer("k", ((k[:, None] * weights).sum(0) / counts).float(), persistent=False)

    @property
    def n_bins(self) -> int:
        return self.counts.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"expected maps of shape {self.shape}, got {tuple(x.shape[-2:])}")
        power = torch.fft.fft2(x).abs().square().flatten(-2) / (self.shape[0] * self.shape[1])
        binned = power @ self.weights
        return torch.log(binned.clamp_min(torch.finfo(binned.dtype).tiny)) if self.log else binned


class SpectrumEmbedding(nn.Module):
    """Log power spectrum of every channel (:class:`PowerSpectrum`), standardised per channel and shell with
    the mean and standard deviation of ``sample``, then an MLP (``hidden`` units, two ReLU layers) to
    ``summary`` features.

    ``sample`` ``(B, C, H, W)``: maps as the embedding receives them (training maps after preprocessing);
    the statistics are buffers, saved and loaded with the weights.
    """

    def __init__(self, sample: torch.Tensor, summary: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.spectrum = PowerSpectrum(tuple(sample.shape[-2:]))
        with torch.no_grad():
            features = self.spectrum(sample).flatten(1)
        self.register_buffer("mean", features.mean(0))
        self.register_buffer("std", features.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones_like(features[0]))
        self.mlp = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, summary))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((self.spectrum(x).flatten(1) - self.mean) / self.std)
