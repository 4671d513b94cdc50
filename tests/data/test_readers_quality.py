"""NaN and flat stretches are masked with a warning, never repaired."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.readers import BadSignalWarning, bad_sample_mask, mask_bad_epochs
from kdsleep.data.recording import Hypnogram, Recording, Signal
from kdsleep.data.stages import SleepStage


def test_bad_sample_mask_finds_nan_and_long_flat_runs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    x[100:110] = np.nan
    x[500:800] = 3.0  # 3 s flat at 100 Hz
    x[900:920] = 1.0  # 0.2 s: too short to count
    bad = bad_sample_mask(x, 100.0, flat_seconds=2.0)
    assert bad[100:110].all() and bad[500:800].all()
    assert not bad[900:920].any() and bad.sum() == 310


def test_mask_bad_epochs_marks_artefact_and_warns():
    sfreq = 100.0
    rng = np.random.default_rng(1)
    eeg = rng.standard_normal(int(sfreq * 300))
    ecg = rng.standard_normal(int(sfreq * 300))
    eeg[int(sfreq * 65) : int(sfreq * 70)] = np.nan  # inside epoch 2
    ecg[int(sfreq * 200) : int(sfreq * 250)] = 0.0  # flat across epochs 6-8
    rec = Recording("s", {"EEG": Signal(eeg, sfreq), "ECG": Signal(ecg, sfreq)}, source="night.edf")
    hyp = Hypnogram(np.full(10, int(SleepStage.N2), dtype=np.int8))
    with pytest.warns(BadSignalWarning) as record:
        masked = mask_bad_epochs(rec, hyp)
    messages = [str(w.message) for w in record]
    assert messages[0].startswith(
        "night.edf: channel 'EEG': 5.0 s of NaN or flat signal (5.0 s NaN); 1 epoch"
    )
    assert messages[1].startswith(
        "night.edf: channel 'ECG': 50.0 s of NaN or flat signal (0.0 s NaN); 3 epoch"
    )
    assert np.flatnonzero(masked.stages == SleepStage.ARTEFACT).tolist() == [2, 6, 7, 8]
    assert (hyp.stages == SleepStage.N2).all()  # input untouched
    assert masked.to_classes("w-n-r")[2] == -1
