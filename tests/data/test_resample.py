"""Accuracy, conventions and argument checks of the numba polyphase resampler."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from kdsleep.data import resample
from kdsleep.data.resample import resample_ratio

RATIOS = [(256, 200), (250, 200), (128, 200), (100, 200), (50, 200), (500, 100), (360, 200)]


def _sines(t: np.ndarray, freqs: np.ndarray, amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    return np.sum(amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]), axis=0)


@pytest.mark.parametrize(("sfreq_in", "sfreq_out"), RATIOS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accuracy_at_least_resample_poly(sfreq_in: int, sfreq_out: int, dtype: type) -> None:
    """Against sinusoids sampled at both rates, away from the edges, the error is no larger than scipy's."""
    rng = np.random.default_rng(sfreq_in * 1000 + sfreq_out)
    nyquist = min(sfreq_in, sfreq_out) / 2
    freqs = np.array([0.02, 0.1, 0.3, 0.55, 0.7, 0.8]) * nyquist
    amps = rng.uniform(0.5, 2.0, freqs.size)
    phases = rng.uniform(0, 2 * np.pi, freqs.size)
    duration = 40.0
    x = _sines(np.arange(int(duration * sfreq_in)) / sfreq_in, freqs, amps, phases).astype(dtype)
    reference = _sines(np.arange(int(duration * sfreq_out)) / sfreq_out, freqs, amps, phases)
    up, down = resample_ratio(sfreq_in, sfreq_out)
    ours = resample(x, sfreq_in, sfreq_out)
    theirs = resample_poly(x, up, down)
    assert ours.dtype == dtype
    assert ours.shape == theirs.shape == reference.shape
    core = slice(5 * sfreq_out, -5 * sfreq_out)
    err_ours = np.sqrt(np.mean((ours[core] - reference[core]) ** 2))
    err_theirs = np.sqrt(np.mean((theirs[core] - reference[core]) ** 2))
    # regression floor: the sharper filter keeps the error well below scipy's (about 0.03-0.06 of it)
    assert err_ours <= 0.25 * err_theirs, (err_ours, err_theirs)
    assert err_ours < 0.05 * np.sqrt(np.sum(amps**2) / 2)


def test_known_ratios() -> None:
    assert resample_ratio(256, 200) == (25, 32)
    assert resample_ratio(250, 200) == (4, 5)
    assert resample_ratio(50, 200) == (4, 1)
    assert resample_ratio(100.0, 200.0) == (2, 1)
    assert resample_ratio(360, 200) == (5, 9)


def test_alignment_and_length_match_resample_poly() -> None:
    """Same sample grid and length as resample_poly, including lengths that do not divide evenly."""
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal(1001))
    for sfreq_in, sfreq_out in [(256, 200), (128, 200), (500, 100)]:
        up, down = resample_ratio(sfreq_in, sfreq_out)
        ours = resample(x, sfreq_in, sfreq_out)
        theirs = resample_poly(x, up, down)
        assert ours.shape == theirs.shape
        # both are low-passed versions of a random walk: they agree closely except in the transition band
        core = slice(50, -50)
        assert np.corrcoef(ours[core], theirs[core])[0, 1] > 0.999


def test_dc_gain_is_one() -> None:
    x = np.full(5000, 3.5)
    y = resample(x, 256, 200)
    np.testing.assert_allclose(y[200:-200], 3.5, rtol=1e-4)


def test_anti_aliasing_suppresses_components_above_new_nyquist() -> None:
    sfreq_in = 500
    t = np.arange(20 * sfreq_in) / sfreq_in
    x = np.sin(2 * np.pi * 80.0 * t)  # above the 50-Hz Nyquist frequency of 100 Hz
    y = resample(x, sfreq_in, 100)
    assert np.max(np.abs(y[300:-300])) < 1e-3


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_any_axis_matches_per_row(axis: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 640, 2)) if axis in (1, -2) else rng.standard_normal((640, 3, 2))
    if axis == -1:
        x = rng.standard_normal((3, 2, 640))
    y = resample(x, 256, 200, axis=axis)
    moved = np.moveaxis(x, axis, -1)
    expected = np.stack([resample(row, 256, 200) for row in moved.reshape(-1, 640)])
    np.testing.assert_allclose(np.moveaxis(y, axis, -1).reshape(-1, 500), expected, rtol=1e-12, atol=1e-12)
    assert y.shape[axis] == 500


def test_non_contiguous_and_integer_input() -> None:
    x = np.arange(2000, dtype=np.int32)[::2]
    y = resample(x, 100, 200)
    assert y.dtype == np.float64
    assert y.shape == (2000,)


def test_identity_ratio_copies() -> None:
    x = np.arange(10.0)
    y = resample(x, 200, 200)
    np.testing.assert_array_equal(x, y)
    assert y is not x


def test_nan_propagates() -> None:
    x = np.zeros(4000)
    x[2000] = np.nan
    y = resample(x, 256, 200)
    assert np.isnan(y).any()
    assert np.isfinite(y[:1000]).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sfreq_in": 0, "sfreq_out": 200}, ValueError, "sfreq_in"),
        ({"sfreq_in": 256, "sfreq_out": -1}, ValueError, "sfreq_out"),
        ({"sfreq_in": float("nan"), "sfreq_out": 200}, ValueError, "sfreq_in"),
        ({"sfreq_in": "256", "sfreq_out": 200}, TypeError, "sfreq_in"),
        ({"sfreq_in": 256, "sfreq_out": 200, "axis": 3}, ValueError, "axis"),
        ({"sfreq_in": 256, "sfreq_out": 200, "axis": 1.0}, TypeError, "axis"),
        ({"sfreq_in": np.pi, "sfreq_out": 200}, ValueError, "fraction"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        resample(np.zeros((2, 100)), **kwargs)


def test_bad_arrays() -> None:
    with pytest.raises(TypeError, match="dtype"):
        resample(np.zeros(10, dtype=complex), 256, 200)
    with pytest.raises(ValueError, match="scalar"):
        resample(np.float64(1.0), 256, 200)
    with pytest.raises(ValueError, match="no samples"):
        resample(np.zeros((2, 0)), 256, 200)
