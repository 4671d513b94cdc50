"""HRV features on synthetic beat series whose heart rate and variability are known."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.hrv_features import epoch_hrv_features, normalise_per_recording, recording_features


def _beats(rr: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rr)])


def _column(features: np.ndarray, names: list[str], name: str) -> np.ndarray:
    return features[:, names.index(name)]


def test_constant_heart_rate():
    beats = _beats(np.full(1300, 0.8))  # 75 bpm for about 17 min
    x, names = epoch_hrv_features(beats, 30)
    middle = slice(10, 20)  # epochs whose 10-min windows lie inside the recording
    np.testing.assert_allclose(_column(x, names, "mean_hr_60s")[middle], 75.0, rtol=1e-9)
    np.testing.assert_allclose(_column(x, names, "mean_hr_600s")[middle], 75.0, rtol=1e-9)
    np.testing.assert_allclose(_column(x, names, "rmssd_300s")[middle], 0.0, atol=1e-6)
    np.testing.assert_allclose(_column(x, names, "sdnn_300s")[middle], 0.0, atol=1e-3)
    np.testing.assert_allclose(_column(x, names, "pnn50_300s")[middle], 0.0)
    np.testing.assert_allclose(_column(x, names, "d_mean_hr_lag+1")[middle], 0.0, atol=1e-9)


def test_alternating_intervals_give_known_rmssd_sdnn_pnn50():
    # 0.9 s / 1.0 s alternating: successive differences of 100 ms, SD of the intervals 50 ms
    rr = np.tile([0.9, 1.0], 600)
    x, names = epoch_hrv_features(_beats(rr), 30)
    middle = slice(5, 25)
    np.testing.assert_allclose(_column(x, names, "rmssd_300s")[middle], 100.0, rtol=1e-6)
    np.testing.assert_allclose(_column(x, names, "pnn50_300s")[middle], 100.0)
    # sample SD of n alternating values: 50 ms * sqrt(n / (n - 1)); about 158 intervals in 5 min
    np.testing.assert_allclose(_column(x, names, "sdnn_300s")[middle], 50.0, rtol=0.01)
    expected_hr = np.mean([60 / 0.9, 60 / 1.0])
    np.testing.assert_allclose(_column(x, names, "mean_hr_300s")[middle], expected_hr, rtol=0.005)


@pytest.mark.parametrize(("frequency", "dominant"), [(0.25, "hf"), (0.08, "lf")])
def test_spectral_band_follows_the_modulation(frequency, dominant):
    # heart rate modulated sinusoidally around 60 bpm: the power lies in the band of the modulation
    times = [0.0]
    while times[-1] < 1200:
        hr = 60.0 + 5.0 * np.sin(2 * np.pi * frequency * times[-1])
        times.append(times[-1] + 60.0 / hr)
    x, names = epoch_hrv_features(np.asarray(times), 40)
    ratio = _column(x, names, "lf_hf")[10:30]  # log10(LF / HF)
    assert np.all(ratio > 1.0) if dominant == "lf" else np.all(ratio < -1.0)


def test_gaps_and_edges_give_nan_not_errors():
    beats = _beats(np.full(200, 1.0))  # 200 s of beats, then nothing
    x, names = epoch_hrv_features(beats, 20)
    mean_hr = _column(x, names, "epoch_mean_hr")
    assert np.isfinite(mean_hr[:6]).all()
    assert np.isnan(mean_hr[8:]).all()


def test_normalisation_and_recording_features():
    rng = np.random.default_rng(0)
    rr = 0.9 + 0.05 * rng.standard_normal(3000)
    x, names = recording_features(_beats(rr), 80)
    assert x.dtype == np.float32 and x.shape == (80, len(names))
    z = normalise_per_recording(np.column_stack([np.arange(10.0), np.full(10, 3.0)]))
    assert np.median(z[:, 0]) == 0 and np.allclose(z[:, 1], 0.0)
    hours = x[:, names.index("hours_elapsed")]
    np.testing.assert_allclose(hours[:2], [15 / 3600, 45 / 3600], rtol=1e-6)
    with pytest.raises(ValueError, match="n_epochs"):
        epoch_hrv_features(_beats(rr), 0)
