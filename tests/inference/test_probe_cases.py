"""``kdsleep train --resume`` on a run folder with nothing in it: an error, not a fresh run."""

from __future__ import annotations

from kdsleep.cli import main


def test_resume_of_an_empty_run_folder(tmp_path, capsys) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    assert main(["train", "--run-dir", str(empty), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"run folder {empty} is empty, nothing to resume" in err and "Traceback" not in err
    assert list(empty.iterdir()) == []
