"""Staging a night from heartbeats: the heart-rate channel as trained, windows, gaps, writers and errors."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.beats_inference import heart_rate_input, predict_beats, stage_epochs
from kdsleep.checkpoint import save_checkpoint
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.data.readers import read_hypnogram
from kdsleep.data.readers.beats import read_beats
from kdsleep.data.windows import covering_starts
from kdsleep.inference import InferenceError, load_model_checkpoint
from kdsleep.models import UTime
from kdsleep.prediction import annotation_label_mapping, write_prediction

SFREQ = 4.0  # heart rate carries nothing above a few hertz; 120 samples per 30-s epoch
WINDOW = 8  # epochs per model window (4 min)


def save_hr_checkpoint(path: Path, inputs: tuple[str, ...] = ("ihr",), grouping: str = "w-n-r") -> Path:
    """A small heart-rate U-Time with non-trivial batch-norm statistics, saved as kdsleep saves students."""
    torch.manual_seed(0)
    n_classes = {"w-n-r": 3, "w-l-d-r": 4}[grouping]
    model = UTime(len(inputs), n_classes, sfreq=SFREQ, n_epochs=WINDOW, pools=[5, 3, 2], filters=[4, 8, 8])
    model.train()
    with torch.no_grad():
        model(torch.randn(4, len(inputs), model.n_times) * 2.0)
    config = PreprocessConfig(channels=("ecg", "ihr"), sfreq=SFREQ, eeg_band=None, ecg_band=None)
    return save_checkpoint(
        path,
        model.eval(),
        modality="ecg",
        channel="ecg",
        grouping=grouping,
        preprocess=config,
        variant="heart_rate",
        metrics={},
        inputs=list(inputs),
    )


@pytest.fixture(scope="module")
def hr_model(tmp_path_factory) -> Path:
    return save_hr_checkpoint(tmp_path_factory.mktemp("hr") / "hr.pt")


def _peaks_file(path: Path, seconds: float, gaps: list[tuple[float, float]] = (), seed: int = 0) -> Path:
    """Peak times (s) about every second over ``seconds``, none inside ``gaps``."""
    rng = np.random.default_rng(seed)
    rr = (
        1.0
        + 0.1 * np.sin(np.arange(int(seconds * 1.2)) / 300.0)
        + 0.02 * rng.standard_normal(int(seconds * 1.2))
    )
    times = np.cumsum(rr)
    times = times[times < seconds]
    for a, b in gaps:
        times = times[(times < a) | (times > b)]
    path.write_text("peak_s\n" + "\n".join(f"{t:.3f}" for t in times) + "\n")
    return path


def test_heart_rate_channel_is_the_one_the_slpdb_study_trains_on(shared_data) -> None:
    from kdsleep.study.data import prepare_record

    path = shared_data / "slpdb" / "slp01a"
    record = prepare_record(path, "slp01", SFREQ, with_eeg=False)
    hr = heart_rate_input(read_beats(path.with_suffix(".ecg")), SFREQ, 30.0)
    assert hr.n_epochs == record.n_epochs == 240
    np.testing.assert_array_equal(hr.data.ravel(), record.hr)
    np.testing.assert_array_equal(hr.valid, record.hr_mask)


def test_predict_slpdb_ecg_annotations_and_write(shared_data, hr_model, tmp_path) -> None:
    prediction = predict_beats(hr_model, shared_data / "slpdb" / "slp01a.ecg", progress=False)
    assert prediction.n_epochs == 240  # 1 800 000 samples at 250 Hz, from the header
    assert prediction.start == datetime(1989, 1, 19, 23, 7)
    assert prediction.class_names == ("W", "N", "R") and prediction.grouping == "w-n-r"
    np.testing.assert_allclose(prediction.onsets, np.arange(240) * 30.0)
    assert prediction.n_windows == len(covering_starts(240, WINDOW))
    assert prediction.scored.all()
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(prediction.stages, prediction.probabilities.argmax(axis=1))
    assert "wfdb" in prediction.channel

    paths = write_prediction(prediction, tmp_path)
    assert paths["csv"].name == "slp01a_hypnogram.csv" and paths["png"].stat().st_size > 0
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 240 and list(rows[0]) == ["epoch", "onset_s", "stage", "p_W", "p_N", "p_R"]
    mapping = annotation_label_mapping(prediction.grouping, prediction.class_names)
    back = read_hypnogram(paths["edf"], mapping=mapping)
    from kdsleep.data.stages import get_grouping

    np.testing.assert_array_equal(get_grouping("w-n-r")(back.stages), prediction.stages)


def test_window_runner_matches_windows_run_one_by_one(hr_model) -> None:
    """Batched staging equals each window run alone and merged by the one rule of kdsleep.data.windows."""
    from kdsleep.data.windows import merge_windows

    model = load_model_checkpoint(hr_model).model.eval()
    data = np.random.default_rng(0).standard_normal((29, 1, 120)).astype(np.float32)
    ours, n_windows = stage_epochs(model, data, window_epochs=WINDOW, n_classes=3, batch_size=3)
    starts = covering_starts(29, WINDOW)
    per_window = []
    with torch.inference_mode():
        for s in starts:
            window = torch.from_numpy(np.moveaxis(data[s : s + WINDOW], 1, 0).reshape(1, -1)[None])
            per_window.append(torch.softmax(model(window), dim=1)[0].T.numpy())
    theirs = merge_windows(29, starts, np.stack(per_window), fill=np.nan)
    assert n_windows == len(starts) == 4
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_one_window_night_is_one_forward_pass(hr_model) -> None:
    model = load_model_checkpoint(hr_model).model
    data = np.random.default_rng(1).standard_normal((WINDOW, 1, 120)).astype(np.float32)
    probabilities, n_windows = stage_epochs(model, data, window_epochs=WINDOW, n_classes=3)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(data.reshape(1, 1, -1))), dim=1)[0].T.numpy()
    assert n_windows == 1
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_long_gap_is_unstaged_and_short_gap_is_staged(hr_model, tmp_path, caplog) -> None:
    path = _peaks_file(tmp_path / "gaps.csv", 3600.0, gaps=[(600.0, 780.0), (1800.0, 2520.0)])
    with caplog.at_level("WARNING", logger="kdsleep.beats_inference"):
        prediction = predict_beats(hr_model, path, progress=False)  # 3-min gap staged, 12-min gap not
    assert "gaps.csv: 1 stretch(es) longer than 5 min without a valid heart rate" in caplog.text
    assert "24 of 119 epochs there are left unstaged" in caplog.text  # the last beat falls before 3600 s
    unstaged = np.flatnonzero(~prediction.scored)
    assert unstaged.size > 0
    gap_epochs = np.arange(61, 84)  # epochs lying entirely inside 1800-2520 s (the edges: half or more)
    assert set(gap_epochs) <= set(unstaged)
    assert unstaged.min() >= 59 and unstaged.max() <= 84
    assert np.isnan(prediction.probabilities[unstaged]).all()
    assert prediction.scored[20:26].all()  # the 3-min gap at 600-780 s
    rows = list(csv.DictReader(write_prediction(prediction, tmp_path, plot=False)["csv"].open()))
    assert {rows[i]["stage"] for i in unstaged} == {"?"} and rows[int(unstaged[0])]["p_W"] == ""

    strict = predict_beats(hr_model, path, max_gap_min=2.0, progress=False)
    assert not strict.scored[21:25].any()


def test_time_after_the_last_beat_up_to_the_given_length_is_a_gap(hr_model, tmp_path) -> None:
    path = _peaks_file(tmp_path / "early_end.csv", 1800.0)
    prediction = predict_beats(
        hr_model, path, duration=2700.0, start=datetime(2024, 3, 1, 23, 0), progress=False
    )
    assert prediction.n_epochs == 90 and prediction.start == datetime(2024, 3, 1, 23, 0)
    assert prediction.scored[:60].all() and not prediction.scored[61:].any()


def test_out_of_range_rr_is_masked_and_the_night_still_staged(hr_model, tmp_path) -> None:
    rng = np.random.default_rng(2)
    rr = np.round(900 + 40 * rng.standard_normal(2400)).astype(int)
    rr[[100, 700, 701]] = [120, 3500, 9000]
    path = tmp_path / "strap.txt"
    path.write_text("\n".join(str(v) for v in rr))
    with pytest.warns(UserWarning, match="3 of 2400 RR intervals lie outside"):
        prediction = predict_beats(hr_model, path, progress=False)
    assert prediction.scored.all()  # 12.5 s of masked intervals: filled, not a long gap


@pytest.mark.parametrize("kind", ["rr", "peaks", "edf"])
def test_every_format_stages_a_night(hr_model, tmp_path, kind) -> None:
    rng = np.random.default_rng(5)
    rr = 0.95 + 0.05 * np.sin(np.arange(1400) / 50.0) + 0.01 * rng.standard_normal(1400)
    times = np.cumsum(rr)
    if kind == "rr":
        path = tmp_path / "polar.txt"
        path.write_text("\n".join(str(int(round(v * 1000))) for v in rr))
    elif kind == "peaks":
        path = tmp_path / "peaks.csv"
        path.write_text("\n".join(f"{t:.3f}" for t in times))
    else:
        sfreq = 128.0
        t = np.arange(int((times[-1] + 1.0) * sfreq)) / sfreq
        ecg = 10.0 * rng.standard_normal(t.size)
        for b in times:
            near = slice(max(0, int((b - 0.05) * sfreq)), int((b + 0.05) * sfreq) + 1)
            ecg[near] += 1000.0 * np.exp(-0.5 * ((t[near] - b) / 0.012) ** 2)
        path = write_edf(tmp_path / "ecg.edf", [ecg], sfreq, ["ECG"], units="uV")
    prediction = predict_beats(hr_model, path, progress=False)
    assert prediction.n_epochs == int(times[-1] // 30) or (kind == "edf" and prediction.n_epochs >= 40)
    assert prediction.scored.all()


def test_night_shorter_than_one_window(hr_model, tmp_path) -> None:
    path = _peaks_file(tmp_path / "short.csv", 200.0)
    with pytest.raises(
        InferenceError, match=r"short\.csv: the beats span .*shorter than one model window of 8"
    ):
        predict_beats(hr_model, path, progress=False)


def test_no_heart_rate_can_be_derived(hr_model, tmp_path) -> None:
    path = tmp_path / "fast.csv"
    path.write_text("\n".join(f"{t:.3f}" for t in np.arange(0, 600, 0.1)))  # 600 bpm: every RR out of range
    with (
        pytest.warns(UserWarning),
        pytest.raises(InferenceError, match=r"fast\.csv: no heart rate can be derived"),
    ):
        predict_beats(hr_model, path, progress=False)


def test_a_raw_ecg_model_is_refused_for_beats(tmp_path) -> None:
    ecg_model = save_hr_checkpoint(tmp_path / "ecg.pt", inputs=("ecg",))
    path = _peaks_file(tmp_path / "p.csv", 900.0)
    with pytest.raises(InferenceError, match=r"ecg\.pt: the model reads \['ecg'\].*heart-rate model.*EDF"):
        predict_beats(ecg_model, path, progress=False)


def test_bad_beat_file_becomes_an_inference_error(hr_model, tmp_path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("3\n2\n1\n")
    with pytest.raises(InferenceError, match=r"bad\.txt: beat times are not strictly increasing"):
        predict_beats(hr_model, path, format="peaks", progress=False)
