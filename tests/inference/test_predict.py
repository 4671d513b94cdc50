"""ECG-only prediction: windows over the night, training-time preprocessing, writers and bad input."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.checkpoint import load_checkpoint, save_checkpoint
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.preprocess import PreprocessConfig, preprocess_recording
from kdsleep.data.readers import read_edf, read_hypnogram
from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage, get_grouping
from kdsleep.data.windows import covering_starts
from kdsleep.inference import InferenceError, load_model_checkpoint, predict_recording, predict_windows
from kdsleep.models import UTime
from kdsleep.prediction import Prediction, annotation_label_mapping, write_prediction

SFREQ = 50.0  # model rate: 1500 samples per epoch, pools 5 x 5 x 3 = 75 divide it
WINDOW = 4  # epochs per model window
FILE_SFREQ = 100.0  # recordings are resampled 100 -> 50 Hz


def _checkpoint(
    path: Path,
    modality: str = "ecg",
    grouping: str = "w-l-d-r",
    seed: int = 0,
    inputs: tuple[str, ...] | None = None,
) -> Path:
    torch.manual_seed(seed)
    n_classes = get_grouping(grouping).n_classes
    n_chans = len(inputs) if inputs else 1
    model = UTime(n_chans, n_classes, sfreq=SFREQ, n_epochs=WINDOW, pools=[5, 5, 3], filters=[4, 8, 8])
    # Non-trivial batch-norm statistics, so eval mode matters and the outputs differ between epochs.
    model.train()
    with torch.no_grad():
        model(torch.randn(4, n_chans, model.n_times) * 2.0)
    derived = tuple(c for c in inputs or () if c == "ihr")
    config = PreprocessConfig(
        channels=("eeg", "ecg", *derived), sfreq=SFREQ, eeg_band=(0.3, 20.0), ecg_band=(0.3, 20.0)
    )
    channel = "ecg" if modality == "ecg" else "eeg"
    return save_checkpoint(
        path,
        model.eval(),
        modality=modality,
        channel=channel,
        grouping=grouping,
        preprocess=config,
        variant="at_cl" if modality == "ecg" else "eeg_baseline",
        metrics={},
        inputs=list(inputs) if inputs else None,
    )


def _ecg(n_seconds: float, sfreq: float = FILE_SFREQ, seed: int = 1) -> np.ndarray:
    """A rough ECG: narrow beats at a slowly varying rate over noise, in microvolts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(n_seconds * sfreq)) / sfreq
    phase = np.cumsum(1.0 + 0.2 * np.sin(2 * np.pi * t / 300.0)) / sfreq
    beats = np.exp(-(((phase % 1.0) - 0.5) ** 2) / 2e-4)
    return 800.0 * beats + 30.0 * rng.standard_normal(t.size)


def _ecg_only_edf(
    path: Path, n_epochs: float, label: str = "ECG I", flat: tuple[float, float] | None = None
) -> Path:
    x = _ecg(n_epochs * 30.0)
    if flat is not None:
        start, stop = (int(v * FILE_SFREQ) for v in flat)
        x[start:stop] = x[start]
    return write_edf(path, [x], FILE_SFREQ, [label], units="uV")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def ecg_checkpoint(folder) -> Path:
    return _checkpoint(folder / "ecg_student.pt")


@pytest.fixture(scope="module")
def ecg_night(folder) -> Path:
    # 10 epochs: windows at epochs 0, 4 and an end-aligned one at 6
    return _ecg_only_edf(folder / "night.edf", 10)


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_total", "window", "expected"),
    [
        (10, 4, [0, 4, 6]),
        (8, 4, [0, 4]),
        (4, 4, [0]),
        (5, 4, [0, 1]),
        (36, 35, [0, 1]),
        (7, 1, list(range(7))),
    ],
)
def test_windows_cover_the_night_with_the_last_aligned_to_the_end(n_total, window, expected) -> None:
    starts = covering_starts(n_total, window)
    assert starts.tolist() == expected
    covered = np.zeros(n_total, dtype=int)
    for s in starts:
        covered[s : s + window] += 1
    assert (covered >= 1).all()
    assert starts[-1] + window == n_total  # never past the end: no padding


def test_windows_reject_a_night_shorter_than_one_window() -> None:
    with pytest.raises(ValueError, match="shorter than one window"):
        covering_starts(3, 4)


class _WindowStamp(torch.nn.Module):
    """Logits that say which window produced them: class 0 gets the window's first sample value."""

    n_outputs = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, 0, :1]  # (B, 1)
        stamp = first.expand(-1, WINDOW)
        return torch.stack([stamp, torch.zeros_like(stamp)], dim=1)


def test_doubly_covered_epochs_take_the_window_where_they_have_more_context() -> None:
    n_total = 10
    # every sample of epoch k holds k, so a window's first sample is its start epoch
    data = np.repeat(np.arange(n_total, dtype=np.float32), 6).reshape(n_total, 1, 6)
    starts = covering_starts(n_total, WINDOW)
    probabilities = predict_windows(
        _WindowStamp(),
        data,
        starts,
        WINDOW,
        2,
        device=torch.device("cpu"),
        batch_size=2,
        progress=False,
        desc="",
    )
    source_window = np.log(probabilities[:, 0] / probabilities[:, 1])  # the logit = the window's start
    # epochs 6 and 7 are in windows 4 (positions 2, 3) and 6 (positions 0, 1): epoch 6 sits one epoch
    # from the edge of window 4 but on the edge of window 6, epoch 7 the other way round.
    np.testing.assert_allclose(source_window, [0, 0, 0, 0, 4, 4, 4, 6, 6, 6], atol=1e-4)


# --------------------------------------------------------------------------------------------------
# predict_recording
# --------------------------------------------------------------------------------------------------


def test_prediction_on_an_ecg_only_recording(ecg_checkpoint, ecg_night) -> None:
    prediction = predict_recording(ecg_checkpoint, ecg_night, progress=False)
    assert prediction.n_epochs == 10
    assert prediction.n_windows == 3
    assert prediction.channel == "ECG I"
    assert prediction.class_names == ("W", "L", "D", "R")
    np.testing.assert_allclose(prediction.onsets, 30.0 * np.arange(10))
    assert prediction.probabilities.shape == (10, 4)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(prediction.stages, prediction.probabilities.argmax(axis=1))
    assert prediction.scored.all()


def test_prediction_uses_the_training_preprocessing(ecg_checkpoint, ecg_night) -> None:
    checkpoint = load_checkpoint(ecg_checkpoint)
    prediction = predict_recording(checkpoint, ecg_night, progress=False)
    # What the training cache would hold for this night: the same pipeline on a scored grid.
    config = PreprocessConfig.from_dict(checkpoint.preprocess)
    config = PreprocessConfig.from_dict({**config.to_dict(), "channels": ["ecg"]})
    recording = read_edf(ecg_night, {"ecg": "ECG I"})
    epochs = preprocess_recording(recording, Hypnogram(np.full(10, int(SleepStage.N2), np.int8)), config)
    assert epochs.data.shape == (10, 1, 1500)  # resampled to the model's 50 Hz
    for start in (0, 6):
        window = torch.from_numpy(np.moveaxis(epochs.data[start : start + WINDOW], 1, 0).reshape(1, 1, -1))
        with torch.no_grad():
            expected = torch.softmax(checkpoint.model(window), dim=1)[0].T.numpy()
        # epochs 0-3 come from the first window, 7-9 from the end-aligned one (epoch 7 is on the edge
        # of window 4 but one epoch inside window 6)
        rows = slice(0, 4) if start == 0 else slice(7, 10)
        taken = expected if start == 0 else expected[1:]
        np.testing.assert_allclose(prediction.probabilities[rows], taken, atol=1e-5)


@pytest.mark.parametrize("inputs", [("ihr",), ("ecg", "ihr")])
def test_heart_rate_students_read_the_heart_rate_of_the_ecg(folder, ecg_night, inputs) -> None:
    path = _checkpoint(folder / f"student_{'_'.join(inputs)}.pt", inputs=inputs)
    checkpoint = load_checkpoint(path)
    assert checkpoint.inputs == list(inputs) and checkpoint.model.n_chans == len(inputs)
    prediction = predict_recording(checkpoint, ecg_night, progress=False)
    assert prediction.n_epochs == 10 and prediction.scored.all()
    # the channels the training cache would hold, in the model's input order
    config = PreprocessConfig.from_dict({**checkpoint.preprocess, "channels": ["ecg", "ihr"]})
    recording = read_edf(ecg_night, {"ecg": "ECG I"})
    epochs = preprocess_recording(recording, Hypnogram(np.full(10, int(SleepStage.N2), np.int8)), config)
    heart_rate = epochs.data[:, 1]
    # the night's rate swings 48-72 bpm over 300 s: a slow, scaled, non-constant channel
    assert heart_rate.std() > 0.3 and np.abs(np.diff(heart_rate.ravel())).max() < 0.5
    rows = [("ecg", "ihr").index(c) for c in inputs]
    window = torch.from_numpy(
        np.ascontiguousarray(np.moveaxis(epochs.data[:WINDOW][:, rows], 1, 0)).reshape(1, len(inputs), -1)
    )
    with torch.no_grad():
        expected = torch.softmax(checkpoint.model(window), dim=1)[0].T.numpy()
    np.testing.assert_allclose(prediction.probabilities[:4], expected, atol=1e-5)


def test_channel_override_and_aliases(folder, ecg_checkpoint) -> None:
    # "EKG" is one of the aliases of ECG lead I; a second, unrelated channel is ignored
    path = write_edf(
        folder / "ekg.edf", [_ecg(300.0), _ecg(300.0, seed=5)], FILE_SFREQ, ["EKG", "Resp"], units="uV"
    )
    assert predict_recording(ecg_checkpoint, path, progress=False).channel == "EKG"
    assert predict_recording(ecg_checkpoint, path, channel="Resp", progress=False).channel == "Resp"


def test_bdf_recording(folder, ecg_checkpoint, ecg_night) -> None:
    path = write_edf(folder / "night.bdf", [_ecg(300.0)], FILE_SFREQ, ["ECG I"], units="uV", bdf=True)
    from_bdf = predict_recording(ecg_checkpoint, path, progress=False)
    from_edf = predict_recording(ecg_checkpoint, ecg_night, progress=False)
    # same signal, 24-bit instead of 16-bit samples: the same stages
    np.testing.assert_array_equal(from_bdf.stages, from_edf.stages)
    np.testing.assert_allclose(from_bdf.probabilities, from_edf.probabilities, atol=1e-3)


def test_flat_signal_epochs_get_no_stage(folder, ecg_checkpoint) -> None:
    path = _ecg_only_edf(folder / "flat.edf", 8, flat=(95.0, 150.0))  # epochs 3 and 4 touched
    with pytest.warns(UserWarning, match="flat"):
        prediction = predict_recording(ecg_checkpoint, path, progress=False)
    assert prediction.stages.tolist()[3:5] == [-1, -1]
    assert (prediction.stages[[0, 1, 2, 5, 6, 7]] >= 0).all()
    assert np.isnan(prediction.probabilities[3:5]).all()
    assert prediction.stage_names[3] == "?"


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------


def _prediction(grouping: str, n: int = 12, seed: int = 0) -> Prediction:
    stage_grouping = get_grouping(grouping)
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(stage_grouping.n_classes), size=n).astype(np.float32)
    stages = probabilities.argmax(axis=1)
    stages[5] = -1
    probabilities[5] = np.nan
    return Prediction(
        stages=stages,
        probabilities=probabilities,
        onsets=30.0 * np.arange(n),
        class_names=stage_grouping.class_names,
        grouping=stage_grouping.name,
        epoch_seconds=30.0,
        channel="ECG I",
        source=Path("/nowhere/subject 01.edf"),
        start=None,
        sfreq=200.0,
        n_windows=1,
    )


@pytest.mark.parametrize("grouping", ["aasm-5", "w-l-d-r", "w-n-r"])
def test_edf_scoring_file_reads_back_with_the_project_reader(tmp_path, grouping) -> None:
    prediction = _prediction(grouping)
    paths = write_prediction(prediction, tmp_path, plot=False)
    assert paths["edf"].name == "subject 01_hypnogram.edf"
    mapping = annotation_label_mapping(prediction.grouping, prediction.class_names)
    hypnogram = read_hypnogram(paths["edf"], mapping=mapping)
    assert hypnogram.epoch_length == 30.0
    assert hypnogram.onset == 0.0
    np.testing.assert_array_equal(hypnogram.to_classes(grouping), prediction.stages)
    assert hypnogram.stages[5] == SleepStage.UNSCORED


def test_aasm_scoring_file_needs_no_special_mapping(tmp_path) -> None:
    prediction = _prediction("aasm-5")
    paths = write_prediction(prediction, tmp_path, plot=False)
    hypnogram = read_hypnogram(paths["edf"])  # "Sleep stage W/N1/N2/N3/R" as written by scorers
    scored = prediction.stages >= 0
    np.testing.assert_array_equal(hypnogram.stages[scored], prediction.stages[scored])


def test_csv_and_png_are_written_atomically(tmp_path) -> None:
    prediction = _prediction("w-l-d-r")
    paths = write_prediction(prediction, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "onset_s", "stage", "p_W", "p_L", "p_D", "p_R"]
    assert [row["stage"] for row in rows] == prediction.stage_names
    assert [float(row["onset_s"]) for row in rows] == prediction.onsets.tolist()
    np.testing.assert_allclose(float(rows[0]["p_L"]), prediction.probabilities[0, 1], atol=1e-6)
    assert rows[5]["stage"] == "?" and rows[5]["p_W"] == ""
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_file_keeps_the_recording_start(folder, ecg_checkpoint, tmp_path) -> None:
    from datetime import datetime

    start = datetime(2001, 3, 4, 23, 15, 0)
    path = write_edf(folder / "dated.edf", [_ecg(150.0)], FILE_SFREQ, ["ECG I"], units="uV", start=start)
    prediction = predict_recording(ecg_checkpoint, path, progress=False)
    assert prediction.start == start
    paths = write_prediction(prediction, tmp_path, plot=False)
    mapping = annotation_label_mapping(prediction.grouping, prediction.class_names)
    hypnogram = read_hypnogram(paths["edf"], mapping=mapping, recording_start=start)
    assert hypnogram.onset == 0.0
    np.testing.assert_array_equal(hypnogram.to_classes(prediction.grouping), prediction.stages)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def test_missing_channel_lists_the_available_ones(folder, ecg_checkpoint) -> None:
    path = write_edf(folder / "eeg_only.edf", [_ecg(300.0)], FILE_SFREQ, ["EEG C3-A2"], units="uV")
    with pytest.raises(
        InferenceError, match=r"eeg_only\.edf: no channel 'ecg'.*available channels: \['EEG C3-A2'\]"
    ):
        predict_recording(ecg_checkpoint, path, progress=False)
    with pytest.raises(InferenceError, match=r"no channel 'Pleth'"):
        predict_recording(ecg_checkpoint, path, channel="Pleth", progress=False)


def test_recording_shorter_than_one_window(folder, ecg_checkpoint) -> None:
    path = _ecg_only_edf(folder / "short.edf", 3.5)
    with pytest.raises(
        InferenceError,
        match=r"short\.edf: the recording lasts 105 s \(3 whole 30-s epochs\), shorter than one model window of 4 epochs \(120 s\)",
    ):
        predict_recording(ecg_checkpoint, path, progress=False)


def test_file_that_is_not_a_checkpoint(folder, ecg_night) -> None:
    torch.save({"state_dict": {}}, folder / "other.pt")
    with pytest.raises(InferenceError, match=r"other\.pt: not a kdsleep checkpoint"):
        load_model_checkpoint(folder / "other.pt")
    with pytest.raises(InferenceError, match=r"night\.edf: not a kdsleep checkpoint"):
        predict_recording(ecg_night, ecg_night, progress=False)
    with pytest.raises(InferenceError, match="no such checkpoint file"):
        load_model_checkpoint(folder / "missing.pt")


def test_recording_that_is_not_edf(folder, ecg_checkpoint) -> None:
    text = folder / "notes.edf"
    text.write_text("not a recording\n" * 40)
    with pytest.raises(InferenceError, match=r"notes\.edf: not an EDF/BDF file"):
        predict_recording(ecg_checkpoint, text, progress=False)


def test_eeg_teacher_is_refused_unless_allowed(folder) -> None:
    teacher = _checkpoint(folder / "teacher.pt", modality="eeg")
    path = write_edf(
        folder / "psg.edf", [_ecg(300.0), _ecg(300.0, seed=3)], FILE_SFREQ, ["EEG C3-A2", "ECG I"], units="uV"
    )
    with pytest.raises(InferenceError, match=r"teacher\.pt: an EEG teacher .*an ECG model was expected"):
        predict_recording(teacher, path, progress=False)
    with pytest.warns(UserWarning, match="EEG teacher"):
        prediction = predict_recording(teacher, path, allow_other_modality=True, progress=False)
    assert prediction.channel == "EEG C3-A2"
    assert prediction.n_epochs == 10


def test_device_must_exist(ecg_checkpoint, ecg_night) -> None:
    with pytest.raises(InferenceError, match="unknown device 'gpu7'"):
        predict_recording(ecg_checkpoint, ecg_night, device="gpu7", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(InferenceError, match="no CUDA GPU"):
            predict_recording(ecg_checkpoint, ecg_night, device="cuda", progress=False)


@pytest.mark.cuda
def test_cuda_prediction_matches_cpu(ecg_checkpoint, ecg_night) -> None:
    on_cpu = predict_recording(ecg_checkpoint, ecg_night, progress=False)
    on_gpu = predict_recording(ecg_checkpoint, ecg_night, device="cuda", progress=False)
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, atol=1e-4)


@pytest.mark.slow
def test_paper_size_student_on_a_synthetic_hour(tmp_path) -> None:
    """The default U-Time (35-epoch windows at 200 Hz, pools 10-5-5-4-3) on an hour of MASS-layout PSG."""
    from kdsleep.data.synthetic import generate_synthetic_psg
    from kdsleep.export import export_model, run_exported

    psg, _base = generate_synthetic_psg(tmp_path, n_subjects=1, hours=1.0, sfreq=256.0, progress=False)
    torch.manual_seed(0)
    model = UTime(1, 4).eval()
    path = save_checkpoint(
        tmp_path / "student.pt",
        model,
        modality="ecg",
        channel="ecg",
        grouping="w-l-d-r",
        preprocess=PreprocessConfig(),  # the paper's 200 Hz and the AASM ECG band
        variant="at_cl",
        metrics={},
    )
    prediction = predict_recording(path, psg, progress=False)
    n_whole = int(read_edf(psg, ["ECG"])["ECG"].duration // 30)
    assert prediction.n_epochs == n_whole
    assert prediction.n_windows == -(-n_whole // 35)  # whole windows and one aligned to the end
    assert prediction.channel == "ECG ECGI"
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
    onnx_path = tmp_path / "student.onnx"
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        export_model(path, onnx_path, "onnx")
        x = np.random.default_rng(0).standard_normal((2, 1, model.n_times)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_exported(onnx_path, x), expected, atol=1e-4, rtol=0)
