"""The slpdb study with two training seeds and every row, on four subjects of the real annotations with tiny
models: one result per seed and row, the controls run, the same folds for every seed, resumption."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kdsleep.study.report import rewrite_report
from kdsleep.study.rows import ROWS
from kdsleep.study.slpdb import QUICK_SETTINGS, run_study, unit_dir

#: Four subjects, each with some REM (the one training subject of a fold must hold every class).
RECORDS = ("slp01a", "slp01b", "slp02a", "slp02b", "slp14", "slp59")


@pytest.fixture
def subset(shared_data, tmp_path):
    folder = tmp_path / "slpdb"
    folder.mkdir()
    for name in RECORDS:
        for suffix in (".hea", ".st", ".ecg"):
            (folder / f"{name}{suffix}").symlink_to(shared_data / "slpdb" / f"{name}{suffix}")
    return folder


@pytest.mark.slow
def test_seeds_and_controls_on_four_subjects(subset, tmp_path):
    settings = replace(QUICK_SETTINGS, n_folds=2, n_val=1, filters=(2, 4, 4, 4, 4), max_train_windows=8)
    work = tmp_path / "work"
    out = tmp_path / "report.md"
    report = run_study(
        subset, out=out, work_dir=work, classes=[3], seeds=2, settings=settings, progress=False, command=["t"]
    )
    results = report["results"]
    assert results["seeds"] == [0, 1] and results["rows"] == list(ROWS)
    assert report["meta"]["units_run"] == 2 * 2
    block = results["groupings"]["w-n-r"]
    for row, entry in block["models"].items():
        assert sorted(entry["per_seed"]) == ["0", "1"], row
        assert len(entry["per_subject_seed_mean"]["cohen_kappa"]) == 4, row
    units = [
        json.loads((unit_dir(work, s, f, "w-n-r") / "result.json").read_text())
        for s in (0, 1)
        for f in (0, 1)
    ]
    for unit in units:
        assert set(unit["predictions"]) == set(ROWS)
        # the label-smoothing control tried its grid and chose on validation; ecg_self was trained
        assert unit["stages"]["ecg_ls"]["label_smoothing"]["chosen_on"] == "val_weighted_f1"
        assert len(unit["stages"]["ecg_ls"]["label_smoothing"]["val_weighted_f1"]) == 3
        assert "final" in unit["stages"]["ecg_self"]
        assert unit["cpu_seconds"] > 0
    # the same folds (test records) for both seeds; the seed changes what the deep rows learn
    assert [u["test_records"] for u in units[:2]] == [u["test_records"] for u in units[2:]]
    assert units[0]["predictions"]["hr_student"] != units[2]["predictions"]["hr_student"]
    assert len(results["distillation"]["comparisons"]) == 5 + 6
    text = out.read_text()
    assert "2 seeds" in text and "Holm p" in text and "Distillation claim" in text

    again = run_study(
        subset, out=out, work_dir=work, classes=[3], seeds=2, settings=settings, progress=False, command=["t"]
    )
    assert again["meta"]["units_run"] == 0 and again["results"] == results

    # a finished report written again under another name, from its JSON alone
    rewritten = rewrite_report(out.with_suffix(".json"), tmp_path / "other.md")
    assert rewritten["results"] == results
    assert "`other.json` beside this file" in (tmp_path / "other.md").read_text()
    assert (tmp_path / "other.png").stat().st_size > 1000
