"""The report of the 12-lead cross-validation (:func:`kdsleep.ecg12.cv.run_cv`): figures over folds and the
Markdown page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["render_markdown", "summarise_folds"]


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
    }


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


def _describe_duplicates(d: Mapping[str, Any]) -> str:
    if not d["checked"]:
        return "not checked (drop_duplicates=False)"
    n = d["n_dropped_labelled"] + d["n_dropped_unlabelled"]
    text = (
        f"{n} dropped before the folds ({d['n_dropped_labelled']} labelled, {d['n_dropped_unlabelled']} "
        f"unlabelled) from {len(d['groups'])} groups of identical signals; kept: {d['rule']}"
    )
    if d.get("n_unlabelled_same_file"):
        text += (
            f"; {d['n_unlabelled_same_file']} of the unlabelled dropped are the very files of labelled records "
            "(or read twice)"
        )
    conflicts = [g for g in d["groups"] if not g["same_labels"]]
    if conflicts:
        text += f"; {len(conflicts)} groups had differing diagnoses (the kept copy's are used)"
    return text


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page."""
    s = report["summary"]
    pre = report["pretraining"]
    grouping = report["grouping"]
    lines = [
        "# 12-lead ECG cross-validation (PhysioNet/CinC 2020)",
        "",
        f"- records: {report['n_records']} from `{report['data_dir']}` after dropping duplicates "
        f"({report['n_records_read']} read); classes: {len(report['classes'])}",
        f"- duplicates: {_describe_duplicates(report['duplicates'])}",
        f"- folds grouped by {grouping['unit']}: {grouping['description']}",
        f"- folds: {report['n_folds']} (iterative stratification, seed {report['seed']}), rounds run: "
        f"{len(report['folds'])}; validation fold = test fold + 1 (thresholds and model selection)",
        f"- pre-training mode `{pre['mode']}`: {pre['description']}",
        f"- quick smoke test: {'yes — not a result' if report['quick'] else 'no'}",
        f"- wall time: {report['seconds']:.0f} s"
        + (f" (pre-training {pre['seconds']:.0f} s)" if pre.get("seconds") else ""),
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
        "| test fold | n test | n pre-training | challenge metric | macro F1 | macro AUROC | best step |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        auroc = "n/a" if f["macro_auroc"] is None else f"{f['macro_auroc']:.3f}"
        f1 = "n/a" if f["macro_f1"] is None else f"{f['macro_f1']:.3f}"
        n_pre = "—" if f.get("n_pretrain") is None else str(f["n_pretrain"])
        lines.append(
            f"| {f['test_fold']} | {f['n_test']} | {n_pre} | {f['challenge_metric']:.3f} | {f1} | {auroc} | "
            f"{f['best_step']} |"
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
