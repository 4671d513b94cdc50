"""Per-lead spectrograms of 2.5-s windows at 100 Hz (Phan et al.: 12 x 250 -> 12 x 13 x 21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from kdsleep.ecg12.reader import list_records, read_record
from kdsleep.ecg12.spectrogram import (
    Spectrogram,
    consecutive_windows,
    random_windows,
    spectrogram,
    spectrogram_shape,
)


def test_shape_of_the_paper():
    x = torch.randn(12, 250)
    assert spectrogram(x).shape == (12, 13, 21)
    assert spectrogram_shape(250) == (13, 21)


@pytest.mark.parametrize("n_times", [25, 100, 250, 333])
def test_equals_scipy_stft_magnitude(n_times: int):
    rng = np.random.default_rng(n_times)
    x = rng.standard_normal((4, 12, n_times))
    expected = np.abs(scipy.signal.stft(x, nperseg=25, noverlap=12)[2])
    got = spectrogram(torch.from_numpy(x))
    assert got.dtype == torch.float64
    assert got.shape == expected.shape == (4, 12, *spectrogram_shape(n_times))
    assert np.allclose(got.numpy(), expected, atol=1e-12)
    got32 = spectrogram(torch.from_numpy(x).float())
    assert got32.dtype == torch.float32
    assert np.allclose(got32.numpy(), expected, atol=1e-5)


def test_other_window_and_overlap():
    x = np.random.default_rng(1).standard_normal((3, 200))
    expected = np.abs(scipy.signal.stft(x, nperseg=32, noverlap=16)[2])
    assert np.allclose(spectrogram(torch.from_numpy(x), n_fft=32, n_overlap=16).numpy(), expected, atol=1e-12)


def test_batched_equals_one_by_one_and_module():
    x = torch.randn(5, 12, 250)
    batched = spectrogram(x)
    single = torch.stack([spectrogram(window) for window in x])
    assert batched.shape == (5, 12, 13, 21)
    assert torch.allclose(batched, single)
    assert torch.equal(Spectrogram()(x), batched)


def test_sinusoid_peaks_at_its_frequency():
    # 100 Hz, 25-point FFT: bins 4 Hz apart; 20 Hz falls on bin 5
    t = torch.arange(250) / 100.0
    x = torch.sin(2 * torch.pi * 20 * t).repeat(12, 1)
    s = spectrogram(x)
    assert torch.all(s[:, :, 2:-2].argmax(dim=1) == 5)
    # a unit sinusoid has magnitude 1/2 in its bin after scaling by the window's sum
    assert s[0, 5, 10].item() == pytest.approx(0.5, abs=1e-3)


def test_gradient_flows():
    x = torch.randn(2, 12, 250, requires_grad=True)
    spectrogram(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_parameters():
    with pytest.raises(ValueError, match="n_overlap"):
        spectrogram(torch.randn(12, 250), n_fft=25, n_overlap=25)
    with pytest.raises(TypeError, match="torch.Tensor"):
        spectrogram(np.zeros((12, 250)))


def test_windows():
    signal = torch.arange(12 * 1000, dtype=torch.float32).reshape(12, 1000)
    g = torch.Generator().manual_seed(0)
    windows = random_windows(signal, 6, generator=g)
    assert windows.shape == (6, 12, 250)
    for window in windows:
        start = int(window[0, 0].item())
        assert torch.equal(window, signal[:, start : start + 250])
    again = random_windows(signal, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(windows, again)
    tiles = consecutive_windows(signal)
    assert tiles.shape == (4, 12, 250)
    assert torch.equal(tiles[1], signal[:, 250:500])
    with pytest.raises(ValueError, match="fewer than a window"):
        random_windows(signal[:, :100], 1)


def test_real_records_to_spectrograms(shared_data: Path):
    """500 Hz record -> 100 Hz -> random 2.5-s windows -> 12 x 13 x 21 spectrograms."""
    path = list_records(shared_data / "cinc2020" / "labelled")[0]
    record = read_record(path, sfreq=100)
    assert record.signal.shape == (12, record.header.n_samples // 5)
    windows = random_windows(torch.from_numpy(record.signal), 8, generator=torch.Generator().manual_seed(1))
    s = spectrogram(windows)
    assert s.shape == (8, 12, 13, 21)
    assert torch.isfinite(s).all() and s.max() > 0


@pytest.mark.cuda
def test_cuda_matches_cpu():
    x = torch.randn(16, 12, 250, dtype=torch.float64)
    on_gpu = spectrogram(x.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), spectrogram(x), atol=1e-10)
