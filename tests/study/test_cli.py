"""``kdsleep study slpdb``: user errors are one clear line and exit code 2."""

from __future__ import annotations

from kdsleep.cli import main


def test_missing_folder(tmp_path, capsys):
    code = main(["study", "slpdb", "--data-dir", str(tmp_path / "absent"), "--quick", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "folder not found" in err and "absent" in err


def test_folder_without_annotation_files(tmp_path, capsys):
    (tmp_path / "slp01a.hea").write_text("slp01a 4 250 1800000\n")
    code = main(["study", "slpdb", "--data-dir", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no .st, .ecg files" in err


def test_bad_options(tmp_path, capsys, shared_data):
    data = str(shared_data / "slpdb")
    assert main(["study", "slpdb", "--data-dir", data, "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["study", "slpdb", "--data-dir", data, "--out", str(tmp_path / "r.txt")]) == 2
    assert ".md" in capsys.readouterr().err
    assert main(["study", "slpdb", "--data-dir", data, "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


def test_no_study_named(capsys):
    assert main(["study"]) == 2
    assert "kdsleep study slpdb" in capsys.readouterr().err


def test_work_dir_of_other_settings_is_refused(tmp_path, capsys, shared_data):
    work = tmp_path / "work"
    work.mkdir()
    (work / "settings.json").write_text('{"format": "kdsleep-slpdb-study-1", "settings": {"epochs": 99}}')
    code = main(
        [
            "study",
            "slpdb",
            "--data-dir",
            str(shared_data / "slpdb"),
            "--quick",
            "--work-dir",
            str(work),
            "--out",
            str(tmp_path / "r.md"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "other settings" in capsys.readouterr().err
