"""Epoching aligned to hypnogram onsets, masking, and windows of consecutive epochs."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.epoching import epoch_signals
from kdsleep.data.readers.quality import BadSignalWarning
from kdsleep.data.stages import SleepStage

S = SleepStage


def _ramp(n_channels: int, seconds: float, sfreq: float) -> np.ndarray:
    # sample value = time in seconds (+ channel offset), so segment positions can be read off the data
    t = np.arange(int(seconds * sfreq)) / sfreq
    return np.stack([t + 1000 * c for c in range(n_channels)])


def test_epochs_aligned_to_onset_and_trailing_partial_dropped() -> None:
    sfreq = 10.0
    data = _ramp(2, 100.0, sfreq)  # 100 s
    stages = np.array([S.W, S.N1, S.N2, S.N3], dtype=np.int8)  # 4 x 30 s from 7 s: the last is partial
    ep = epoch_signals(data, sfreq, stages, onset=7.0, channel_names=["EEG", "ECG"])
    assert ep.data.shape == (3, 2, 300)
    np.testing.assert_allclose(ep.onsets, [7.0, 37.0, 67.0])
    np.testing.assert_allclose(ep.data[:, 0, 0], [7.0, 37.0, 67.0])
    np.testing.assert_allclose(ep.data[1, 1, -1], 1000 + 37.0 + 29.9)
    assert ep.stages.tolist() == [S.W, S.N1, S.N2]
    assert not ep.bad.any()


def test_widened_20s_epochs_overlap() -> None:
    """MASS: 20-s scorings widened to 30 s by 5 s on each side; a first epoch that cannot widen is dropped."""
    sfreq = 10.0
    data = _ramp(1, 120.0, sfreq)
    stages = np.array([S.W, S.N2, S.N2, S.R, S.R], dtype=np.int8)
    # scoring starts at 2 s: the widened segments start 5 s earlier, every 20 s
    ep = epoch_signals(data, sfreq, stages, onset=-3.0, epoch_length=30.0, epoch_step=20.0)
    np.testing.assert_allclose(ep.onsets, [17.0, 37.0, 57.0, 77.0])
    np.testing.assert_allclose(ep.data[:, 0, 0], [17.0, 37.0, 57.0, 77.0])
    assert ep.data.shape[-1] == 300
    assert ep.stages.tolist() == [S.N2, S.N2, S.R, S.R]


def test_unscored_epochs_get_minus_one() -> None:
    data = _ramp(1, 150.0, 10.0)
    stages = np.array([S.W, S.UNSCORED, S.N3, S.MOVEMENT, S.R], dtype=np.int8)
    ep = epoch_signals(data, 10.0, stages)
    assert ep.labels("w-l-d-r").tolist() == [0, -1, 2, -1, 3]
    assert ep.labels("aasm-5").tolist() == [0, -1, 3, -1, 4]


def test_nan_epochs_masked_with_warning() -> None:
    data = _ramp(1, 90.0, 10.0)
    data[0, 650] = np.nan
    with pytest.warns(BadSignalWarning, match="rec02: 1 of 3 epochs"):
        ep = epoch_signals(data, 10.0, np.full(3, S.N2, dtype=np.int8), source="rec02")
    assert ep.bad.tolist() == [False, False, True]
    assert ep.labels("w-n-r").tolist() == [1, 1, -1]


def test_no_epoch_fits_is_an_error_naming_the_recording() -> None:
    with pytest.raises(ValueError, match="rec07.*no 30-s epoch fits"):
        epoch_signals(_ramp(1, 20.0, 10.0), 10.0, np.zeros(2, np.int8), source="rec07")


def test_fractional_epoch_samples_rejected() -> None:
    with pytest.raises(ValueError, match="whole number of samples"):
        epoch_signals(_ramp(1, 100.0, 10.0), 10.0, np.zeros(2, np.int8), epoch_length=30.05)
