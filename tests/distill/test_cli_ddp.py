from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdsleep.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_experiment_then_evaluate(tiny_data, tiny_toml, tmp_path, capsys):
    # two test subjects, so that the paired comparison has pairs
    config = tiny_toml(epochs=1, split_fractions=[0.4, 0.2, 0.4])
    run_dir = tmp_path / "grid"
    code = main(
        [
            "experiment",
            "--config",
            str(config),
            "--data-dir",
            str(tiny_data),
            "--run-dir",
            str(run_dir),
            "--classes",
            "4",
            "--variants",
            "sd_cl",
            "ecg_baseline",
            "eeg_baseline",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "eeg_baseline" in out and "sd_cl" in out and "report:" in out
    report = json.loads((run_dir / "report.json").read_text())
    assert {row["variant"] for row in report["table_i"]} >= {"eeg_baseline", "ecg_baseline", "sd_cl"}
    assert report["comparisons"] and report["comparisons"][0]["variant_a"] == "ecg_baseline"

    (run_dir / "report.md").unlink()
    assert main(["evaluate", str(run_dir), "--device", "cpu"]) == 0
    assert (run_dir / "report.md").exists()
    plots = run_dir / "w-l-d-r" / "sd_cl" / "plots"
    assert (plots / "confusion_matrix.png").exists() and (plots / "learning_curves_final.png").exists()
    assert list(plots.glob("hypnogram_*.png"))

    # --part val scores the validation subjects and leaves the test figures and the report alone
    capsys.readouterr()
    report_before = (run_dir / "report.json").read_text()
    test_before = (run_dir / "w-l-d-r" / "sd_cl" / "test.json").read_text()
    assert main(["evaluate", str(run_dir), "--device", "cpu", "--part", "val"]) == 0
    out = capsys.readouterr().out
    assert "validation sd_cl" in out and "kappa" in out and "report:" not in out
    validation = json.loads((run_dir / "w-l-d-r" / "sd_cl" / "validation.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    assert validation["part"] == "val" and set(validation["per_subject"]) == set(split["subjects"]["val"])
    assert not set(validation["per_subject"]) & set(split["subjects"]["test"])
    assert (run_dir / "report.json").read_text() == report_before
    assert (run_dir / "w-l-d-r" / "sd_cl" / "test.json").read_text() == test_before


def test_cli_errors_are_one_line(tiny_data, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nlearnig_rate = 1\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: unknown key 'learnig_rate' in [training]" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a kdsleep run folder" in capsys.readouterr().err


def test_torchrun_two_processes_gloo(tiny_data, tiny_toml, tmp_path):
    config = tiny_toml(epochs=1)
    run_dir = tmp_path / "ddp"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "KDSLEEP_HOME": str(tmp_path / "home"),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "kdsleep",
        "train",
        "--variant",
        "at_cl",
        "--config",
        str(config),
        "--data-dir",
        str(tiny_data),
        "--run-dir",
        str(run_dir),
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "weighted F1" in result.stdout
    # a run scored on a handful of test subjects says that its figures are one draw
    assert "note: one training seed scored on" in result.stdout and "--seeds 5" in result.stdout
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    for stage in ("at_step/at", "at_cl/final"):  # step 1 is shared by at_cl and at_sd_cl
        assert (run_dir / "w-l-d-r" / stage / "done.json").exists()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One run of the README's main command (`kdsleep train`, no arguments) in an empty folder."""
    folder = tmp_path_factory.mktemp("default-run")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train"]) == 0
    finally:
        os.chdir(cwd)
    run_dir = folder / "runs" / "synthetic-w-l-d-r" / "w-l-d-r"
    return {
        variant: json.loads((run_dir / variant / "test.json").read_text())["metrics"]
        for variant in ("eeg_baseline", "at_cl")
    }


@pytest.mark.slow
def test_no_argument_default_teacher_learns(default_run):
    """The EEG teacher of the synthetic default reaches weighted F1 >= 0.80."""
    assert default_run["eeg_baseline"]["weighted_f1"] >= 0.80, default_run["eeg_baseline"]


@pytest.mark.slow
def test_no_argument_default_student_above_chance(default_run):
    """The ECG student is clearly above chance: agreement well beyond chance, and more accurate than always
    answering the test nights' most frequent stage."""
    student = default_run["at_cl"]
    support = np.asarray(student["support"], dtype=float)
    assert student["cohen_kappa"] >= 0.25, student
    assert student["accuracy"] > support.max() / support.sum(), student
    assert student["weighted_f1"] >= 0.45, student
