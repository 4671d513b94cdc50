"""``kdsleep predict`` and ``kdsleep train --resume`` on bad inputs: each a one-line error or a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdsleep.checkpoint import save_checkpoint
from kdsleep.cli import main
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.data.synthetic import generate_synthetic_psg
from kdsleep.models import UTime


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("night")
    psg, _base = generate_synthetic_psg(folder, n_subjects=1, hours=0.1, sfreq=128.0, progress=False)
    return psg


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = UTime(1, 4, sfreq=50.0, n_epochs=2, pools=[5, 5, 3], filters=[4, 8, 8]).eval()
    config = PreprocessConfig(sfreq=50.0, eeg_band=(0.3, 20.0), ecg_band=(0.3, 20.0))
    return save_checkpoint(
        tmp_path_factory.mktemp("model") / "student.pt",
        model,
        modality="ecg",
        channel="ecg",
        grouping="w-l-d-r",
        preprocess=config,
        variant="at_cl",
        metrics={},
    )


def test_folder_given_as_the_recording(tmp_path, student, capsys) -> None:
    assert main(["predict", str(tmp_path), "--model", str(student), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a folder, not a recording" in err and "Traceback" not in err


def test_unwritable_output_is_found_before_anything_is_written(tmp_path, night, student, capsys) -> None:
    out = tmp_path / "out"
    (out / f"{night.stem}_hypnogram.edf").mkdir(parents=True)  # the EDF target is a folder
    assert main(["predict", str(night), "--model", str(student), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert (
        "is a folder, cannot be written as a file" in captured.err and "nothing was written" in captured.err
    )
    assert "model" not in captured.out  # refused before the model was even loaded
    assert sorted(p.name for p in out.iterdir()) == [f"{night.stem}_hypnogram.edf"]


def test_records_beyond_the_header_count_are_ignored_with_a_warning(tmp_path, night, student, caplog) -> None:
    raw = bytearray(night.read_bytes())
    declared = int(raw[236:244].decode())
    raw[236:244] = str(declared - 10).ljust(8).encode()
    edf = tmp_path / night.name
    edf.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        assert main(["predict", str(edf), "--model", str(student), "--no-plot"]) == 0
    assert (
        f"{edf}: the header declares {declared - 10} data records but the file holds {declared}"
        in caplog.text
    )


def test_resume_of_a_run_folder_that_does_not_exist(tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-run"
    assert main(["train", "--run-dir", str(missing), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"run folder {missing} does not exist, nothing to resume" in err
    assert not missing.exists()


def test_write_prediction_is_all_or_none(tmp_path, monkeypatch) -> None:
    """A failure while writing the third file leaves neither a new CSV nor a new EDF (nor staging files)."""
    import numpy as np

    import kdsleep.prediction as writers

    prediction = writers.Prediction(
        stages=np.array([0, 1, 2, 1]),
        probabilities=np.full((4, 3), 1 / 3, dtype=np.float32),
        onsets=np.arange(4) * 30.0,
        class_names=("W", "N", "R"),
        grouping="w-n-r",
        epoch_seconds=30.0,
        channel="ECG",
        source=tmp_path / "night.edf",
        start=None,
        sfreq=32.0,
        n_windows=1,
    )
    paths = writers.output_paths(prediction.source, tmp_path)
    paths["csv"].write_text("old csv\n")

    def broken_plot(prediction, path):
        raise OSError("disk full")

    monkeypatch.setattr(writers, "plot_prediction", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        writers.write_prediction(prediction, tmp_path)
    assert paths["csv"].read_text() == "old csv\n"
    assert not paths["edf"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [paths["csv"].name]
    written = writers.write_prediction(prediction, tmp_path, plot=False)
    assert set(written) == {"csv", "edf"} and paths["csv"].read_text() != "old csv\n"
