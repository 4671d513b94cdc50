"""Cross-validation end to end on the real CinC 2020 records, and the ecg12 training sub-commands."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from kdsleep.cli.ecg12 import ACTIONS
from kdsleep.ecg12.cv import summarise_folds


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_all_actions_registered() -> None:
    assert {"score", "pretrain", "finetune", "cv", "predict"} <= set(ACTIONS)


def test_summary_mean_and_sd_skip_undefined_folds() -> None:
    folds = [
        {
            "challenge_metric": 0.2,
            "macro_f1": 0.5,
            "macro_auroc": None,
            "accuracy": 0.0,
            "f1_per_class": [1.0],
            "auroc_per_class": [None],
            "n_positive_test": [1],
        },
        {
            "challenge_metric": 0.4,
            "macro_f1": None,
            "macro_auroc": 0.7,
            "accuracy": 0.0,
            "f1_per_class": [0.0],
            "auroc_per_class": [0.5],
            "n_positive_test": [2],
        },
    ]
    s = summarise_folds(folds, ["x"])
    assert s["challenge_metric"]["mean"] == pytest.approx(0.3)
    assert s["challenge_metric"]["sd"] == pytest.approx(0.1414, abs=1e-3)
    assert s["macro_f1"] == {"mean": 0.5, "sd": 0.0, "n": 1}
    assert s["per_class"]["x"]["n_positive_test"] == 3


@pytest.mark.slow
def test_quick_cv_predict_and_score_end_to_end(shared_data, tmp_path, capsys) -> None:
    from kdsleep.cli import main

    data = shared_data / "cinc2020"
    out = tmp_path / "cv"
    rc = main(
        [
            "ecg12",
            "cv",
            "--data-dir",
            str(data / "labelled"),
            "--unlabelled-dir",
            str(data / "unlabelled"),
            "--scoring-dir",
            str(data / "scoring"),
            "--out-dir",
            str(out),
            "--quick",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["folds"]) == 3 and report["n_records"] == 29 and report["quick"]
    assert len(report["classes"]) == 24
    assert -1.5 < report["summary"]["challenge_metric"]["mean"] < 1.0
    assert "challenge metric" in (out / "report.md").read_text()
    # Thresholds were chosen on validation records, disjoint from the test ones.
    for fold in report["folds"]:
        assert fold["validation_fold"] == (fold["test_fold"] + 1) % 10
    assert (out / "pretrain" / "time.pt").is_file() and (out / "pretrain" / "spectrogram.pt").is_file()

    outputs = tmp_path / "outputs"
    rc = main(
        [
            "ecg12",
            "predict",
            "--checkpoint",
            str(out / "fold_0" / "classifier.pt"),
            "--data-dir",
            str(data / "labelled"),
            "--output-dir",
            str(outputs),
        ]
    )
    assert rc == 0 and len(list(outputs.glob("*.csv"))) == 29
    capsys.readouterr()
    rc = main(
        ["ecg12", "score", str(data / "labelled"), str(outputs), "--scoring-dir", str(data / "scoring")]
    )
    assert rc == 0
    assert capsys.readouterr().out.startswith("AUROC,AUPRC,Accuracy")
