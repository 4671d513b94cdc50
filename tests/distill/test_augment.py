from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdsleep.distill.augment import rate_stretch
from kdsleep.distill.config import ConfigError, TrainConfig


def _beats(rate_hz: float, epochs: int, spe: int, sfreq: float) -> torch.Tensor:
    t = torch.arange(epochs * spe, dtype=torch.float64) / sfreq
    return torch.cos(2 * math.pi * rate_hz * t).float().reshape(1, 1, -1)


def _dominant_hz(x: np.ndarray, sfreq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sfreq)[spectrum.argmax()])


def test_rate_stretch_changes_the_rate_by_one_factor_per_window_and_keeps_epoch_centres():
    sfreq, spe, epochs = 100.0, 3000, 3
    x = _beats(1.0, epochs, spe, sfreq).repeat(4, 2, 1)
    x[:, 1] *= 2  # a second channel: same factor, its own values
    torch.manual_seed(0)
    y = rate_stretch(x, 0.2, spe)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.allclose(y[:, 1], 2 * y[:, 0], atol=1e-5)
    rates = []
    for b in range(4):
        per_epoch = [_dominant_hz(y[b, 0, e * spe : (e + 1) * spe].numpy(), sfreq) for e in range(epochs)]
        # one factor per window, within [1/1.2, 1.2] of the 1-Hz rhythm (FFT bins of 1/30 Hz)
        assert max(per_epoch) - min(per_epoch) < 0.04
        assert 1 / 1.2 - 0.04 <= per_epoch[0] <= 1.2 + 0.04
        rates.append(per_epoch[0])
    assert max(rates) - min(rates) > 0.05  # windows drew different factors


def test_rate_stretch_reads_each_epoch_about_its_centre():
    """On a ramp (x = t) linear interpolation is exact: y(t) = c_e + (t - c_e) * s, clamped to the window."""
    spe, epochs = 10, 3
    x = torch.arange(spe * epochs, dtype=torch.float64).reshape(1, 1, -1).repeat(3, 1, 1)
    torch.manual_seed(3)
    y = rate_stretch(x, 0.3, spe)[:, 0]
    t = torch.arange(spe * epochs, dtype=torch.float64)
    centre = (t // spe) * spe + (spe - 1) / 2
    for b in range(3):
        inner = slice(spe, 2 * spe)  # the middle epoch never reaches the clamp
        s = (y[b, inner] - centre[inner]) / (t[inner] - centre[inner])
        assert torch.allclose(s, s[0].expand_as(s)) and 1 / 1.3 - 1e-9 <= float(s[0]) <= 1.3 + 1e-9
        assert float(y[b].min()) >= 0 and float(y[b].max()) <= spe * epochs - 1


def test_rate_stretch_identity_and_errors():
    x = torch.randn(2, 1, 40)
    assert rate_stretch(x, 0.0, 10) is x
    torch.manual_seed(1)
    a = rate_stretch(x, 0.1, 10)
    torch.manual_seed(1)
    assert torch.equal(a, rate_stretch(x, 0.1, 10))  # seeded: the same factors
    with pytest.raises(ValueError, match=r"max_stretch must be in \[0, 1\)"):
        rate_stretch(x, 1.5, 10)
    with pytest.raises(ValueError, match=r"epochs \* 7"):
        rate_stretch(x, 0.1, 7)


def test_rate_stretch_needs_the_waveform_student():
    with pytest.raises(ConfigError, match=r"ecg_rate_stretch = 0.1 needs \[data\] ecg_input = 'raw'"):
        TrainConfig.from_dict({"training": {"ecg_rate_stretch": 0.1}, "data": {"ecg_input": "ihr"}})
    with pytest.raises(
        ConfigError, match=r"\[training\] ecg_rate_stretch = 1.0, expected a number in \[0, 1\)"
    ):
        TrainConfig.from_dict({"training": {"ecg_rate_stretch": 1.0}})
    assert TrainConfig.from_dict({"training": {"ecg_rate_stretch": 0.1}}).training.ecg_rate_stretch == 0.1
