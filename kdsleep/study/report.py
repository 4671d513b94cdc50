"""The slpdb study's report: pooled and per-subject figures, paired comparisons, provenance, literature."""

from __future__ import annotations

import io
import json
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdsleep._io import git_commit, kdsleep_version, write_bytes_atomic, write_text_atomic
from kdsleep.data.stages import SleepStage, get_grouping
from kdsleep.evaluation.compare import paired_comparison
from kdsleep.evaluation.metrics import compute_metrics, metric_by_subject, per_subject_metrics
from kdsleep.models import UTime
from kdsleep.study.settings import DESCRIPTIONS, MODELS

__all__ = ["LITERATURE", "aggregate", "render_markdown", "write_study_report"]

#: Published figures of ECG / heart-rate sleep staging (context only: other data, other protocols).
LITERATURE: tuple[dict[str, Any], ...] = (
    {
        "work": "sleepecg (HRV features + GRU; trained MESA, tested SHHS)",
        "classes": "W/REM/NREM (3)",
        "accuracy": 0.75,
        "kappa": 0.54,
        "weighted_f1": None,
    },
    {
        "work": "Sridhar et al. 2020 (instantaneous heart rate, CNN; held-out SHHS)",
        "classes": "W/L/D/R (4)",
        "accuracy": 0.77,
        "kappa": 0.66,
        "weighted_f1": None,
    },
    {
        "work": "Jones et al. 2024 (raw 1-lead ECG, CNN+TCN)",
        "classes": "AASM (5)",
        "accuracy": None,
        "kappa": 0.725,
        "weighted_f1": None,
        "note": "median kappa",
    },
    {
        "work": "Joshi et al. 2021, ECG baseline (raw ECG, MASS)",
        "classes": "W/N/R (3)",
        "accuracy": 0.56,
        "kappa": None,
        "weighted_f1": 0.58,
    },
    {
        "work": "Joshi et al. 2021, AT+CL (raw ECG + real EEG teacher, MASS)",
        "classes": "W/N/R (3)",
        "accuracy": 0.66,
        "kappa": None,
        "weighted_f1": 0.66,
    },
    {
        "work": "Joshi et al. 2021, ECG baseline (raw ECG, MASS)",
        "classes": "W/L/D/R (4)",
        "accuracy": 0.44,
        "kappa": None,
        "weighted_f1": 0.45,
    },
    {
        "work": "Joshi et al. 2021, SD+CL (raw ECG + real EEG teacher, MASS)",
        "classes": "W/L/D/R (4)",
        "accuracy": 0.51,
        "kappa": None,
        "weighted_f1": 0.51,
    },
)


def _versions() -> dict[str, str]:
    return {
        "kdsleep": kdsleep_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(data.mean()),
        "sd": float(data.std(ddof=1)) if data.size > 1 else 0.0,
        "min": float(data.min()),
        "max": float(data.max()),
        "n": int(data.size),
    }


def aggregate(
    records: Mapping[str, Any],
    groupings: Sequence[str],
    results: Mapping[tuple[int, str], Mapping[str, Any]],
) -> dict[str, Any]:
    """Pooled metrics, per-subject metrics, spread and paired comparisons of every model and class set."""
    out: dict[str, Any] = {}
    for grouping in groupings:
        group = get_grouping(grouping)
        units = [r for (fold, g), r in sorted(results.items()) if g == grouping]
        models: dict[str, Any] = {}
        per_subject_all: dict[str, Any] = {}
        for model in MODELS:
            labels, preds, subjects = [], [], []
            for unit in units:
                for name in unit["test_records"]:
                    record = records[name]
                    labels.append(record.labels(grouping))
                    preds.append(np.asarray(unit["predictions"][model][name], dtype=np.int64))
                    subjects += [record.subject] * record.n_epochs
            target, prediction = np.concatenate(labels), np.concatenate(preds)
            pooled = compute_metrics(target, prediction, group.n_classes, group.class_names)
            per_subject = per_subject_metrics(
                target, prediction, subjects, group.n_classes, group.class_names
            )
            per_subject_all[model] = per_subject
            models[model] = {
                "data": MODELS[model],
                "pooled": pooled.to_dict(),
                "per_subject": {s: m.to_dict() for s, m in sorted(per_subject.items())},
                "spread": {
                    "weighted_f1": _spread(list(metric_by_subject(per_subject, "weighted_f1").values())),
                    "cohen_kappa": _spread(list(metric_by_subject(per_subject, "cohen_kappa").values())),
                },
            }
        comparisons = []
        pairs = [("hrv_gbm", "hr_student")] + [("hr_student", kd) for kd in ("at_cl", "sd_cl", "at_sd_cl")]
        for a, b in pairs:
            for metric in ("weighted_f1", "cohen_kappa"):
                try:
                    comparison = paired_comparison(
                        metric_by_subject(per_subject_all[a], metric),
                        metric_by_subject(per_subject_all[b], metric),
                        metric=metric,
                        variant_a=a,
                        variant_b=b,
                    )
                except ValueError as err:
                    comparisons.append({"variant_a": a, "variant_b": b, "metric": metric, "error": str(err)})
                    continue
                comparisons.append(comparison.to_dict())
        out[grouping] = {"class_names": list(group.class_names), "models": models, "comparisons": comparisons}
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _class_counts(records: Mapping[str, Any]) -> dict[str, int]:
    counts = {s.name: 0 for s in SleepStage}
    for record in records.values():
        for value, n in zip(*np.unique(record.stages, return_counts=True), strict=True):
            counts[SleepStage(int(value)).name] += int(n)
    return counts


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown text of a report built by :func:`write_study_report`."""
    meta, settings, prov = report["meta"], report["settings"], report["provenance"]
    command = " ".join(meta["command"])
    quick = settings["quick"]
    lines = [
        "# Sleep staging from heart rate on slpdb: subject-wise cross-validation",
        "",
    ]
    if quick:
        lines += [
            "> **QUICK MODE** (`--quick`): tiny models trained for a few epochs on three folds. This run checks "
            "that the whole chain works; its figures are NOT results. Run the command without `--quick` for the "
            "study.",
            "",
        ]
    lines += [
        "**What is real and what is not.** The sleep stages (expert R&K scoring, S3+S4 → N3) and the heart "
        "rate (from the expert-corrected `.ecg` beat annotations; slpdb's `.dat` signals are not used) are "
        "REAL. The rows `hrv_gbm` and `hr_student` are trained and tested on real data only. The EEG of the "
        "teacher is SYNTHETIC, generated from each record's real hypnogram "
        "(`kdsleep.data.synthetic.synthesize_from_slpdb`), so the teacher row and the three distillation rows "
        "(`at_cl`, `sd_cl`, `at_sd_cl`) are **SEMI-SYNTHETIC**: the students read real heart rate but what "
        "they are taught comes from an EEG that carries the stage far more cleanly than real EEG does. They "
        "test the machinery, not the benefit of real EEG-to-ECG distillation.",
        "",
        "## How these numbers were made",
        "",
        f"- Command: `{command}`",
        f"- Commit: `{prov['git_commit']}`; written {prov['written']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        f"- Machine: {meta['cpu_count']} CPU cores ({meta['processor']}; {meta['platform']}); "
        f"{meta['jobs']} worker process(es), one thread each",
        f"- Runtime: {meta['wall_seconds'] / 60:.1f} min wall for this invocation ({meta['units_run']} "
        f"fold × class-set units run, {meta['units_reused']} reused from the work folder); data preparation "
        f"{meta['prepare_seconds']:.0f} s; the units' own compute time sums to "
        f"{report['compute_seconds'] / 60:.1f} min"
        + (
            "; invocations on this work folder: "
            + ", ".join(
                f"{i['started']} {i['wall_seconds'] / 60:.1f} min ({i['units_run']} run, {i['jobs']} jobs)"
                for i in meta["invocations"]
            )
            if len(meta.get("invocations", [])) > 1
            else ""
        ),
        f"- Data: {report['data']['n_records']} records, {report['data']['n_subjects']} subjects "
        f"({meta['data_dir']}); stage epochs: "
        + ", ".join(f"{k} {v}" for k, v in report["data"]["stages"].items() if v),
        f"- Folds: {settings['n_folds']} by subject (records of one subject never split), balanced by scored "
        f"epochs, seed {settings['seed']}; in each fold {settings['n_val']} training subject(s) held out for "
        "validation (checkpoint = best validation weighted F1; attention-transfer stages: lowest validation AT "
        "loss). Every subject is tested exactly once; figures are pooled over the test folds.",
        f"- Deep models: U-Time (`kdsleep.models.UTime`), 1 input channel, model rate {settings['sfreq']:g} Hz "
        f"(heart rate held to it by `heart_rate_channel`; EEG band {settings['eeg_band'][0]:g}–"
        f"{settings['eeg_band'][1]:g} Hz), windows of {settings['window_epochs']} epochs "
        f"({settings['window_epochs'] * 0.5:g} min; training stride {settings['train_stride']}), pools "
        f"{settings['pools']}, filters {settings['filters']} ({report['model_parameters']['3']:,} parameters "
        f"for 3 classes); Adam lr {settings['lr']:g}, batch {settings['batch_size']}, "
        f"{settings['max_train_windows']} random training windows per epoch, {settings['epochs']} epochs per "
        f"classification stage, {settings['at_epochs']} per attention-transfer stage; weighted cross-entropy "
        "with N/(K n_k) weights; distillation α = 0.5, T = 1 (`kdsleep.distill.variants`); all through "
        "`kdsleep.distill.runner.Runner`, as `kdsleep train` / `kdsleep experiment`. Validation and test windows "
        "cover every epoch (one extra window aligned to the end of each night); an epoch in two windows takes "
        "the prediction of the window where it lies farther from the edges (`kdsleep.data.windows`).",
        f"- Classical baseline (`hrv_gbm`): {report['n_features']} HRV features per epoch "
        "(`kdsleep.data.hrv_features`: mean HR, SDNN, RMSSD, pNN50 in 1-, 5- and 10-min windows centred on "
        "the epoch; LF, HF, LF/HF and normalised HF of the heart rate in 5 min; HR change against epochs "
        "±1, ±2, ±4; all normalised per recording; plus the 5-min HR in bpm and the time of night), "
        "scikit-learn `HistGradientBoostingClassifier` (balanced class weights, learning rate 0.05, "
        f"{settings['gbm_max_iter']} iterations, 15 leaves), trained on the same training subjects (the "
        "validation subjects are not used).",
        "",
    ]
    for grouping, block in report["results"].items():
        names = block["class_names"]
        lines += [f"## {len(names)} classes ({grouping}: {', '.join(names)})", ""]
        header = (
            "| model | data | weighted F1 | accuracy | κ | macro F1 | "
            + " | ".join(f"F1 {n}" for n in names)
            + " | per-subject wF1 mean ± SD (min–max) | per-subject κ mean ± SD (min–max) |"
        )
        lines += [header, "|" + "---|" * (8 + len(names))]
        for model, entry in block["models"].items():
            pooled = entry["pooled"]
            w, k = entry["spread"]["weighted_f1"], entry["spread"]["cohen_kappa"]
            data = "real" if entry["data"] == "real" else "**semi-synthetic**"
            lines.append(
                f"| `{model}` | {data} | {_f(pooled['weighted_f1'])} | {_f(pooled['accuracy'])} | "
                f"{_f(pooled['cohen_kappa'])} | {_f(pooled['macro_f1'])} | "
                + " | ".join(_f(v, 2) for v in pooled["f1"])
                + f" | {_f(w['mean'])} ± {_f(w['sd'])} ({_f(w['min'], 2)}–{_f(w['max'], 2)}) | "
                f"{_f(k['mean'])} ± {_f(k['sd'])} ({_f(k['min'], 2)}–{_f(k['max'], 2)}) |"
            )
        n_epochs = block["models"]["hr_student"]["pooled"]["n_epochs"]
        lines += ["", f"{n_epochs} scored test epochs pooled over all folds.", ""]
        lines += [
            "Paired per-subject comparisons (B − A; 95 % bootstrap CI of the mean difference; two-sided "
            "Wilcoxon signed-rank test; `kdsleep.evaluation.compare.paired_comparison`):",
            "",
            "| A | B | metric | mean A | mean B | mean B − A [95 % CI] | p | B better / worse |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in block["comparisons"]:
            if "error" in c:
                lines.append(
                    f"| `{c['variant_a']}` | `{c['variant_b']}` | {c['metric']} | – | – | {c['error']} | – | – |"
                )
                continue
            lines.append(
                f"| `{c['variant_a']}` | `{c['variant_b']}` | {c['metric']} | {_f(c['mean_a'])} | "
                f"{_f(c['mean_b'])} | {c['mean_difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | "
                f"{_f(c['p_value'], 3)} | {c['n_better']} / {c['n_worse']} |"
            )
        lines.append("")
    lines += [
        "## Reading the distillation rows",
        "",
        "The teacher's EEG is synthesised from the same hypnograms that label the epochs, so the teacher is far "
        "better than a real EEG teacher on slpdb would be, and its soft outputs on the training subjects are "
        "close to a smoothed copy of their labels. A gain of `at_cl`, `sd_cl` or `at_sd_cl` over `hr_student` "
        "therefore shows that the distillation machinery works and that soft targets help a heart-rate student "
        "trained this briefly; it does not show that real EEG would teach the heart-rate student anything.",
        "",
    ]
    lines += ["## Models", ""] + [f"- `{m}`: {d}" for m, d in DESCRIPTIONS.items()] + [""]
    lines += [
        "## The literature, as context",
        "",
        "Other data sets (MESA, SHHS, MASS; hundreds to thousands of nights, mostly healthy or mixed cohorts), "
        "other protocols and, for Joshi et al., raw ECG rather than heart rate. This copy of slpdb holds 13 "
        "subjects recorded for the evaluation of obstructive sleep apnea and scored with R&K (Ichimaru & Moody "
        "1999); each fold trains on 7-8 of them. The numbers are not comparable one to one.",
        "",
        "| work | classes | accuracy | κ | weighted F1 |",
        "|---|---|---|---|---|",
    ]
    for row in LITERATURE:
        kappa = _f(row["kappa"], 2) + (f" ({row['note']})" if row.get("note") else "")
        lines.append(
            f"| {row['work']} | {row['classes']} | {_f(row['accuracy'], 2)} | {kappa} | "
            f"{_f(row['weighted_f1'], 2)} |"
        )
    lines += [
        "",
        "## Folds",
        "",
        "| fold | test subjects | validation subjects | training subjects |",
        "|---|---|---|---|",
    ]
    for fold in report["folds"]:
        lines.append(
            f"| {fold['index']} | {', '.join(fold['test'])} | {', '.join(fold['val'])} | {', '.join(fold['train'])} |"
        )
    lines += [
        "",
        "Per-subject figures, the training stages of every unit and all settings are in "
        f"`{Path(report['json']).name}` beside this file.",
    ]
    if report.get("figure"):
        lines += ["", f"![per-subject weighted F1]({Path(report['figure']).name})"]
    lines.append("")
    return "\n".join(lines)


def _figure(report: Mapping[str, Any], path: Path) -> Path | None:
    """Per-subject weighted F1 of every model and class set (points) with the mean (bar)."""
    blocks = report["results"]
    fig = Figure(figsize=(4.2 * len(blocks), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)
    for ax, (grouping, block) in zip(axes[0], blocks.items(), strict=True):
        for i, entry in enumerate(block["models"].values()):
            values = [m["weighted_f1"] for m in entry["per_subject"].values() if m["weighted_f1"] is not None]
            colour = "tab:blue" if entry["data"] == "real" else "tab:orange"
            ax.bar(i, np.mean(values) if values else 0.0, color=colour, alpha=0.35, width=0.7)
            jitter = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(i + jitter, values, s=10, color=colour, zorder=3)
        ax.set_xticks(range(len(block["models"])))
        ax.set_xticklabels(list(block["models"]), rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{len(block['class_names'])} classes ({grouping})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("per-subject weighted F1")
    fig.suptitle("slpdb, subject-wise CV (blue: real data; orange: semi-synthetic teacher / KD)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return write_bytes_atomic(path, buffer.getvalue())


def write_study_report(
    out: Path,
    *,
    records: Mapping[str, Any],
    folds: Sequence[Any],
    groupings: Sequence[str],
    results: Mapping[tuple[int, str], Mapping[str, Any]],
    settings: Any,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Aggregate the units and write ``out`` (Markdown), its JSON and its PNG atomically; return the content."""
    out = Path(out)
    json_path = out.with_suffix(".json")
    png_path = out.with_suffix(".png")
    parameters = {}
    for grouping in groupings:
        k = get_grouping(grouping).n_classes
        model = UTime(
            1,
            k,
            sfreq=settings.sfreq,
            n_epochs=settings.window_epochs,
            pools=list(settings.pools),
            filters=list(settings.filters),
        )
        parameters[str(k)] = int(sum(p.numel() for p in model.parameters()))
    if "3" not in parameters:
        parameters["3"] = next(iter(parameters.values()))
    any_features = next(iter(records))
    n_features = None
    work_dir = Path(meta["work_dir"])
    features_file = work_dir / "records" / f"{any_features}.features.npz"
    if features_file.exists():
        with np.load(features_file) as data:
            n_features = int(data["features"].shape[1])
    report: dict[str, Any] = {
        "format": "kdsleep-slpdb-study-report-1",
        "meta": dict(meta),
        "settings": settings.to_dict(),
        "provenance": {
            "git_commit": git_commit(),
            "versions": _versions(),
            "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "data": {
            "n_records": len(records),
            "n_subjects": len({r.subject for r in records.values()}),
            "stages": _class_counts(records),
        },
        "folds": [f.to_dict() for f in folds],
        "model_parameters": parameters,
        "n_features": n_features,
        "compute_seconds": float(sum(r.get("total_seconds", 0.0) for r in results.values())),
        "units": {
            f"fold{fold}/{grouping}": {
                "seconds": r["seconds"],
                "total_seconds": r["total_seconds"],
                "stages": r["stages"],
                "train_windows": r["train_windows"],
                "val_windows": r["val_windows"],
            }
            for (fold, grouping), r in sorted(results.items())
        },
        "results": aggregate(records, groupings, results),
        "json": str(json_path),
    }
    figure = _figure(report, png_path)
    report["figure"] = str(figure) if figure else None
    write_text_atomic(json_path, json.dumps(report, indent=1, default=str) + "\n")
    write_text_atomic(out, render_markdown(report))
    return report
