"""The slpdb study's report: pooled and per-subject figures, paired comparisons, provenance, literature."""

from __future__ import annotations

import io
import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict
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
from kdsleep.evaluation.compare import (
    format_p_value,
    mean_over_seeds,
    seeds_paired_comparison,
    with_holm,
)
from kdsleep.evaluation.metrics import (
    StagingMetrics,
    compute_metrics,
    metric_by_subject,
    per_subject_metrics,
)
from kdsleep.evaluation.report import VariantResult, build_seeds_report
from kdsleep.models import UTime
from kdsleep.study.rows import (
    CONTROL_ROWS,
    KD_ROWS,
    REFERENCE_ROW,
    ROW_DESCRIPTIONS,
    ROWS,
    STUDENT_PAIRS,
    recipe_settings,
)

__all__ = ["LITERATURE", "aggregate", "render_markdown", "rewrite_report", "write_study_report"]

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


def _seed_metrics(
    records: Mapping[str, Any], grouping: str, units: Sequence[Mapping[str, Any]], row: str
) -> tuple[StagingMetrics, dict[str, StagingMetrics]]:
    """Pooled and per-subject metrics of one row over the test folds of one seed."""
    group = get_grouping(grouping)
    labels, preds, subjects = [], [], []
    for unit in units:
        for name in unit["test_records"]:
            record = records[name]
            labels.append(record.labels(grouping))
            preds.append(np.asarray(unit["predictions"][row][name], dtype=np.int64))
            subjects += [record.subject] * record.n_epochs
    target, prediction = np.concatenate(labels), np.concatenate(preds)
    pooled = compute_metrics(target, prediction, group.n_classes, group.class_names)
    per_subject = per_subject_metrics(target, prediction, subjects, group.n_classes, group.class_names)
    return pooled, per_subject


def _family(
    per_subject: Mapping[tuple[str, str], Mapping[int, Mapping[str, StagingMetrics]]],
    pairs: Sequence[tuple[str, str, str]],
    metric: str,
    multiple: bool,
) -> list[dict[str, Any]]:
    """Paired per-subject comparisons (subject figures averaged over seeds), Holm-corrected together."""
    comparisons, errors = [], []
    for grouping, a, b in pairs:
        prefix = f"{grouping}: " if multiple else ""
        try:
            comparisons.append(
                seeds_paired_comparison(
                    per_subject[(grouping, a)],
                    per_subject[(grouping, b)],
                    metric,
                    variant_a=f"{prefix}{a}",
                    variant_b=f"{prefix}{b}",
                )
            )
        except ValueError as err:
            errors.append({"variant_a": f"{prefix}{a}", "variant_b": f"{prefix}{b}", "error": str(err)})
    return [c.to_dict() for c in with_holm(comparisons)] + errors


def aggregate(
    records: Mapping[str, Any],
    groupings: Sequence[str],
    results: Mapping[tuple[int, int, str], Mapping[str, Any]],
    seeds: Sequence[int],
    rows: Sequence[str],
    *,
    test_metric: str = "cohen_kappa",
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Figures of every row over the training seeds, and the two families of paired comparisons.

    For every class set, row and seed the test predictions of the folds are pooled (weighted F1, accuracy,
    κ, macro F1, per-class F1) and scored per subject. Rows are summarised as mean ± SD over seeds
    (:func:`kdsleep.evaluation.report.build_seeds_report`). The paired tests use each subject's
    ``test_metric`` averaged over seeds:

    * ``distillation``: every KD row and control against ``hr_student`` and every KD row against every
      control, Holm-corrected over the whole family, with the claim rule of
      :func:`~kdsleep.evaluation.report.build_seeds_report` (a KD row is credited only where it beats
      ``hr_student`` and both controls);
    * ``students``: the heart-rate models without distillation (:data:`kdsleep.study.rows.STUDENT_PAIRS`),
      Holm-corrected as a family of their own.
    """
    seeds = sorted(seeds)
    per_subject: dict[tuple[str, str], dict[int, dict[str, StagingMetrics]]] = {}
    pooled: dict[tuple[str, str], dict[int, StagingMetrics]] = {}
    results_by_seed: dict[int, list[VariantResult]] = {s: [] for s in seeds}
    for grouping in groupings:
        for seed in seeds:
            units = [r for (s, _fold, g), r in sorted(results.items()) if g == grouping and s == seed]
            if not units:
                raise ValueError(f"no finished unit of seed {seed} for {grouping}")
            for row in rows:
                metrics, subjects = _seed_metrics(records, grouping, units, row)
                pooled.setdefault((grouping, row), {})[seed] = metrics
                per_subject.setdefault((grouping, row), {})[seed] = subjects
                results_by_seed[seed].append(VariantResult(row, grouping, metrics, subjects))
    seeds_report = build_seeds_report(
        results_by_seed,
        reference=REFERENCE_ROW,
        kd_variants=KD_ROWS,
        controls=CONTROL_ROWS,
        test_metric=test_metric,
        alpha=alpha,
    )
    summary = {(r["grouping"], r["variant"]): r for r in seeds_report["summary"]}
    student_pairs = [(g, a, b) for g in groupings for a, b in STUDENT_PAIRS if a in rows and b in rows]
    students = _family(per_subject, student_pairs, test_metric, len(groupings) > 1)
    out: dict[str, Any] = {
        "seeds": seeds,
        "rows": list(rows),
        "test_metric": test_metric,
        "alpha": alpha,
        "groupings": {},
        "distillation": {
            "comparisons": seeds_report["comparisons"],
            "skipped": seeds_report["skipped_comparisons"],
            "claims": seeds_report["claims"],
            "claim_text": seeds_report["claim_text"],
        },
        "students": {"comparisons": students},
    }
    for grouping in groupings:
        group = get_grouping(grouping)
        models = {}
        for row in rows:
            subject_means = mean_over_seeds(
                [metric_by_subject(per_subject[(grouping, row)][s], test_metric) for s in seeds]
            )
            models[row] = {
                "data": ROWS[row],
                "summary": summary[(grouping, row)],
                "per_seed": {str(s): pooled[(grouping, row)][s].to_dict() for s in seeds},
                "per_subject_seed_mean": {test_metric: subject_means},
                "subject_spread": {test_metric: _spread(list(subject_means.values()))},
                "per_subject": {
                    str(s): {k: m.to_dict() for k, m in sorted(per_subject[(grouping, row)][s].items())}
                    for s in seeds
                },
            }
        out["groupings"][grouping] = {"class_names": list(group.class_names), "models": models}
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _class_counts(records: Mapping[str, Any]) -> dict[str, int]:
    counts = {s.name: 0 for s in SleepStage}
    for record in records.values():
        for value, n in zip(*np.unique(record.stages, return_counts=True), strict=True):
            counts[SleepStage(int(value)).name] += int(n)
    return counts


_METRIC_NAMES = {"cohen_kappa": "Cohen's κ", "macro_f1": "macro F1", "weighted_f1": "weighted F1"}


def _ms(cell: Mapping[str, Any] | None) -> str:
    """``mean ± SD`` of a summary cell."""
    if not cell or cell.get("mean") is None:
        return "–"
    return f"{cell['mean']:.3f} ± {cell.get('sd') or 0.0:.3f}"


def _comparison_lines(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| A | B | subjects | mean A | mean B | mean B − A [95 % CI] | Wilcoxon p | Holm p | B better / worse |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        if "error" in c:
            lines.append(
                f"| `{c['variant_a']}` | `{c['variant_b']}` | – | – | – | {c['error']} | – | – | – |"
            )
            continue
        lines.append(
            f"| `{c['variant_a']}` | `{c['variant_b']}` | {c['n_subjects']} | {_f(c['mean_a'])} | "
            f"{_f(c['mean_b'])} | {c['mean_difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | "
            f"{format_p_value(c['p_value'])} | {format_p_value(c.get('p_adjusted'))} | "
            f"{c['n_better']} / {c['n_worse']} |"
        )
    return lines


def _label_smoothing_choices(report: Mapping[str, Any]) -> list[str]:
    """The epsilon the validation subjects chose for ``ecg_ls`` in every unit."""
    chosen: dict[str, list[str]] = {}
    if "ecg_ls" not in report["results"]["rows"]:
        return []
    for key, unit in report["units"].items():
        info = unit["stages"].get("ecg_ls", {}).get("label_smoothing")
        if info:
            grouping = key.rsplit("/", 1)[-1]
            chosen.setdefault(grouping, []).append(f"{info['chosen']:g}")
    return [
        f"- `ecg_ls` ({g}): ε chosen on validation weighted F1 per seed × fold: {', '.join(v)}"
        for g, v in chosen.items()
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown text of a report built by :func:`write_study_report`."""
    meta, settings, prov = report["meta"], report["settings"], report["provenance"]
    results = report["results"]
    seeds, rows = results["seeds"], results["rows"]
    metric = results["test_metric"]
    command = " ".join(meta["command"])
    quick = settings["quick"]
    lines = [
        "# Sleep staging from heart rate on slpdb: subject-wise cross-validation over training seeds",
        "",
    ]
    if quick:
        lines += [
            "> **QUICK MODE** (`--quick`): tiny models trained for a few epochs on three folds. This run checks "
            "that the whole chain works; its figures are NOT results. Run the command without `--quick` for the "
            "study.",
            "",
        ]
    semi = [r for r in rows if ROWS[r] != "real"]
    real = [r for r in rows if ROWS[r] == "real"]
    lines += [
        "**What is real and what is not.** The sleep stages (expert R&K scoring, S3+S4 → N3) and the heart "
        "rate (from the expert-corrected `.ecg` beat annotations; slpdb's `.dat` signals are not used) are "
        f"REAL. The rows {', '.join(f'`{r}`' for r in real)} are trained and tested on real data only."
        + (
            " The EEG of the teacher is SYNTHETIC, generated from each record's real hypnogram "
            "(`kdsleep.data.synthetic.synthesize_from_slpdb`), so the rows "
            f"{', '.join(f'`{r}`' for r in semi)} are **SEMI-SYNTHETIC**: the students read real heart rate "
            "but what they are taught comes from an EEG that carries the stage far more cleanly than real EEG "
            "does. They test the machinery, not the benefit of real EEG-to-ECG distillation."
            if semi
            else ""
        ),
        "",
        "## How these numbers were made",
        "",
        f"- Command: `{command}`",
        f"- Commit: `{prov['git_commit']}`; written {prov['written']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        f"- Machine: {meta['cpu_count']} CPU cores ({meta['processor']}; {meta['platform']}); "
        f"{meta['jobs']} worker process{'es' if meta['jobs'] > 1 else ''}, one thread each",
        f"- Runtime: {meta['wall_seconds'] / 60:.1f} min wall for this invocation ({meta['units_run']} "
        f"seed × fold × class-set units run, {meta['units_reused']} reused from the work folder); data "
        f"preparation {meta['prepare_seconds']:.0f} s; the units read here took {report['cpu_seconds'] / 60:.1f} "
        f"CPU-min ({report['compute_seconds'] / 60:.1f} min wall) in the invocations that trained them, "
        "counting every row a unit holds, also rows not in this report"
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
        f"- Training seeds: {', '.join(map(str, seeds))} ({len(seeds)}). A seed sets the weights, the batch "
        "order, the stager's crops and augmentation and the trees' `random_state`; the folds, the data and the "
        f"synthetic EEG are made once with seed {settings['seed']}, so every row and seed sees the same folds.",
        f"- Folds: {settings['n_folds']} by subject (records of one subject never split), balanced by scored "
        f"epochs; in each fold {settings['n_val']} training subject(s) held out for validation (U-Time "
        "checkpoint = best validation weighted F1, attention-transfer stages: lowest validation AT loss; "
        "`hr_stager`: best validation κ, early stopping). Every subject is tested exactly once per seed; "
        "figures are pooled over the test folds.",
        f"- U-Time rows: `kdsleep.models.UTime`, 1 input channel, model rate {settings['sfreq']:g} Hz "
        f"(heart rate held to it by `heart_rate_channel`; EEG band {settings['eeg_band'][0]:g}–"
        f"{settings['eeg_band'][1]:g} Hz), windows of {settings['window_epochs']} epochs (training stride "
        f"{settings['train_stride']}), pools {settings['pools']}, filters {settings['filters']} "
        f"({report['model_parameters']['3']:,} parameters for 3 classes); Adam lr {settings['lr']:g}, batch "
        f"{settings['batch_size']}, {settings['max_train_windows']} random training windows per epoch, "
        f"{settings['epochs']} epochs per classification stage, {settings['at_epochs']} per "
        "attention-transfer stage; weighted cross-entropy; distillation α = 0.5, T = 1; all through "
        "`kdsleep.distill.runner.Runner` (`ecg_ls` through `kdsleep.distill.experiment.train_label_smoothing`).",
        "- `hr_stager`: `kdsleep.study.hr_recipe.train_stager` with "
        + ", ".join(f"{k} {v}" for k, v in report["recipe_settings"].items())
        + " (the recipe's defaults).",
        f"- `hrv_gbm`: {report['n_features']} HRV features per epoch (`kdsleep.data.hrv_features`), "
        "scikit-learn `HistGradientBoostingClassifier` (balanced class weights, learning rate 0.05, "
        f"{settings['gbm_max_iter']} iterations, 15 leaves) on the same training subjects.",
        *_label_smoothing_choices(report),
        "",
    ]
    for grouping, block in results["groupings"].items():
        names = block["class_names"]
        lines += [
            f"## {len(names)} classes ({grouping}: {', '.join(names)}), {len(seeds)} seed{'s' if len(seeds) > 1 else ''}",
            "",
            "Pooled over every scored test epoch of the folds, then mean ± SD over seeds. The last column is "
            f"each subject's {_METRIC_NAMES.get(metric, metric)} averaged over seeds, then mean ± SD over "
            "subjects."
            + (
                " `hrv_gbm` draws nothing at random here (no subsampling, no early stopping), so its SD over "
                "seeds is 0."
                if "hrv_gbm" in block["models"] and len(seeds) > 1
                else ""
            ),
            "",
            "| row | data | κ | macro F1 | weighted F1 | accuracy | per-subject κ |",
            "|---|---|---|---|---|---|---|",
        ]
        for row, entry in block["models"].items():
            summary = entry["summary"]
            data = "real" if entry["data"] == "real" else "**semi-synthetic**"
            spread = entry["subject_spread"][metric]
            lines.append(
                f"| `{row}` | {data} | {_ms(summary['cohen_kappa'])} | {_ms(summary['macro_f1'])} | "
                f"{_ms(summary['weighted_f1'])} | {_ms(summary['accuracy'])} | "
                f"{_f(spread['mean'])} ± {_f(spread['sd'])} |"
            )
        lines += [
            "",
            "Per-class F1 (mean ± SD over seeds; the last column counts the seeds where a class got F1 = 0):",
            "",
            "| row | " + " | ".join(f"F1 {n}" for n in names) + " | F1 = 0 (seeds) |",
            "|---|" + "---|" * (len(names) + 1),
        ]
        for row, entry in block["models"].items():
            summary = entry["summary"]
            collapsed = ", ".join(f"{n} ({k})" for n, k in summary["collapsed_classes"].items()) or "none"
            lines.append(f"| `{row}` | " + " | ".join(_ms(c) for c in summary["f1"]) + f" | {collapsed} |")
        lines.append("")
    distillation = results["distillation"]
    lines += [
        "## Paired per-subject comparisons",
        "",
        f"Each test subject's {_METRIC_NAMES.get(metric, metric)} averaged over the seeds; differences B − A "
        "over the same subjects, a "
        "95 % percentile-bootstrap interval of the mean difference, the two-sided Wilcoxon signed-rank test, "
        "and Holm's correction over the family the table is (`kdsleep.evaluation.compare`).",
        "",
        "### Distillation family: KD rows and controls against `hr_student`, KD rows against each control",
        "",
    ]
    if distillation["comparisons"]:
        lines += _comparison_lines(distillation["comparisons"])
    else:
        lines.append("No KD row or control was run: no comparison in this family.")
    lines += [
        "",
        "### Heart-rate models without distillation (a family of its own)",
        "",
    ]
    if results["students"]["comparisons"]:
        lines += _comparison_lines(results["students"]["comparisons"])
    else:
        lines.append("Fewer than two of `hrv_gbm`, `hr_student`, `hr_stager` were run.")
    lines += [
        "",
        "## Distillation claim",
        "",
        f"A KD row is credited only where it beats `hr_student` and both controls (`ecg_ls`, `ecg_self`), each "
        f"at Holm-corrected p < {results['alpha']:g} with a positive mean difference.",
        "",
    ]
    lines += [f"- {line}" for line in distillation["claim_text"]]
    if semi:
        lines += [
            "",
            "Even a claim here would be about a semi-synthetic teacher: its EEG is synthesised from the "
            "hypnograms that label the epochs, so its soft outputs are close to a smoothed copy of the labels.",
        ]
    lines += ["", "## Rows", ""] + [f"- `{m}`: {ROW_DESCRIPTIONS[m]}" for m in rows] + [""]
    lines += [
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
        "Per-seed and per-subject figures, the training stages of every unit and all settings are in "
        f"`{Path(report['json']).name}` beside this file.",
    ]
    if report.get("figure"):
        lines += ["", f"![per-subject kappa]({Path(report['figure']).name})"]
    lines.append("")
    return "\n".join(lines)


def _figure(report: Mapping[str, Any], path: Path) -> Path | None:
    """Each subject's κ averaged over seeds, per row and class set (points), with the mean (bar)."""
    results = report["results"]
    metric = results["test_metric"]
    blocks = results["groupings"]
    fig = Figure(figsize=(max(6.4, 4.6 * len(blocks)), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)
    for ax, (grouping, block) in zip(axes[0], blocks.items(), strict=True):
        for i, entry in enumerate(block["models"].values()):
            values = [
                v
                for v in entry["per_subject_seed_mean"][metric].values()
                if v is not None and not math.isnan(v)
            ]
            colour = "tab:blue" if entry["data"] == "real" else "tab:orange"
            ax.bar(i, np.mean(values) if values else 0.0, color=colour, alpha=0.35, width=0.7)
            jitter = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(i + jitter, values, s=10, color=colour, zorder=3)
        ax.set_xticks(range(len(block["models"])))
        ax.set_xticklabels(list(block["models"]), rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{len(block['class_names'])} classes ({grouping})", fontsize=9)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
    n_seeds = len(results["seeds"])
    axes[0][0].set_ylabel(
        f"per-subject {_METRIC_NAMES.get(metric, metric)}, mean over {n_seeds} seed{'s' if n_seeds > 1 else ''}",
        fontsize=8,
    )
    fig.suptitle("slpdb, subject-wise CV (blue: real data; orange: semi-synthetic)", fontsize=9)
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
    results: Mapping[tuple[int, int, str], Mapping[str, Any]],
    settings: Any,
    meta: Mapping[str, Any],
    seeds: Sequence[int],
    rows: Sequence[str],
) -> dict[str, Any]:
    """Aggregate the units and write ``out`` (Markdown), its JSON and its PNG atomically; return the content.

    ``results`` maps (training seed, fold, grouping) to a unit's result
    (:func:`kdsleep.study.slpdb.run_unit`).
    """

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
        "format": "kdsleep-slpdb-study-report-2",
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
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in results.values())),
        "recipe_settings": {
            k: v for k, v in asdict(recipe_settings(settings.quick, settings.seed)).items() if k != "seed"
        },
        "units": {
            f"seed-{seed}/fold{fold}/{grouping}": {
                "seconds": r["seconds"],
                "total_seconds": r["total_seconds"],
                "stages": r["stages"],
                "train_windows": r["train_windows"],
                "val_windows": r["val_windows"],
            }
            for (seed, fold, grouping), r in sorted(results.items())
        },
        "results": aggregate(records, groupings, results, seeds, rows),
        "json": str(json_path),
    }
    figure = _figure(report, png_path)
    report["figure"] = str(figure) if figure else None
    write_text_atomic(json_path, json.dumps(report, indent=1, default=str) + "\n")
    write_text_atomic(out, render_markdown(report))
    return report


def rewrite_report(source: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the Markdown, JSON and PNG of a finished report again under ``out`` (e.g. another name in
    ``docs/results``), from its JSON alone: nothing is recomputed, and the figures stay those of the run."""
    report = json.loads(Path(source).read_text(encoding="utf-8"))
    if report.get("format") != "kdsleep-slpdb-study-report-2":
        raise ValueError(
            f"{source}: not a report of the slpdb study over seeds (format {report.get('format')!r})"
        )
    out = Path(out)
    report["json"] = str(out.with_suffix(".json"))
    figure = _figure(report, out.with_suffix(".png"))
    report["figure"] = str(figure) if figure else None
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=1, default=str) + "\n")
    write_text_atomic(out, render_markdown(report))
    return report
