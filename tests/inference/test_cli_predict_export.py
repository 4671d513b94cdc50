"""``kdsleep predict`` and ``kdsleep export`` end to end, on a short synthetic night, and their errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.checkpoint import save_checkpoint
from kdsleep.cli import main
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.data.readers import read_edf_header, read_hypnogram
from kdsleep.data.synthetic import generate_synthetic_psg
from kdsleep.models import UTime
from kdsleep.prediction import annotation_label_mapping


def _save(path: Path, modality: str, n_epochs: int = 2) -> Path:
    torch.manual_seed(1)
    model = UTime(1, 4, sfreq=50.0, n_epochs=n_epochs, pools=[5, 5, 3], filters=[4, 8, 8]).eval()
    config = PreprocessConfig(sfreq=50.0, eeg_band=(0.3, 20.0), ecg_band=(0.3, 20.0))
    return save_checkpoint(
        path,
        model,
        modality=modality,
        channel=modality,  # the cache's channel names, "ecg" / "eeg"
        grouping="w-l-d-r",
        preprocess=config,
        variant="at_cl" if modality == "ecg" else "eeg_baseline",
        metrics={},
    )


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    # A short synthetic PSG night in the MASS layout (EEG C3-CLE, EEG A2-CLE, ECG ECGI at 128 Hz); the
    # scoring file next to it is never read by predict.
    folder = tmp_path_factory.mktemp("night")
    psg, _base = generate_synthetic_psg(folder, n_subjects=1, hours=0.1, sfreq=128.0, progress=False)
    return psg


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "ecg": _save(folder / "student.pt", "ecg"),
        "eeg": _save(folder / "teacher.pt", "eeg"),
        "long": _save(folder / "long_window.pt", "ecg", n_epochs=40),
    }


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("kdsleep ")]
    assert len(lines) == 1, err
    return lines[0]


def test_predict_writes_csv_edf_and_png(tmp_path, night, models, capsys) -> None:
    out = tmp_path / "out"
    assert main(["predict", "--model", str(models["ecg"]), str(night), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "from 'ECG ECGI'" in stdout
    stem = f"{night.stem}_hypnogram"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.csv", f"{stem}.edf", f"{stem}.png"]
    with open(out / f"{stem}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_whole = int(read_edf_header(night).duration // 30)
    assert len(rows) == n_whole
    assert list(rows[0]) == ["epoch", "onset_s", "stage", "p_W", "p_L", "p_D", "p_R"]
    for row in rows:
        total = sum(float(row[f"p_{c}"]) for c in "WLDR")
        assert abs(total - 1.0) < 1e-4
        assert row["stage"] == max("WLDR", key=lambda c: float(row[f"p_{c}"]))
    # the scoring file lines up with the recording and reads back with the project's reader
    hypnogram = read_hypnogram(
        out / f"{stem}.edf",
        mapping=annotation_label_mapping("w-l-d-r", ("W", "L", "D", "R")),
        recording_start=read_edf_header(night).start,
    )
    classes = hypnogram.to_classes("w-l-d-r")
    assert [("W", "L", "D", "R")[k] for k in classes] == [row["stage"] for row in rows]
    np.testing.assert_allclose(hypnogram.epoch_onsets, [float(row["onset_s"]) for row in rows])


def test_predict_with_an_explicit_channel(tmp_path, night, models, capsys) -> None:
    args = ["predict", "--model", str(models["ecg"]), str(night), "--out", str(tmp_path), "--no-plot"]
    assert main([*args, "--channel", "ECG ECGI"]) == 0
    assert "from 'ECG ECGI'" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))


def test_predict_missing_channel(tmp_path, night, models, capsys) -> None:
    code = main(
        ["predict", "--model", str(models["ecg"]), str(night), "--channel", "SpO2", "--out", str(tmp_path)]
    )
    assert code == 2
    line = _error_line(capsys)
    assert str(night) in line
    assert "no channel 'SpO2'" in line
    assert "available channels: ['EEG C3-CLE', 'EEG A2-CLE', 'ECG ECGI']" in line
    assert not list(tmp_path.iterdir())  # nothing written on failure


def test_predict_recording_shorter_than_a_window(night, models, capsys) -> None:
    assert main(["predict", "--model", str(models["long"]), str(night)]) == 2
    line = _error_line(capsys)
    assert str(night) in line and "shorter than one model window of 40 epochs (1200 s)" in line


def test_predict_with_a_file_that_is_not_a_checkpoint(night, capsys) -> None:
    assert main(["predict", "--model", str(night), str(night)]) == 2
    line = _error_line(capsys)
    assert f"{night}: not a kdsleep checkpoint" in line


def test_predict_refuses_an_eeg_teacher_without_the_flag(tmp_path, night, models, capsys) -> None:
    assert main(["predict", "--model", str(models["eeg"]), str(night), "--out", str(tmp_path)]) == 2
    line = _error_line(capsys)
    assert "an EEG teacher" in line and "--allow-eeg" in line and str(models["eeg"]) in line
    code = main(["predict", "--model", str(models["eeg"]), str(night), "--out", str(tmp_path), "--allow-eeg"])
    assert code == 0
    assert "from 'EEG C3-CLE - EEG A2-CLE'" in capsys.readouterr().out  # C3-A2 derived as in training


def test_predict_rejects_bad_options(night, models, capsys) -> None:
    assert main(["predict", "--model", str(models["ecg"]), str(night), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in _error_line(capsys)
    assert main(["predict", "--model", str(models["ecg"]), str(night), "--device", "tpu"]) == 2
    assert "device" in _error_line(capsys)


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "student.onnx"), ("torchscript", "student.pt")])
def test_export_both_formats(tmp_path, models, capsys, fmt, name) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' package")
        pytest.importorskip("onnxruntime", reason="checking an ONNX export needs 'onnxruntime'")
    from kdsleep.export import read_export_metadata

    out = tmp_path / name
    assert main(["export", "--model", str(models["ecg"]), "--format", fmt, "--out", str(out)]) == 0
    assert f"wrote {fmt} model: {out}" in capsys.readouterr().out
    metadata = read_export_metadata(out)
    assert metadata["class_names"] == ["W", "L", "D", "R"]
    assert metadata["input"]["sfreq"] == 50.0 and metadata["input"]["n_epochs"] == 2


def test_export_format_from_suffix(tmp_path, models) -> None:
    out = tmp_path / "student.ts"
    assert main(["export", "--model", str(models["ecg"]), "--out", str(out)]) == 0
    assert out.read_bytes()[:2] == b"PK"  # a TorchScript zip archive


def test_export_unknown_format(tmp_path, models, capsys) -> None:
    out = tmp_path / "student.bin"
    assert main(["export", "--model", str(models["ecg"]), "--format", "keras", "--out", str(out)]) == 2
    assert "unknown export format 'keras'; expected one of onnx, torchscript" in _error_line(capsys)
    assert main(["export", "--model", str(models["ecg"]), "--out", str(out)]) == 2
    assert "--format is required" in _error_line(capsys)
    assert not out.exists()


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path, night, capsys) -> None:
    assert (
        main(["export", "--model", str(night), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
        == 2
    )
    assert f"{night}: not a kdsleep checkpoint" in _error_line(capsys)
