"""Zero-phase band-pass filtering: equal to scipy's sosfiltfilt, and does what a band-pass should."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import sosfiltfilt as scipy_sosfiltfilt

from kdsleep.data.filters import bandpass_filter, design_bandpass, sosfiltfilt


@pytest.mark.parametrize(("l_freq", "h_freq"), [(0.3, 35.0), (0.5, None), (None, 40.0)])
def test_matches_scipy_sosfiltfilt(l_freq: float | None, h_freq: float | None) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3000)).cumsum(axis=1)
    sos = design_bandpass(200.0, l_freq, h_freq)
    np.testing.assert_allclose(sosfiltfilt(sos, x), scipy_sosfiltfilt(sos, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("axis", [0, -1])
def test_any_number_of_sections_along_any_axis(order: int, axis: int) -> None:
    # an odd number of sections leaves one to run alone after the pairs; each design gets its own states
    rng = np.random.default_rng(order)
    x = rng.standard_normal((400, 3)) if axis == 0 else rng.standard_normal((3, 400))
    for l_freq, h_freq in ((1.0, 30.0), (2.0, None), (None, 20.0)):
        sos = design_bandpass(100.0, l_freq, h_freq, order=order)
        expected = scipy_sosfiltfilt(sos, x, axis=axis)
        np.testing.assert_allclose(sosfiltfilt(sos, x, axis=axis), expected, rtol=1e-10, atol=1e-12)


def test_passes_band_and_rejects_outside_without_phase_shift() -> None:
    sfreq = 200.0
    t = np.arange(int(60 * sfreq)) / sfreq
    in_band = np.sin(2 * np.pi * 10.0 * t)
    x = in_band + 2.0 * np.sin(2 * np.pi * 60.0 * t) + 5.0 + 0.5 * np.sin(2 * np.pi * 0.02 * t)
    y = bandpass_filter(x, sfreq, 0.3, 35.0)
    core = slice(int(10 * sfreq), int(-10 * sfreq))
    # zero phase: the in-band sine comes back in place, not delayed
    np.testing.assert_allclose(y[core], in_band[core], atol=0.02)


def test_axis_and_float32() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 3)).astype(np.float32)
    y = bandpass_filter(x, 100.0, 1.0, 20.0, axis=0)
    assert y.dtype == np.float32 and y.shape == x.shape
    expected = bandpass_filter(x[:, 1].astype(np.float64), 100.0, 1.0, 20.0)
    np.testing.assert_allclose(y[:, 1], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((200.0, 35.0, 0.3), "below h_freq"),
        ((200.0, 0.3, 150.0), "h_freq"),
        ((200.0, -1.0, 30.0), "l_freq"),
        ((200.0, None, None), "at least one"),
        ((0.0, 0.3, 35.0), "sfreq"),
    ],
)
def test_bad_design_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        design_bandpass(*args)


def test_too_short_signal() -> None:
    with pytest.raises(ValueError, match="samples"):
        bandpass_filter(np.zeros(10), 200.0, 0.3, 35.0)
