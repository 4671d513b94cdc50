"""10-fold cross-validation of the gate-fusion classifier on PhysioNet/CinC 2020 records, with reports.

Folds by iterative multi-label stratification (:func:`kdsleep.ecg12.folds.iterative_stratification`); round
k tests on fold k, validates on fold k + 1 (model selection and per-class thresholds) and trains on the rest
(:func:`kdsleep.ecg12.folds.cv_splits`). Each round's test outputs are written in the challenge's format, so
``kdsleep ecg12 score`` can re-score them. The report (``report.json`` and ``report.md``) gives, per fold and
as mean +- SD over folds, the challenge metric, macro F1, macro AUROC and per-class F1 and AUROC.
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

from kdsleep.ecg12.finetune import FinetuneConfig, finetune, predict_probabilities
from kdsleep.ecg12.folds import cv_splits, iterative_stratification
from kdsleep.ecg12.pretrain import PretrainConfig, RecordSignals, pretrain, read_signals
from kdsleep.ecg12.scoring import ScoringTables, evaluate, write_challenge_output

logger = logging.getLogger(__name__)

__all__ = ["CVSettings", "render_markdown", "run_cv", "summarise_folds"]


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
        When pre-training runs inside the cross-validation (``unlabelled`` records given), the steps of each
        modality; the encoders follow ``finetune``'s configurations.
    seed : int
        Seed of the stratification.
    """

    n_folds: int = 10
    rounds: int | None = None
    finetune: FinetuneConfig = FinetuneConfig()
    pretrain_steps: int | None = None
    seed: int = 0

    @classmethod
    def quick(cls) -> CVSettings:
        """A smoke test that runs on a CPU in under a minute: 3 of 10 rounds, small models, a few steps."""
        return cls(n_folds=10, rounds=3, finetune=FinetuneConfig.small(n_steps=200), pretrain_steps=60)


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
    }


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def summarise_folds(folds: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """Mean +- SD (sample SD over folds; undefined folds, e.g. no positive test record, left out)."""
    summary: dict[str, Any] = {
        key: _mean_sd([f[key] for f in folds])
        for key in ("challenge_metric", "macro_f1", "macro_auroc", "accuracy")
    }
    summary["per_class"] = {
        code: {
            "f1": _mean_sd([f["f1_per_class"][k] for f in folds]),
            "auroc": _mean_sd([f["auroc_per_class"][k] for f in folds]),
            "n_positive_test": int(sum(f["n_positive_test"][k] for f in folds)),
        }
        for k, code in enumerate(classes)
    }
    return summary


def _fmt(stat: Mapping[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page."""
    s = report["summary"]
    lines = [
        "# 12-lead ECG cross-validation (PhysioNet/CinC 2020)",
        "",
        f"- records: {report['n_records']} from `{report['data_dir']}`; classes: {len(report['classes'])}",
        f"- folds: {report['n_folds']} (iterative stratification, seed {report['seed']}), rounds run: "
        f"{len(report['folds'])}; validation fold = test fold + 1 (thresholds and model selection)",
        f"- pre-training: {report['pretraining']}",
        f"- quick smoke test: {'yes — not a result' if report['quick'] else 'no'}",
        f"- wall time: {report['seconds']:.0f} s",
        "",
        "| metric | mean ± SD over folds |",
        "|---|---|",
        f"| challenge metric | {_fmt(s['challenge_metric'])} |",
        f"| macro F1 | {_fmt(s['macro_f1'])} |",
        f"| macro AUROC | {_fmt(s['macro_auroc'])} |",
        f"| accuracy (exact label sets) | {_fmt(s['accuracy'])} |",
        "",
        "## Per fold",
        "",
        "| test fold | n test | challenge metric | macro F1 | macro AUROC | best step |",
        "|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        auroc = "n/a" if f["macro_auroc"] is None else f"{f['macro_auroc']:.3f}"
        f1 = "n/a" if f["macro_f1"] is None else f"{f['macro_f1']:.3f}"
        lines.append(
            f"| {f['test_fold']} | {f['n_test']} | {f['challenge_metric']:.3f} | {f1} | {auroc} | {f['best_step']} |"
        )
    lines += [
        "",
        "## Per class (mean ± SD over folds where defined)",
        "",
        "| class | abbreviation | test positives | F1 | AUROC |",
        "|---|---|---|---|---|",
    ]
    for code in report["classes"]:
        pc = s["per_class"][code]
        abbreviation = report["abbreviations"].get(code, "")
        lines.append(
            f"| {code} | {abbreviation} | {pc['n_positive_test']} | {_fmt(pc['f1'])} | {_fmt(pc['auroc'])} |"
        )
    return "\n".join(lines) + "\n"


def _nan_or(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


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
) -> dict[str, Any]:
    """Cross-validate, write each round's test outputs and the report; return the report.

    Parameters
    ----------
    records : labelled records (100 Hz)
    tables : ScoringTables
        Classes, merging and weights of the challenge metric.
    out_dir : path
        Receives ``pretrain/`` (when pre-training runs here), ``fold_K/outputs/*.csv`` and
        ``fold_K/classifier.pt``, ``report.json`` and ``report.md``.
    settings : CVSettings
    pretrained : mapping or None
        ``{"time": path, "spectrogram": path}`` pre-training checkpoints.
    unlabelled : records or None
        When given and ``pretrained`` is not, both encoders are pre-trained on them first (once, before the
        folds: they carry no labels, so no fold information leaks).
    device : str
        Torch device of training (test outputs are computed on the CPU).
    """
    from kdsleep._io import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    labels = np.stack([tables.encode(r.dx_codes) for r in records])
    ft = settings.finetune

    pretraining = "none (encoders trained from scratch)"
    if pretrained:
        pretraining = "checkpoints " + ", ".join(f"{k}: {v}" for k, v in pretrained.items())
    elif unlabelled:
        steps = settings.pretrain_steps or PretrainConfig().n_steps
        pretrained = {}
        for modality, encoder in (("time", ft.time_encoder), ("spectrogram", ft.spectrogram_encoder)):
            base = PretrainConfig.small(modality, steps) if quick else PretrainConfig.paper(modality)  # type: ignore[arg-type]
            config = dataclasses.replace(base, encoder=encoder, n_steps=steps)
            pretrain(
                unlabelled, config, out / "pretrain" / f"{modality}.pt", device=device, progress=progress
            )
            pretrained[modality] = out / "pretrain" / f"{modality}.pt"
        pretraining = f"self-distillation on {len(unlabelled)} unlabelled records, {steps} steps per modality"

    folds = iterative_stratification(labels, settings.n_folds, settings.seed)
    rounds = settings.n_folds if settings.rounds is None else min(settings.rounds, settings.n_folds)
    fold_reports = []
    for k, train, validation, test in cv_splits(folds, settings.n_folds):
        if k >= rounds:
            break
        logger.info(
            "round %d: %d train, %d validation, %d test records", k, len(train), len(validation), len(test)
        )
        fold_dir = out / f"fold_{k}"
        result = finetune(
            [records[i] for i in train],
            labels[train],
            [records[i] for i in validation],
            labels[validation],
            ft,
            pretrained=pretrained,
            classes=tables.classes,
            checkpoint_path=fold_dir / "classifier.pt",
            device=device,
            progress=progress,
        )
        test_records = [records[i] for i in test]
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
        "n_records": len(records),
        "classes": list(tables.classes),
        "abbreviations": {c: tables.abbreviations.get(c, "") for c in tables.classes},
        "n_folds": settings.n_folds,
        "seed": settings.seed,
        "quick": quick,
        "pretraining": pretraining,
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
