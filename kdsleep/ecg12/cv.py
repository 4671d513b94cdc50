"""10-fold cross-validation of the gate-fusion classifier on PhysioNet/CinC 2020 records, with reports.

Before any fold is made, records whose digital samples are identical are reduced to one copy
(:func:`kdsleep.ecg12.inventory.find_duplicates`; the labelled copy, then the first record name, is kept), among
the labelled records and between them and any unlabelled ones. Folds come from iterative multi-label
stratification (:func:`kdsleep.ecg12.folds.iterative_stratification`) of whole patients where the patient is
known (a ``patient_ids`` table or a ``#Patient ID:`` header line), of single records otherwise: the 2020
challenge's headers name no patient, so without a table the folds are by record and the report says so.
Round k tests on fold k, validates on fold k + 1 (model selection and per-class thresholds) and trains on the
rest (:func:`kdsleep.ecg12.folds.cv_splits`).

Self-supervised pre-training, when it runs here, runs in each round on that round's training records only
(plus unlabelled records of no validation or test patient), so no test or validation signal reaches any
model of the round. ``transductive=True`` instead pre-trains once on every record, test folds included (their
signals, never their labels); the report names the mode. Each round's test outputs are written in the
challenge's format, so ``kdsleep ecg12 score`` can re-score them. The report (``report.json`` and
``report.md``) states the duplicates dropped, the grouping and the pre-training mode, and gives, per fold and
as mean +- SD over folds, the challenge metric, macro F1, macro AUROC and per-class F1 and AUROC
(:mod:`kdsleep.ecg12.cv_report`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep._io import write_text_atomic
from kdsleep.ecg12.cv_report import render_markdown, summarise_folds
from kdsleep.ecg12.finetune import FinetuneConfig, finetune, predict_probabilities
from kdsleep.ecg12.folds import cv_splits, groups_split_across_folds, iterative_stratification
from kdsleep.ecg12.inventory import find_duplicates, keep_order
from kdsleep.ecg12.pretrain import PretrainConfig, RecordSignals, pretrain, read_signals
from kdsleep.ecg12.reader import read_header
from kdsleep.ecg12.scoring import ScoringTables, evaluate, write_challenge_output

logger = logging.getLogger(__name__)

__all__ = [
    "PRETRAIN_MODES",
    "CVPlan",
    "CVSettings",
    "plan_cv",
    "run_cv",
]

#: Pre-training modes a report can name: ``none`` (encoders from scratch), ``checkpoints`` (given, trained
#: outside this cross-validation), ``per-round`` (each round on its training records only) and
#: ``transductive`` (once, on every record including the test folds' signals).
PRETRAIN_MODES: tuple[str, ...] = ("none", "checkpoints", "per-round", "transductive")


@dataclass(frozen=True)
class CVSettings:
    """What :func:`run_cv` does.

    Attributes
    ----------
    n_folds : int
        Folds of the stratification (10 in Phan et al.).
    rounds : int or None
        Rounds actually run (test folds 0 .. rounds - 1); None runs all ``n_folds``.
    finetune : FinetuneConfig
    pretrain_steps : int or None
        When pre-training runs inside the cross-validation, the steps of each modality; the encoders follow
        ``finetune``'s configurations.
    seed : int
        Seed of the stratification.
    pretrain : bool or None
        Whether to pre-train the encoders inside the cross-validation; None (default) pre-trains when
        unlabelled records are given to :func:`run_cv`.
    transductive : bool
        Pre-train once on every record, test folds included (labels unused), instead of once per round on
        that round's training records. Implies pre-training; the report names the mode ``transductive``.
    drop_duplicates : bool
        Drop all but one copy of records with identical digital samples before making folds (default).
    """

    n_folds: int = 10
    rounds: int | None = None
    finetune: FinetuneConfig = FinetuneConfig()
    pretrain_steps: int | None = None
    seed: int = 0
    pretrain: bool | None = None
    transductive: bool = False
    drop_duplicates: bool = True

    @classmethod
    def quick(cls) -> CVSettings:
        """A smoke test of a few minutes on a CPU: 3 of 10 rounds, small models, a few steps per round."""
        return cls(n_folds=10, rounds=3, finetune=FinetuneConfig.small(n_steps=200), pretrain_steps=60)


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def _nan_or(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


# ---------------------------------------------------------------------------------------------------------
# Plan: duplicates, patient groups, folds
# ---------------------------------------------------------------------------------------------------------

#: How the kept copy of a group of duplicates is chosen (see :func:`kdsleep.ecg12.inventory.keep_order`).
KEEP_RULE = "the copy among the labelled records, then the first by record name, then by header path"


@dataclass(frozen=True)
class CVPlan:
    """What the cross-validation runs on: records left after dropping duplicates, their groups and folds.

    Attributes
    ----------
    records : list of RecordSignals
        Labelled records kept.
    groups : list of str
        Group of each kept labelled record: ``"patient:ID"`` or ``"record:HEADER_PATH"``.
    unlabelled : list of RecordSignals
        Unlabelled records kept (none duplicates a labelled record or another kept unlabelled one).
    unlabelled_groups : list of str
    folds : ndarray of int, shape (len(records),)
        Fold of each kept labelled record; no group is in two folds.
    duplicates : dict
        Report section: rule, counts, and each group of identical records (kept and dropped header paths).
    grouping : dict
        Report section: unit (``patient``, ``record`` or ``patient where known, else record``), counts and
        a description.
    """

    records: list[RecordSignals]
    groups: list[str]
    unlabelled: list[RecordSignals]
    unlabelled_groups: list[str]
    folds: np.ndarray
    duplicates: dict[str, Any]
    grouping: dict[str, Any]


def _drop_duplicates(
    records: Sequence[RecordSignals], unlabelled: Sequence[RecordSignals]
) -> tuple[list[int], list[int], dict[str, Any]]:
    """Indices of the labelled and unlabelled records kept, and the report section."""

    def key(path: Path) -> str:
        return os.path.realpath(path)

    labelled_keys = [key(r.header_path) for r in records]
    if len(set(labelled_keys)) != len(labelled_keys):
        raise ValueError("the same header file is given twice among the labelled records")
    labelled_at = {k: i for i, k in enumerate(labelled_keys)}
    # An unlabelled record read from the very file of a labelled one (same folder given twice) is that record.
    # So is an unlabelled record read twice.
    same_file: set[int] = set()
    unlabelled_at: dict[str, int] = {}
    for j, r in enumerate(unlabelled):
        k = key(r.header_path)
        if k in labelled_at or k in unlabelled_at:
            same_file.add(j)
        else:
            unlabelled_at[k] = j
    paths = [r.header_path for r in records] + [unlabelled[j].header_path for j in unlabelled_at.values()]
    drop_labelled: set[int] = set()
    drop_unlabelled: set[int] = set(same_file)
    groups: list[dict[str, Any]] = []
    for group in find_duplicates(paths):
        members = sorted(
            (group.kept, *group.dropped), key=lambda h: (key(h.header_path) not in labelled_at, keep_order(h))
        )
        for h in members[1:]:
            k = key(h.header_path)
            if k in labelled_at:
                drop_labelled.add(labelled_at[k])
            else:
                drop_unlabelled.add(unlabelled_at[k])
        label_sets = {frozenset(h.dx_codes) for h in members if key(h.header_path) in labelled_at}
        groups.append(
            {
                "kept": str(members[0].header_path),
                "dropped": [str(h.header_path) for h in members[1:]],
                "same_labels": len(label_sets) <= 1,
            }
        )
    for g in groups:
        logger.info("identical signals: kept %s, dropped %s", g["kept"], ", ".join(g["dropped"]))
    report = {
        "checked": True,
        "rule": KEEP_RULE,
        "n_dropped_labelled": len(drop_labelled),
        "n_dropped_unlabelled": len(drop_unlabelled),
        "n_unlabelled_same_file": len(same_file),
        "groups": groups,
    }
    keep_labelled = [i for i in range(len(records)) if i not in drop_labelled]
    keep_unlabelled = [j for j in range(len(unlabelled)) if j not in drop_unlabelled]
    return keep_labelled, keep_unlabelled, report


def _patient_of(record: RecordSignals, patient_ids: Mapping[str, str] | None) -> str | None:
    if patient_ids is not None and record.name in patient_ids:
        return str(patient_ids[record.name])
    if Path(record.header_path).is_file():
        return read_header(record.header_path).patient_id
    return None


def plan_cv(
    records: Sequence[RecordSignals],
    labels: np.ndarray,
    settings: CVSettings,
    unlabelled: Sequence[RecordSignals] | None = None,
    patient_ids: Mapping[str, str] | None = None,
) -> CVPlan:
    """Drop duplicates, group records by patient where known, and make the folds.

    Parameters
    ----------
    records : labelled records
    labels : array of bool, shape (len(records), n_classes)
    settings : CVSettings
        ``n_folds``, ``seed`` and ``drop_duplicates`` are used.
    unlabelled : records, optional
        Extra records for pre-training; those identical to a labelled record (or to another) are dropped.
    patient_ids : mapping, optional
        Record name → patient identifier (e.g. :func:`kdsleep.ecg12.reader.read_patient_map`); records not
        in it take the patient of a ``#Patient ID:`` header line, and records without either are their own
        group.

    Raises
    ------
    ValueError
        When fewer groups than folds remain.
    """
    unlabelled = list(unlabelled or ())
    labels = np.asarray(labels)
    if settings.drop_duplicates:
        keep, keep_u, duplicates = _drop_duplicates(records, unlabelled)
    else:
        keep, keep_u = list(range(len(records))), list(range(len(unlabelled)))
        duplicates = {
            "checked": False,
            "rule": None,
            "n_dropped_labelled": 0,
            "n_dropped_unlabelled": 0,
            "groups": [],
        }
    kept = [records[i] for i in keep]
    kept_u = [unlabelled[j] for j in keep_u]

    patients = [_patient_of(r, patient_ids) for r in kept]
    patients_u = [_patient_of(r, patient_ids) for r in kept_u]
    groups = [
        f"patient:{p}" if p is not None else f"record:{r.header_path}"
        for r, p in zip(kept, patients, strict=True)
    ]
    groups_u = [
        f"patient:{p}" if p is not None else f"record:{r.header_path}"
        for r, p in zip(kept_u, patients_u, strict=True)
    ]
    n_known = sum(p is not None for p in patients)
    n_groups = len(set(groups))
    if n_known == 0:
        unit = "record"
        description = (
            "no record has a patient identifier (the 2020 challenge's headers name none; pass a record → patient "
            "table, e.g. PTB-XL's ptbxl_database.csv, to group by patient), so each record is its own group and "
            "two records of one patient may fall in different folds"
        )
    elif n_known == len(kept):
        unit = "patient"
        description = f"{len(kept)} records of {n_groups} patients; no patient is in two folds"
    else:
        unit = "patient where known, else record"
        description = (
            f"{n_known} of {len(kept)} records have a patient identifier and are grouped by patient; the "
            f"{len(kept) - n_known} others are their own groups; {n_groups} groups in all"
        )
    grouping = {
        "unit": unit,
        "description": description,
        "n_records_with_patient": n_known,
        "n_groups": n_groups,
        "n_unlabelled_with_patient": sum(p is not None for p in patients_u),
    }
    if n_groups < settings.n_folds:
        raise ValueError(
            f"{n_groups} groups ({len(kept)} records after dropping duplicates) for {settings.n_folds} folds: "
            "every fold needs at least one"
        )
    folds = iterative_stratification(labels[keep], settings.n_folds, settings.seed, groups=groups)
    split = groups_split_across_folds(folds, groups)
    if split:  # cannot happen: iterative_stratification places whole groups
        raise AssertionError(f"groups split across folds: {split[:5]}")
    return CVPlan(kept, groups, kept_u, groups_u, folds, duplicates, grouping)


# ---------------------------------------------------------------------------------------------------------
# Running the rounds
# ---------------------------------------------------------------------------------------------------------


def _pretrain_encoders(
    pool: Sequence[RecordSignals],
    out_dir: Path,
    settings: CVSettings,
    quick: bool,
    device: str,
    progress: bool,
) -> tuple[dict[str, Path], float]:
    """Pre-train both encoders on ``pool``; checkpoints ``out_dir/{time,spectrogram}.pt`` and seconds taken."""
    ft = settings.finetune
    steps = settings.pretrain_steps or PretrainConfig().n_steps
    checkpoints = {}
    seconds = 0.0
    for modality, encoder in (("time", ft.time_encoder), ("spectrogram", ft.spectrogram_encoder)):
        base = PretrainConfig.small(modality, steps) if quick else PretrainConfig.paper(modality)  # type: ignore[arg-type]
        config = dataclasses.replace(base, encoder=encoder, n_steps=steps)
        result = pretrain(list(pool), config, out_dir / f"{modality}.pt", device=device, progress=progress)
        seconds += result.seconds
        checkpoints[modality] = out_dir / f"{modality}.pt"
    return checkpoints, seconds


def _pretrain_mode(
    settings: CVSettings,
    pretrained: Mapping[str, str | os.PathLike] | None,
    unlabelled: Sequence[RecordSignals] | None,
) -> str:
    run_here = (
        settings.pretrain if settings.pretrain is not None else bool(unlabelled) or settings.transductive
    )
    if settings.transductive and not run_here:
        raise ValueError(
            "transductive=True pre-trains the encoders; it cannot be combined with pretrain=False"
        )
    if pretrained:
        if run_here or unlabelled:
            raise ValueError(
                "pre-trained checkpoints and pre-training inside the cross-validation (pretrain, transductive or "
                "unlabelled records) exclude each other"
            )
        return "checkpoints"
    if not run_here:
        return "none"
    return "transductive" if settings.transductive else "per-round"


def run_cv(
    records: Sequence[RecordSignals],
    tables: ScoringTables,
    out_dir: str | os.PathLike,
    settings: CVSettings,
    pretrained: Mapping[str, str | os.PathLike] | None = None,
    unlabelled: Sequence[RecordSignals] | None = None,
    data_dir: str | os.PathLike = "",
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
    patient_ids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Cross-validate, write each round's test outputs and the report; return the report.

    Parameters
    ----------
    records : labelled records (100 Hz)
    tables : ScoringTables
        Classes, merging and weights of the challenge metric.
    out_dir : path
        Receives ``fold_K/outputs/*.csv``, ``fold_K/classifier.pt``, ``fold_K/pretrain/*.pt`` (per-round
        pre-training) or ``pretrain/*.pt`` (transductive), ``report.json`` and ``report.md``.
    settings : CVSettings
        ``pretrain`` and ``transductive`` choose the pre-training mode (see :data:`PRETRAIN_MODES`).
    pretrained : mapping or None
        ``{"time": path, "spectrogram": path}`` checkpoints trained outside this cross-validation (mode
        ``checkpoints``): the report cannot tell which records they saw, so they must not have seen these.
    unlabelled : records or None
        Extra records for pre-training (labels never read). Per round, those of a validation or test patient
        are left out, and any identical to a labelled record are dropped beforehand.
    device : str
        Torch device of training (test outputs are computed on the CPU).
    patient_ids : mapping or None
        Record name → patient, to keep each patient's records in one fold (see :func:`plan_cv`).
    """
    mode = _pretrain_mode(settings, pretrained, unlabelled)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    all_labels = np.stack([tables.encode(r.dx_codes) for r in records])
    plan = plan_cv(records, all_labels, settings, unlabelled, patient_ids)
    kept = plan.records
    labels = np.stack([tables.encode(r.dx_codes) for r in kept])
    ft = settings.finetune
    steps = settings.pretrain_steps or PretrainConfig().n_steps
    pretrain_seconds = 0.0

    if mode == "checkpoints":
        assert pretrained is not None
        description = (
            "checkpoints given ("
            + ", ".join(f"{k}: {v}" for k, v in pretrained.items())
            + "), trained outside this cross-validation: this report cannot tell whether they saw test records"
        )
    elif mode == "none":
        description = "none (encoders trained from scratch)"
    elif mode == "transductive":
        pool = [*kept, *plan.unlabelled]
        pretrained, pretrain_seconds = _pretrain_encoders(
            pool, out / "pretrain", settings, quick, device, progress
        )
        description = (
            f"TRANSDUCTIVE — once, on all {len(kept)} labelled records (test folds included: their signals, not "
            f"their labels) and {len(plan.unlabelled)} unlabelled records, {steps} steps per modality; the test "
            "figures are not those of an inductive evaluation"
        )
    else:
        description = (
            f"in each round, on that round's training records only (validation and test records left out) and "
            f"the {len(plan.unlabelled)} unlabelled records of no validation or test patient, {steps} steps per "
            "modality; no validation or test signal reaches any model of the round"
        )

    rounds = settings.n_folds if settings.rounds is None else min(settings.rounds, settings.n_folds)
    fold_reports = []
    for k, train, validation, test in cv_splits(plan.folds, settings.n_folds):
        if k >= rounds:
            break
        logger.info(
            "round %d: %d train, %d validation, %d test records", k, len(train), len(validation), len(test)
        )
        fold_dir = out / f"fold_{k}"
        pretrain_names: list[str] | None = None
        round_seconds: float | None = None
        round_pretrained = pretrained
        if mode == "per-round":
            held_out = {plan.groups[i] for i in (*validation, *test)}
            pool = [kept[i] for i in train] + [
                u for u, g in zip(plan.unlabelled, plan.unlabelled_groups, strict=True) if g not in held_out
            ]
            round_pretrained, round_seconds = _pretrain_encoders(
                pool, fold_dir / "pretrain", settings, quick, device, progress
            )
            pretrain_seconds += round_seconds
            pretrain_names = [r.name for r in pool]
        result = finetune(
            [kept[i] for i in train],
            labels[train],
            [kept[i] for i in validation],
            labels[validation],
            ft,
            pretrained=round_pretrained,
            classes=tables.classes,
            checkpoint_path=fold_dir / "classifier.pt",
            device=device,
            progress=progress,
        )
        test_records = [kept[i] for i in test]
        probs = predict_probabilities(result.model, test_records)
        binary = probs >= result.thresholds[None, :]
        (fold_dir / "outputs").mkdir(parents=True, exist_ok=True)
        for rec, b, p in zip(test_records, binary, probs, strict=True):
            write_challenge_output(fold_dir / "outputs" / f"{rec.name}.csv", rec.name, tables.classes, b, p)
        scores = evaluate(labels[test], binary, probs, tables)
        fold_reports.append(
            {
                "test_fold": k,
                "validation_fold": (k + 1) % settings.n_folds,
                "n_train": len(train),
                "n_validation": len(validation),
                "n_test": len(test),
                "test_records": [r.name for r in test_records],
                "validation_records": [kept[i].name for i in validation],
                "n_pretrain": None if pretrain_names is None else len(pretrain_names),
                "pretrain_records": pretrain_names,
                "pretrain_seconds": round_seconds,
                "challenge_metric": scores.challenge_metric,
                "macro_f1": _nan_or(scores.f_measure),
                "macro_auroc": _nan_or(scores.auroc),
                "accuracy": scores.accuracy,
                "f1_per_class": _clean(scores.f_measure_per_class),
                "auroc_per_class": _clean(scores.auroc_per_class),
                "n_positive_test": labels[test].sum(0).astype(int).tolist(),
                "thresholds": result.thresholds.tolist(),
                "best_step": result.best_step,
                "train_seconds": result.seconds,
            }
        )
    report = {
        "data_dir": str(data_dir),
        "n_records_read": len(records),
        "n_records": len(kept),
        "n_unlabelled_read": len(unlabelled or ()),
        "n_unlabelled": len(plan.unlabelled),
        "duplicates": plan.duplicates,
        "grouping": plan.grouping,
        "classes": list(tables.classes),
        "abbreviations": {c: tables.abbreviations.get(c, "") for c in tables.classes},
        "n_folds": settings.n_folds,
        "seed": settings.seed,
        "quick": quick,
        "pretraining": {
            "mode": mode,
            "transductive": mode == "transductive",
            "description": description,
            "steps": steps if mode in ("per-round", "transductive") else None,
            "seconds": pretrain_seconds,
        },
        "finetune_config": ft.to_dict(),
        "folds": fold_reports,
        "summary": summarise_folds(fold_reports, tables.classes),
        "seconds": time.perf_counter() - start,
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(out / "report.md", render_markdown(report))
    return report


def load_labelled(data_dir: str | os.PathLike) -> list[RecordSignals]:
    """Labelled records of a folder at 100 Hz (see :func:`kdsleep.ecg12.pretrain.read_signals`)."""
    return read_signals(data_dir)
