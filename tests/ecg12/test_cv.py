"""Cross-validation end to end on the real CinC 2020 records, and the ecg12 training sub-commands."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import kdsleep.ecg12.cv as cv
from kdsleep.cli.ecg12 import ACTIONS
from kdsleep.ecg12.cv import CVSettings, plan_cv, run_cv
from kdsleep.ecg12.cv_report import summarise_folds
from kdsleep.ecg12.folds import groups_split_across_folds
from kdsleep.ecg12.pretrain import RecordSignals, read_signals
from kdsleep.ecg12.scoring import ScoringTables, load_scoring_tables


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# Leakage: duplicates, patients, pre-training
# ---------------------------------------------------------------------------------------------------------


def copy_record(src: Path, folder: Path, name: str, dx: str | None = None, extra: str | None = None) -> Path:
    """Copy a challenge record under another name (header and .mat), optionally with other diagnoses."""
    folder.mkdir(parents=True, exist_ok=True)
    text = src.read_text().replace(src.stem, name)
    lines = text.splitlines()
    if dx is not None:
        lines = [f"#Dx: {dx}" if line.startswith("#Dx") else line for line in lines]
    if extra is not None:
        lines.append(extra)
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    shutil.copyfile(src.with_suffix(".mat"), folder / f"{name}.mat")
    return folder / f"{name}.hea"


def digest(record: RecordSignals) -> str:
    return hashlib.sha1(np.ascontiguousarray(record.signal).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def tables(shared_data: Path) -> ScoringTables:
    return load_scoring_tables(shared_data / "cinc2020" / "scoring")


@pytest.fixture(scope="module")
def real_records(shared_data: Path) -> tuple[list[RecordSignals], list[RecordSignals]]:
    root = shared_data / "cinc2020"
    return read_signals(root / "labelled"), read_signals(root / "unlabelled")


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch, tables: ScoringTables) -> list[dict]:
    """Replace pre-training, fine-tuning and prediction by stubs that record what they are given."""
    calls: list[dict] = []

    def pretrain(records, config, path, device="cpu", progress=True):
        calls.append(
            {"kind": "pretrain", "records": list(records), "path": Path(path), "modality": config.modality}
        )
        return SimpleNamespace(seconds=0.5)

    def finetune(train, train_labels, validation, validation_labels, config, pretrained=None, **kwargs):
        calls.append(
            {
                "kind": "finetune",
                "train": list(train),
                "validation": list(validation),
                "pretrained": pretrained,
            }
        )
        return SimpleNamespace(
            model=None, thresholds=np.full(tables.n_classes, 0.5), best_step=0, seconds=0.0
        )

    def predict(model, records, **kwargs):
        calls.append({"kind": "predict", "test": list(records)})
        return np.zeros((len(records), tables.n_classes))

    monkeypatch.setattr(cv, "pretrain", pretrain)
    monkeypatch.setattr(cv, "finetune", finetune)
    monkeypatch.setattr(cv, "predict_probabilities", predict)
    return calls


def rounds_of(calls: list[dict]) -> list[dict]:
    """Per round: the records given to pre-training (both modalities), training, validation and test."""
    rounds, pending = [], []
    for call in calls:
        if call["kind"] == "pretrain":
            pending.append(call)
        elif call["kind"] == "finetune":
            rounds.append({"pretrain": pending, "train": call["train"], "validation": call["validation"]})
            pending = []
        else:
            rounds[-1]["test"] = call["test"]
    return rounds


def test_duplicates_dropped_before_folds(shared_data: Path, tmp_path: Path, tables: ScoringTables) -> None:
    source = shared_data / "cinc2020" / "labelled"
    labelled = tmp_path / "labelled"
    for path in [*sorted(source.glob("*.hea"))[:12], source / "Q0050.hea"]:
        copy_record(path, labelled, path.stem)
    # Q0050 copied as AAdup0 (sorts first: kept), A5432 as ZZdup1 and ZZdup2 (A5432 kept) and with other
    # diagnoses as ZZdup3 (kept A5432's labels are used; the conflict is reported)
    copy_record(source / "Q0050.hea", labelled, "AAdup0")
    for name in ("ZZdup1", "ZZdup2"):
        copy_record(source / "A5432.hea", labelled, name)
    copy_record(source / "A5432.hea", labelled, "ZZdup3", dx="164889003")
    unlabelled_dir = shared_data / "cinc2020" / "unlabelled"
    records = read_signals(labelled)
    unlabelled = read_signals(unlabelled_dir)
    names = [r.name for r in records]
    assert len(records) == 17 and {"Q0050", "E00009", "Q0001", "Q0010"} <= set(names)
    labels = np.stack([tables.encode(r.dx_codes) for r in records])
    plan = plan_cv(records, labels, CVSettings(n_folds=4), unlabelled=unlabelled)

    kept = [r.name for r in plan.records]
    assert sorted(set(names) - set(kept)) == ["Q0050", "ZZdup1", "ZZdup2", "ZZdup3"]
    assert "AAdup0" in kept and "A5432" in kept and len(plan.folds) == 13
    d = plan.duplicates
    assert d["checked"] and d["n_dropped_labelled"] == 4
    # E00009, Q0001 and Q0010 of the unlabelled folder repeat labelled records: dropped from it
    assert d["n_dropped_unlabelled"] == 3
    kept_ids = {id(r) for r in plan.unlabelled}
    assert [r.name for r in unlabelled if id(r) not in kept_ids] == ["E00009", "Q0001", "Q0010"]
    by_kept = {Path(g["kept"]).stem: g for g in d["groups"]}
    assert sorted(Path(p).stem for p in by_kept["A5432"]["dropped"]) == ["ZZdup1", "ZZdup2", "ZZdup3"]
    assert not by_kept["A5432"]["same_labels"] and by_kept["AAdup0"]["same_labels"]
    # no two kept records, labelled or unlabelled, have the same signal
    digests = [digest(r) for r in plan.records + plan.unlabelled]
    assert len(set(digests)) == len(digests)
    assert (
        plan.grouping["unit"] == "record"
        and "no record has a patient identifier" in plan.grouping["description"]
    )

    # the same folder given as labelled and unlabelled: every unlabelled record is a labelled one
    again = plan_cv(records, labels, CVSettings(n_folds=4), unlabelled=records)
    assert again.unlabelled == [] and again.duplicates["n_unlabelled_same_file"] == 17
    off = plan_cv(records, labels, CVSettings(n_folds=4, drop_duplicates=False))
    assert len(off.records) == 17 and not off.duplicates["checked"]


def test_folds_grouped_by_patient(
    shared_data: Path, tmp_path: Path, tables: ScoringTables, real_records, fake_training
) -> None:
    records, unlabelled = real_records
    rng = np.random.default_rng(0)
    patient_ids = {r.name: f"p{rng.integers(12)}" for r in records}
    # two unlabelled records of labelled patients, given through the same table
    patient_ids.update({"A0001": patient_ids[records[0].name], "A0002": patient_ids[records[1].name]})
    labels = np.stack([tables.encode(r.dx_codes) for r in records])
    plan = plan_cv(records, labels, CVSettings(n_folds=5), unlabelled, patient_ids=patient_ids)
    assert plan.grouping["unit"] == "patient" and plan.grouping["n_groups"] == len(set(patient_ids.values()))
    assert groups_split_across_folds(plan.folds, plan.groups) == []
    patient = {id(r): patient_ids.get(r.name) for r in records + unlabelled}

    report = run_cv(
        records,
        tables,
        tmp_path / "cv",
        CVSettings(n_folds=5, pretrain_steps=1),
        unlabelled=unlabelled,
        patient_ids=patient_ids,
        progress=False,
    )
    assert report["grouping"]["unit"] == "patient"
    rounds = rounds_of(fake_training)
    assert len(rounds) == 5
    for r in rounds:
        test_patients = {patient[id(x)] for x in r["test"]}
        held_out = test_patients | {patient[id(x)] for x in r["validation"]}
        assert not test_patients & {patient[id(x)] for x in r["train"] + r["validation"]}
        for call in r["pretrain"]:
            assert not held_out & {patient[id(x)] for x in call["records"]}

    # patients from header lines when no table is given; partly known
    folder = tmp_path / "headers"
    for i, path in enumerate(sorted((shared_data / "cinc2020" / "labelled").glob("*.hea"))):
        copy_record(path, folder, path.stem, extra=f"#Patient ID: q{i % 7}" if i < 20 else None)
    with_headers = read_signals(folder)
    plan = plan_cv(with_headers, labels, CVSettings(n_folds=5))
    assert plan.grouping["unit"] == "patient where known, else record"
    assert plan.grouping["n_records_with_patient"] == 20 and plan.grouping["n_groups"] == 7 + 9
    assert groups_split_across_folds(plan.folds, plan.groups) == []


def test_per_round_pretraining_never_sees_held_out_records(
    tmp_path: Path, tables: ScoringTables, real_records, fake_training
) -> None:
    records, unlabelled = real_records
    report = run_cv(
        records,
        tables,
        tmp_path / "cv",
        CVSettings(n_folds=10, pretrain_steps=1),
        unlabelled=unlabelled,
        progress=False,
    )
    assert report["pretraining"]["mode"] == "per-round" and not report["pretraining"]["transductive"]
    assert report["duplicates"]["n_dropped_unlabelled"] == 3 and report["n_unlabelled"] == 45
    rounds = rounds_of(fake_training)
    assert len(rounds) == 10 == len(report["folds"])
    for k, (r, fold) in enumerate(zip(rounds, report["folds"], strict=True)):
        assert [c["modality"] for c in r["pretrain"]] == ["time", "spectrogram"]
        assert {c["path"] for c in r["pretrain"]} == {
            tmp_path / "cv" / f"fold_{k}" / "pretrain" / f"{m}.pt" for m in ("time", "spectrogram")
        }
        held_out = {digest(x) for x in r["test"] + r["validation"]}
        assert held_out
        for call in r["pretrain"]:
            seen = {digest(x) for x in call["records"]}
            # no held-out signal, not even as an unlabelled copy; every training record is used
            assert not seen & held_out
            assert {digest(x) for x in r["train"]} <= seen
            assert len(call["records"]) == len(r["train"]) + 45
        assert fold["n_pretrain"] == len(fold["pretrain_records"]) == len(r["train"]) + 45
        assert fold["pretrain_seconds"] == 1.0
        assert not set(fold["pretrain_records"]) & set(fold["test_records"] + fold["validation_records"])
    md = (tmp_path / "cv" / "report.md").read_text()
    assert "pre-training mode `per-round`" in md and "3 dropped before the folds" in md
    assert "folds grouped by record" in md


def test_transductive_mode_is_named(
    tmp_path: Path, tables: ScoringTables, real_records, fake_training
) -> None:
    records, unlabelled = real_records
    report = run_cv(
        records,
        tables,
        tmp_path / "cv",
        CVSettings(n_folds=10, rounds=2, pretrain_steps=1, transductive=True),
        unlabelled=unlabelled,
        progress=False,
    )
    pre = report["pretraining"]
    assert pre["mode"] == "transductive" and pre["transductive"] and pre["seconds"] == 1.0
    calls = [c for c in fake_training if c["kind"] == "pretrain"]
    # once per modality, before the rounds, on every labelled record (test folds included) and the unlabelled
    assert len(calls) == 2 and len(calls[0]["records"]) == 29 + 45
    assert all(c["path"].parent == tmp_path / "cv" / "pretrain" for c in calls)
    assert all(f["pretrain_records"] is None for f in report["folds"])
    md = (tmp_path / "cv" / "report.md").read_text()
    assert "pre-training mode `transductive`: TRANSDUCTIVE" in md and "test folds included" in md

    # transductive pre-training of the labelled records alone needs no unlabelled folder
    fake_training.clear()
    run_cv(
        records, tables, tmp_path / "cv2", CVSettings(n_folds=10, rounds=1, transductive=True), progress=False
    )
    assert len(fake_training[0]["records"]) == 29


def test_pretraining_modes_exclusive(
    tmp_path: Path, tables: ScoringTables, real_records, fake_training
) -> None:
    records, unlabelled = real_records
    checkpoints = {"time": tmp_path / "time.pt"}
    with pytest.raises(ValueError, match="exclude each other"):
        run_cv(records, tables, tmp_path, CVSettings(), pretrained=checkpoints, unlabelled=unlabelled)
    with pytest.raises(ValueError, match="exclude each other"):
        run_cv(records, tables, tmp_path, CVSettings(transductive=True), pretrained=checkpoints)
    with pytest.raises(ValueError, match="pretrain=False"):
        run_cv(records, tables, tmp_path, CVSettings(pretrain=False, transductive=True))
    report = run_cv(
        records, tables, tmp_path / "c", CVSettings(rounds=1), pretrained=checkpoints, progress=False
    )
    assert report["pretraining"]["mode"] == "checkpoints"
    assert "cannot tell whether they saw test records" in report["pretraining"]["description"]
    report = run_cv(records, tables, tmp_path / "n", CVSettings(rounds=1), progress=False)
    assert report["pretraining"]["mode"] == "none" and not any(c["kind"] == "pretrain" for c in fake_training)
    # pre-training per round on the labelled training records alone
    fake_training.clear()
    report = run_cv(records, tables, tmp_path / "p", CVSettings(rounds=1, pretrain=True), progress=False)
    assert report["pretraining"]["mode"] == "per-round"
    assert len(fake_training[0]["records"]) == report["folds"][0]["n_train"]


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
    # pre-training ran in each round on its training records; the 3 unlabelled copies of labelled records
    # were dropped
    assert report["pretraining"]["mode"] == "per-round"
    assert report["duplicates"]["n_dropped_unlabelled"] == 3
    for k in range(3):
        assert (out / f"fold_{k}" / "pretrain" / "time.pt").is_file()
        assert (out / f"fold_{k}" / "pretrain" / "spectrogram.pt").is_file()

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
