"""``kdsleep predict --beats`` end to end on a real slpdb beat file, and its errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import kdsleep.models.pretrained as pretrained
from kdsleep.cli import main

from .test_beats_predict import save_hr_checkpoint


@pytest.fixture(scope="module")
def hr_model(tmp_path_factory) -> Path:
    return save_hr_checkpoint(tmp_path_factory.mktemp("cli_hr") / "hr.pt")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("kdsleep ")]
    assert len(lines) == 1, err
    return lines[0]


def test_predict_beats_from_slpdb_ecg(shared_data, hr_model, tmp_path, capsys) -> None:
    beats = shared_data / "slpdb" / "slp01a.ecg"
    assert main(["predict", "--beats", str(beats), "--model", str(hr_model), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "240 epochs (2.00 h)" in out
    summary = [line for line in out.splitlines() if line.startswith("summary: ")]
    assert len(summary) == 1 and "TST " in summary[0] and "sleep efficiency" in summary[0]
    assert "REM latency" in summary[0] and "minutes per stage: W " in summary[0]
    rows = list(csv.DictReader((tmp_path / "slp01a_hypnogram.csv").open()))
    assert len(rows) == 240 and {r["stage"] for r in rows} <= {"W", "N", "R"}
    assert (tmp_path / "slp01a_hypnogram.edf").stat().st_size > 0
    assert (tmp_path / "slp01a_hypnogram.png").stat().st_size > 0


def test_read_only_data_folder_sends_output_to_the_current_folder(
    shared_data, hr_model, tmp_path, monkeypatch
) -> None:
    folder = shared_data / "slpdb"
    if folder.stat().st_mode & 0o222:
        pytest.skip("the shared data folder is writable here; not writing into it")
    monkeypatch.chdir(tmp_path)
    assert (
        main(["predict", "--beats", str(folder / "slp01a.ecg"), "--model", str(hr_model), "--no-plot"]) == 0
    )
    assert (tmp_path / "slp01a_hypnogram.csv").is_file()


def test_predict_beats_chest_strap_export_with_flags(hr_model, tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    rr = np.round(950 + 30 * rng.standard_normal(1500)).astype(int)
    rr[400:420] = 5000  # the strap lost contact: 100 s of too-long intervals
    path = tmp_path / "h10.txt"
    path.write_text("RR\n" + "\n".join(str(v) for v in rr))
    args = [
        "predict",
        "--beats",
        str(path),
        "--model",
        str(hr_model),
        "--no-plot",
        "--start",
        "2024-03-01T23:05",
    ]
    assert main([*args, "--duration", "30min", "--rr-unit", "ms", "--max-gap-min", "1"]) == 0
    out = capsys.readouterr().out
    assert "60 epochs (0.50 h)" in out and "epochs without stage (signal gaps)" in out
    rows = list(csv.DictReader((tmp_path / "h10_hypnogram.csv").open()))
    assert len(rows) == 60 and "?" in {r["stage"] for r in rows}


def test_unknown_model_name_lists_the_shipped_models(shared_data, capsys) -> None:
    beats = shared_data / "slpdb" / "slp01a.ecg"
    assert main(["predict", "--beats", str(beats), "--model", "hr-nonexistent"]) == 2
    line = _error_line(capsys)
    assert "model 'hr-nonexistent': neither a checkpoint file nor a shipped model" in line
    assert line.endswith("[--model CKPT or NAME]")
    assert ("no model is shipped" in line) or ("shipped models:" in line)


def test_registered_name_on_the_command_line(shared_data, hr_model, tmp_path, monkeypatch, capsys) -> None:
    entry = pretrained.registry_entry("hr-test", hr_model, "test model")
    monkeypatch.setattr(pretrained, "REGISTRY", {"hr-test": entry})
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", hr_model.parent)
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", "hr-test")
    beats = shared_data / "slpdb" / "slp01a.ecg"
    assert main(["predict", "--beats", str(beats), "--out", str(tmp_path), "--no-plot"]) == 0  # the default
    assert "model hr-test (default):" in capsys.readouterr().out
    assert (
        main(["predict", "--beats", str(beats), "--model", "hr-test", "--out", str(tmp_path), "--no-plot"])
        == 0
    )
    assert "model hr-test:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--duration", "eight hours"], "--duration 'eight hours': expected seconds"),
        (["--start", "yesterday"], "--start 'yesterday': expected an ISO date and time"),
        (["--max-gap-min", "0"], "--max-gap-min must be > 0"),
        (["--beats-format", "rr"], "slp01a.ecg: not a text file"),
    ],
)
def test_bad_options(shared_data, hr_model, capsys, extra, message) -> None:
    beats = shared_data / "slpdb" / "slp01a.ecg"
    assert main(["predict", "--beats", str(beats), "--model", str(hr_model), *extra]) == 2
    assert message in _error_line(capsys)


def test_beat_file_errors_name_the_option_that_reads_them(hr_model, tmp_path, capsys) -> None:
    """The reader names what would read the file (its argument); the command line names its own flag."""
    path = tmp_path / "two.csv"
    path.write_text("\n".join(f"{t:.2f},{t % 7:.0f}" for t in range(0, 4000, 1)) + "\n")
    assert main(["predict", "--beats", str(path), "--model", str(hr_model), "--beats-format", "peaks"]) == 2
    line = _error_line(capsys)
    assert "two.csv: 2 columns" in line and line.endswith("[--beats-column NAME|INDEX]")


def test_input_must_be_a_recording_or_beats(shared_data, hr_model, capsys) -> None:
    assert main(["predict", "--model", str(hr_model)]) == 2
    assert "no input: give a RECORDING (EDF/BDF) or --beats FILE" in _error_line(capsys)
    beats = str(shared_data / "slpdb" / "slp01a.ecg")
    assert main(["predict", beats, "--beats", beats, "--model", str(hr_model)]) == 2
    assert "not both" in _error_line(capsys)


def test_no_model_and_none_shipped(shared_data, capsys, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "REGISTRY", {})
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", None)
    assert main(["predict", "--beats", str(shared_data / "slpdb" / "slp01a.ecg")]) == 2
    line = _error_line(capsys)
    assert "no model given (a checkpoint file or a shipped model's name): no model is shipped" in line
    assert line.endswith("[--model CKPT or NAME]")
