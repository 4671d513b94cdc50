"""The whole slpdb study in its quick mode, end to end on the real annotations, and its resumption."""

from __future__ import annotations

import json

import pytest

from kdsleep.study.slpdb import QUICK_SETTINGS, ROWS, run_study


@pytest.mark.slow
def test_quick_study_writes_report_and_resumes(shared_data, tmp_path):
    out = tmp_path / "results" / "slpdb.md"
    work = tmp_path / "work"
    report = run_study(
        shared_data / "slpdb",
        out=out,
        work_dir=work,
        classes=[3],
        jobs=1,
        quick=True,
        progress=False,
        command=["kdsleep", "study", "slpdb", "--quick"],
    )
    assert report["settings"]["quick"] is True
    assert report["meta"]["units_run"] == QUICK_SETTINGS.n_folds
    block = report["results"]["groupings"]["w-n-r"]
    assert list(block["models"]) == list(ROWS)
    # every scored epoch of the 15 records is tested exactly once, by every model
    n_scored = sum(v for k, v in report["data"]["stages"].items() if k in ("W", "N1", "N2", "N3", "R"))
    for model, entry in block["models"].items():
        assert entry["per_seed"]["0"]["n_epochs"] == n_scored, model
        assert len(entry["per_subject"]["0"]) == 13
    # the classical baseline learns something even in the quick mode (chance weighted F1 is about 0.4)
    assert block["models"]["hrv_gbm"]["summary"]["cohen_kappa"]["mean"] > 0.05
    text = out.read_text()
    assert "SEMI-SYNTHETIC" in text and "QUICK MODE" in text and "kdsleep study slpdb --quick" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["results"]["students"]["comparisons"][0]["variant_b"] == "hr_student"
    assert out.with_suffix(".png").stat().st_size > 1000

    again = run_study(
        shared_data / "slpdb", out=out, work_dir=work, classes=[3], jobs=1, quick=True, progress=False
    )
    assert again["meta"]["units_run"] == 0 and again["meta"]["units_reused"] == QUICK_SETTINGS.n_folds
    assert again["results"] == report["results"]
    # the resumed report still names what the first invocation cost
    assert [i["units_run"] for i in again["meta"]["invocations"]] == [QUICK_SETTINGS.n_folds, 0]
    assert "invocations on this work folder" in out.read_text()
