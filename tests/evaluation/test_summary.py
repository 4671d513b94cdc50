"""Sleep summary: total sleep time, efficiency, sleep onset and REM latency as defined by the AASM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdsleep.evaluation.summary import summarize_prediction, summarize_stages
from kdsleep.prediction import Prediction

WNR = ("W", "N", "R")


def test_hand_counted_night() -> None:
    #        W  W  N  N  W  N  R  R  ?  W   (30-s epochs)
    stages = [0, 0, 1, 1, 0, 1, 2, 2, -1, 0]
    s = summarize_stages(stages, WNR)
    assert s.recording_minutes == 5.0
    assert s.unstaged_minutes == 0.5 and s.staged_minutes == 4.5
    assert s.total_sleep_minutes == 2.5
    assert s.sleep_efficiency == pytest.approx(2.5 / 4.5)
    assert s.sleep_onset_latency_minutes == 1.0  # first sleep epoch is epoch 2
    assert s.rem_latency_minutes == 2.0  # first R (epoch 6) is 4 epochs after sleep onset, not 6 after start
    assert s.waso_minutes == 1.0  # epochs 4 and 9
    assert s.stage_minutes == {"W": 2.0, "N": 1.5, "R": 1.0}
    line = s.one_line()
    assert line.startswith(
        "TST 0h02m, sleep efficiency 56%, sleep onset 1 min, REM latency 2 min, WASO 1 min"
    )
    assert line.endswith("minutes per stage: W 2, N 1.5, R 1, unstaged 0.5")


def test_no_sleep_and_no_rem() -> None:
    awake = summarize_stages([0, 0, 0], WNR)
    assert awake.total_sleep_minutes == 0 and awake.sleep_onset_latency_minutes is None
    assert awake.rem_latency_minutes is None and awake.sleep_efficiency == 0.0
    no_rem = summarize_stages([0, 1, 1, 2 - 1], WNR)
    assert no_rem.rem_latency_minutes is None and "REM latency n/a" in no_rem.one_line()
    nothing = summarize_stages([-1, -1], WNR)
    assert nothing.sleep_efficiency is None and nothing.unstaged_minutes == 1.0


def test_aasm_classes_and_epoch_length() -> None:
    s = summarize_stages([0, 1, 2, 3, 4, 2], ("W", "N1", "N2", "N3", "R"), epoch_seconds=60.0)
    assert s.total_sleep_minutes == 5.0 and s.rem_latency_minutes == 3.0
    assert s.stage_minutes["N2"] == 2.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="expected a wake class named 'W'"):
        summarize_stages([0, 1], ("S", "R"))
    with pytest.raises(ValueError, match=r"expected class indices -1\.\.2, got 0\.\.3"):
        summarize_stages([0, 3], WNR)


def test_summary_of_a_prediction() -> None:
    stages = np.array([0, 1, 1, 2, -1])
    prediction = Prediction(
        stages=stages,
        probabilities=np.full((5, 3), 1 / 3, dtype=np.float32),
        onsets=np.arange(5) * 30.0,
        class_names=WNR,
        grouping="w-n-r",
        epoch_seconds=30.0,
        channel="heart rate",
        source=Path("night.txt"),
        start=None,
        sfreq=4.0,
        n_windows=1,
    )
    assert summarize_prediction(prediction) == summarize_stages(stages, WNR)
    assert summarize_prediction(prediction).as_dict()["total_sleep_minutes"] == 1.5
