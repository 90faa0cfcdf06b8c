"""The power-spectrum layer (analytic plane waves, Parseval, batches of multi-channel maps) and the NPE
embedding built on it."""

import numpy as np
import pytest
import torch

from popstore.estimators.spectrum import PowerSpectrum, SpectrumEmbedding


def plane_wave(shape, m, n, amplitude):
    """``amplitude * cos(2 pi (m y / H + n x / W))``: all its power in the modes +-(m / H, n / W) cycles per pixel."""
    y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return torch.as_tensor(amplitude * np.cos(2 * np.pi * (m * y / shape[0] + n * x / shape[1])), dtype=torch.float64)


@pytest.mark.parametrize("m, n", [(3, 0), (0, 5), (4, 4), (2, -7)])
def test_a_plane_wave_puts_its_power_in_one_shell_with_the_analytic_amplitude(m, n):
    """Each of the two modes +-k has |X|^2 = (A H W / 2)^2, so P = A^2 H W / 4 per mode, averaged over the shell."""
    shape, a = (32, 32), 1.7
    layer = PowerSpectrum(shape, log=False).double()
    spectrum = layer(plane_wave(shape, m, n, a)).numpy()
    shell = int(np.argmin(np.abs(layer.k.numpy() - np.hypot(m, n) / 32)))
    expected = 2 * a**2 * shape[0] * shape[1] / 4 / int(layer.counts[shell])
    np.testing.assert_allclose(spectrum[shell], expected, rtol=1e-6)  # 1 / count held in float32
    np.testing.assert_allclose(np.delete(spectrum, shell), 0.0, atol=1e-20)
    assert abs(float(layer.k[shell]) - np.hypot(m, n) / 32) < 0.5 / 32  # cycles per pixel


@pytest.mark.parametrize("shape", [(32, 32), (12, 20), (7, 16)])
def test_parseval_the_shells_hold_n_pixels_times_the_map_variance(shape):
    layer = PowerSpectrum(shape, log=False).double()
    assert int(layer.counts.sum()) == shape[0] * shape[1] - 1 and int(layer.counts.min()) >= 1  # every mode but k = 0
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 2
    total = (layer(x) * layer.counts).sum(-1)
    np.testing.assert_allclose(total.numpy(), shape[0] * shape[1] * x.var(dim=(-2, -1), unbiased=False).numpy(),
                               rtol=1e-6)


def test_white_noise_has_flat_power_equal_to_its_variance():
    layer = PowerSpectrum((64, 64), log=False)
    x = 0.5 * torch.randn(200, 64, 64, generator=torch.Generator().manual_seed(1))
    spectrum = layer(x).mean(0)
    np.testing.assert_allclose(spectrum[:-3].numpy(), 0.25, rtol=0.1)  # the corner shells hold few modes


def test_batches_and_channels_are_each_their_own_spectrum_and_the_log_is_natural():
    layer = PowerSpectrum((16, 16))
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out = layer(x)
    assert out.shape == (4, 3, layer.n_bins)
    np.testing.assert_allclose(out[2, 1].numpy(), layer(x[2, 1]).numpy(), rtol=1e-6)  # one map alone
    np.testing.assert_allclose(layer(x[:, [2, 0, 1]]).numpy(), out[:, [2, 0, 1]].numpy(), rtol=1e-6)  # channels follow
    linear = PowerSpectrum((16, 16), log=False)
    np.testing.assert_allclose(out.exp().numpy(), linear(x).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"maps of shape \(16, 16\)"):
        layer(torch.zeros(4, 3, 16, 8))


def test_the_embedding_standardises_the_sample_spectrum_and_keeps_its_statistics_in_the_state():
    sample = torch.randn(256, 2, 16, 16, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 10.0]).view(1, 2, 1, 1)
    torch.manual_seed(0)
    net = SpectrumEmbedding(sample, summary=8)
    features = (net.spectrum(sample).flatten(1) - net.mean) / net.std
    np.testing.assert_allclose(features.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(features.std(0).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(net.mean[net.spectrum.n_bins:].mean() - net.mean[:net.spectrum.n_bins].mean(),
                               np.log(100.0), rtol=1e-3)  # channel 2 has 100x the power
    assert net(sample[:5]).shape == (5, 8)
    copy = SpectrumEmbedding(torch.zeros(2, 2, 16, 16), summary=8)
    copy.load_state_dict(net.state_dict())
    torch.testing.assert_close(copy(sample[:5]), net(sample[:5]))
