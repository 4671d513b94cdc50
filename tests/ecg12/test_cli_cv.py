"""``kdsleep ecg12 cv`` refuses pre-training options that contradict each other, before reading any record."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsleep.cli import main


@pytest.mark.parametrize("extra", [["--transductive"], ["--pretrain"], ["--unlabelled-dir", "."]])
def test_pretrain_dir_excludes_pretraining_inside_the_cv(tmp_path: Path, capsys, extra) -> None:
    code = main(
        [
            "ecg12",
            "cv",
            "--data-dir",
            str(tmp_path),
            "--scoring-dir",
            str(tmp_path),
            "--pretrain-dir",
            str(tmp_path),
            *extra,
        ]
    )
    assert code != 0
    assert "--pretrain-dir gives finished encoders" in capsys.readouterr().err


def test_patient_map_that_does_not_exist_is_named(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "ecg12",
            "cv",
            "--data-dir",
            str(tmp_path),
            "--scoring-dir",
            str(tmp_path),
            "--patient-map",
            str(tmp_path / "patients.csv"),
        ]
    )
    assert code != 0
    assert "patients.csv" in capsys.readouterr().err
