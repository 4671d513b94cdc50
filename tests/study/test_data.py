"""Study records and their epoch-aligned windows."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.stages import SleepStage
from kdsleep.data.windows import WindowDataset
from kdsleep.study.data import (
    STUDY_CHANNELS,
    StudyRecord,
    find_slpdb_records,
    load_record,
    prepare_record,
    record_store,
    save_record,
)


def _record(n_epochs: int = 23, sfreq: float = 2.0, name: str = "r1", subject: str = "s1") -> StudyRecord:
    spe = int(30 * sfreq)
    # every sample carries its epoch number, so that a window's content names the epochs it holds
    epoch_of_sample = np.repeat(np.arange(n_epochs), spe).astype(np.float32)
    stages = np.array([i % 5 for i in range(n_epochs)], dtype=np.int8)
    stages[0] = SleepStage.UNSCORED
    return StudyRecord(
        name=name,
        subject=subject,
        sfreq=sfreq,
        stages=stages,
        beat_times=np.arange(0.0, n_epochs * 30.0, 1.0),
        hr=epoch_of_sample,
        hr_mask=np.ones(n_epochs * spe, dtype=bool),
        eeg=-epoch_of_sample,
    )


def test_record_store_serves_the_study_windows():
    record = _record()
    store = record_store([record])
    assert store.meta("r1")["subject"] == "s1" and store.meta("r1")["channels"] == list(STUDY_CHANNELS)
    windows = WindowDataset(
        store, inputs={"eeg": ("eeg",), "ecg": ("ihr",)}, window_epochs=5, stride=2, grouping="aasm-5"
    )
    spe = record.samples_per_epoch
    assert len(windows) > 0
    for i in range(len(windows)):
        eeg, hr, labels = windows[i]
        _, start = windows.window_key(i)
        assert hr.shape == (1, 5 * spe) and eeg.shape == hr.shape and labels.dtype == np.int64
        epochs = hr[0].reshape(5, spe)
        assert np.all(epochs == np.arange(start, start + 5)[:, None])
        assert np.all(eeg[0].reshape(5, spe) == -epochs)
        assert labels.tolist() == record.labels("aasm-5")[start : start + 5].tolist()
    assert windows[0][2][0] == -1  # the unscored first epoch is ignored


def test_test_windows_cover_every_epoch_and_predictions_reassemble():
    record = _record(n_epochs=23)
    windows = WindowDataset(
        record_store([record]), inputs={"ecg": ("ihr",)}, window_epochs=5, grouping="w-n-r", evaluation=True
    )
    assert windows.starts("r1").tolist() == [0, 5, 10, 15, 18]
    predicted = np.stack([windows[i][1][0].reshape(5, -1)[:, 0].astype(int) for i in range(len(windows))])
    assert windows.merge(predicted)["r1"].tolist() == list(range(23))


def test_records_without_eeg_give_zeros_and_short_records_are_skipped():
    record = _record()
    record.eeg = None
    short = _record(n_epochs=3, name="r2")
    windows = WindowDataset(
        record_store([record, short]),
        inputs={"eeg": ("eeg",), "ecg": ("ihr",)},
        window_epochs=5,
        grouping="w-l-d-r",
    )
    assert {windows.window_key(i)[0] for i in range(len(windows))} == {"r1"}
    assert not windows[0][0].any()


def test_record_round_trip(tmp_path):
    record = _record()
    path = save_record(record, tmp_path / "r1.npz")
    back = load_record(path)
    assert (back.name, back.subject, back.sfreq) == ("r1", "s1", 2.0)
    np.testing.assert_array_equal(back.hr, record.hr)
    np.testing.assert_array_equal(back.stages, record.stages)


def test_real_record_is_epoch_aligned(shared_data):
    records = find_slpdb_records(shared_data / "slpdb")
    names = [r[0] for r in records]
    assert {"slp01a", "slp01b", "slp67x"} <= set(names)
    assert dict((r[0], r[1]) for r in records)["slp01b"] == "slp01"
    path = dict((r[0], r[2]) for r in records)["slp67x"]
    record = prepare_record(path, "slp67x", sfreq=8.0, eeg_band=(0.3, 3.5))
    # slp67x: 154 scored epochs (PROVENANCE.md), stages W 72, N1 41, N2 40, N3 1
    assert record.n_scored() == 154
    assert np.bincount(record.stages[record.stages <= 4], minlength=5).tolist() == [72, 41, 40, 1, 0]
    assert record.hr.shape == record.eeg.shape == (record.n_epochs * 240,)
    assert record.hr_mask.mean() > 0.9
    assert abs(float(np.median(record.hr))) < 0.5  # centred on the recording's median heart rate


def test_missing_records_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_slpdb_records(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"\.st stage and \.ecg beat"):
        find_slpdb_records(tmp_path)
