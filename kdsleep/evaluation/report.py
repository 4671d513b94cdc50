"""Table I / Table II style reports of a set of variants, as Markdown and JSON.

Table I of Joshi et al. lists weighted F1 and accuracy per class set and variant, Table II the per-class F1.
The report adds macro F1, Cohen's kappa and the number of scored test epochs, can show the paper's figures
beside ours, and lists paired per-subject comparisons when given.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep._io import write_text_atomic
from kdsleep.evaluation.compare import (
    PairedComparison,
    format_p_value,
    mean_sd,
    seeds_paired_comparison,
    with_holm,
)
from kdsleep.evaluation.metrics import StagingMetrics

__all__ = [
    "PAPER_TABLE_I",
    "PAPER_TABLE_II",
    "VARIANT_LABELS",
    "VariantResult",
    "build_report",
    "render_markdown",
    "write_report",
]

#: Display names of the variants, in the order of the paper's tables.
VARIANT_LABELS: dict[str, str] = {
    "eeg_baseline": "EEG baseline",
    "ecg_baseline": "ECG baseline",
    "sd_cl": "SD+CL",
    "at": "AT",
    "at_cl": "AT+CL",
    "at_sd_cl": "AT+SD+CL",
    "ecg_ls": "ECG + label smoothing",
    "ecg_self": "ECG self-distilled",
}

#: Table I of Joshi et al. (MASS, held-out test set): (weighted F1, accuracy) per (grouping, variant).
PAPER_TABLE_I: dict[tuple[str, str], tuple[float, float]] = {
    ("w-l-d-r", "eeg_baseline"): (0.85, 0.85),
    ("w-l-d-r", "ecg_baseline"): (0.45, 0.44),
    ("w-l-d-r", "sd_cl"): (0.51, 0.51),
    ("w-l-d-r", "at_cl"): (0.50, 0.50),
    ("w-l-d-r", "at_sd_cl"): (0.50, 0.49),
    ("w-n-r", "eeg_baseline"): (0.90, 0.90),
    ("w-n-r", "ecg_baseline"): (0.58, 0.56),
    ("w-n-r", "sd_cl"): (0.61, 0.60),
    ("w-n-r", "at_cl"): (0.66, 0.66),
    ("w-n-r", "at_sd_cl"): (0.64, 0.63),
}

#: Table II of Joshi et al.: per-class F1 in class order (W, L, D, R or W, N, R) per (grouping, variant).
PAPER_TABLE_II: dict[tuple[str, str], tuple[float, ...]] = {
    ("w-l-d-r", "eeg_baseline"): (0.89, 0.86, 0.81, 0.82),
    ("w-l-d-r", "ecg_baseline"): (0.57, 0.47, 0.30, 0.40),
    ("w-l-d-r", "sd_cl"): (0.54, 0.61, 0.31, 0.35),
    ("w-l-d-r", "at_cl"): (0.54, 0.57, 0.34, 0.40),
    ("w-l-d-r", "at_sd_cl"): (0.57, 0.56, 0.29, 0.41),
    ("w-n-r", "eeg_baseline"): (0.89, 0.93, 0.80),
    ("w-n-r", "ecg_baseline"): (0.51, 0.65, 0.40),
    ("w-n-r", "sd_cl"): (0.53, 0.70, 0.34),
    ("w-n-r", "at_cl"): (0.52, 0.77, 0.37),
    ("w-n-r", "at_sd_cl"): (0.52, 0.73, 0.39),
}

_PAPER_CLASS_NAMES = {"w-l-d-r": ("W", "L", "D", "R"), "w-n-r": ("W", "N", "R")}
_GROUPING_ORDER = ("aasm-5", "w-l-d-r", "w-n-r")


@dataclass(frozen=True)
class VariantResult:
    """Test-set results of one variant on one class set.

    Attributes
    ----------
    variant : str
        Variant name (``eeg_baseline``, ``ecg_baseline``, ``sd_cl``, ``at_cl``, ``at_sd_cl``, ``at``, or any).
    grouping : str
        Class set, e.g. ``"w-l-d-r"`` (4 classes), ``"w-n-r"`` (3) or ``"aasm-5"`` (5).
    metrics : StagingMetrics
        Metrics pooled over all test epochs.
    per_subject : mapping of str to StagingMetrics
        Optional per-subject metrics (written to the JSON report).
    """

    variant: str
    grouping: str
    metrics: StagingMetrics
    per_subject: Mapping[str, StagingMetrics] = field(default_factory=dict)


def _normalise_grouping(grouping: str) -> str:
    return str(grouping).strip().lower().replace("_", "-")


def _variant_order(variant: str) -> tuple[int, str]:
    order = list(VARIANT_LABELS)
    return (order.index(variant), "") if variant in order else (len(order), variant)


def _grouping_order(grouping: str) -> tuple[int, str]:
    return (
        (_GROUPING_ORDER.index(grouping), "")
        if grouping in _GROUPING_ORDER
        else (len(_GROUPING_ORDER), grouping)
    )


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def build_report(
    results: Iterable[VariantResult],
    *,
    comparisons: Sequence[PairedComparison] = (),
    show_reference: bool = True,
    title: str = "Sleep staging results",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-serialisable dictionary.

    Parameters
    ----------
    results : iterable of VariantResult
        One entry per (grouping, variant); a pair may appear only once.
    comparisons : sequence of PairedComparison
        Paired per-subject comparisons to list.
    show_reference : bool
        Put the paper's figures (Tables I and II of Joshi et al.) beside ours where they exist.
    title : str
        Heading of the Markdown report.
    metadata : mapping or None
        Free-form context (dataset, seed, commit, ...) stored in the report.

    Returns
    -------
    dict
        With keys ``title``, ``metadata``, ``table_i`` (rows), ``table_ii`` (rows), ``comparisons`` and
        ``show_reference``.
    """
    entries = sorted(
        ((_normalise_grouping(r.grouping), r) for r in results),
        key=lambda item: (_grouping_order(item[0]), _variant_order(item[1].variant)),
    )
    if not entries:
        raise ValueError("a report needs at least one variant result")
    seen: set[tuple[str, str]] = set()
    table_i, table_ii, per_subject = [], [], []
    for grouping, result in entries:
        key = (grouping, result.variant)
        if key in seen:
            raise ValueError(f"variant {result.variant!r} appears twice for class set {grouping!r}")
        seen.add(key)
        metrics = result.metrics
        subject_f1 = [m.weighted_f1 for m in result.per_subject.values()]
        reference_i = PAPER_TABLE_I.get(key)
        reference_ii = PAPER_TABLE_II.get(key)
        if reference_ii is not None and _PAPER_CLASS_NAMES[grouping] != metrics.class_names:
            # Class names in another order would put the paper's figures beside the wrong classes.
            reference_ii = None
        table_i.append(
            {
                "grouping": grouping,
                "variant": result.variant,
                "label": VARIANT_LABELS.get(result.variant, result.variant),
                "weighted_f1": _clean(metrics.weighted_f1),
                "accuracy": _clean(metrics.accuracy),
                "macro_f1": _clean(metrics.macro_f1),
                "cohen_kappa": _clean(metrics.cohen_kappa),
                "n_epochs": metrics.n_epochs,
                "n_subjects": len(result.per_subject) or None,
                "subject_weighted_f1_mean": float(np.mean(subject_f1)) if subject_f1 else None,
                "subject_weighted_f1_sd": float(np.std(subject_f1, ddof=1)) if len(subject_f1) > 1 else None,
                "paper_weighted_f1": reference_i[0] if reference_i else None,
                "paper_accuracy": reference_i[1] if reference_i else None,
            }
        )
        table_ii.append(
            {
                "grouping": grouping,
                "variant": result.variant,
                "label": VARIANT_LABELS.get(result.variant, result.variant),
                "class_names": list(metrics.class_names),
                "f1": [_clean(v) for v in metrics.f1],
                "paper_f1": list(reference_ii) if reference_ii else None,
                "metrics": metrics.to_dict(),
            }
        )
        if result.per_subject:
            per_subject.append(
                {
                    "grouping": grouping,
                    "variant": result.variant,
                    "subjects": {s: m.to_dict() for s, m in sorted(result.per_subject.items())},
                }
            )
    return {
        "title": title,
        "metadata": dict(metadata or {}),
        "show_reference": show_reference,
        "table_i": table_i,
        "table_ii": table_ii,
        "comparisons": [c.to_dict() for c in comparisons],
        "per_subject": per_subject,
    }


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """Markdown text of a report built by :func:`build_report`."""
    show = report.get("show_reference", True)
    lines = [f"# {report['title']}", ""]
    metadata = report.get("metadata") or {}
    if metadata:
        lines += [f"- **{key}**: {value}" for key, value in metadata.items()] + [""]

    lines += ["## Table I — overall (held-out test set)", ""]
    header = "| classes | experiment | weighted F1 | accuracy | macro F1 | Cohen's κ | epochs |"
    rule = "|---|---|---|---|---|---|---|"
    with_subjects = any(row.get("subject_weighted_f1_mean") is not None for row in report["table_i"])
    if with_subjects:
        header += " subjects | per-subject weighted F1 (mean ± SD) |"
        rule += "---|---|"
    if show:
        header += " paper weighted F1 | paper accuracy |"
        rule += "---|---|"
    lines += [header, rule]
    for row in report["table_i"]:
        line = (
            f"| {row['grouping'].upper()} | {row['label']} | {_number(row['weighted_f1'])} | "
            f"{_number(row['accuracy'])} | {_number(row['macro_f1'])} | {_number(row['cohen_kappa'])} | "
            f"{row['n_epochs']} |"
        )
        if with_subjects:
            mean, sd = row.get("subject_weighted_f1_mean"), row.get("subject_weighted_f1_sd")
            spread = "–" if mean is None else f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}")
            line += f" {row.get('n_subjects') or '–'} | {spread} |"
        if show:
            line += f" {_number(row['paper_weighted_f1'], 2)} | {_number(row['paper_accuracy'], 2)} |"
        lines.append(line)
    lines.append("")

    lines += ["## Table II — per-class F1", ""]
    if show:
        lines += [
            "Figures in parentheses are those of Joshi et al. (Table II), where the paper reports them.",
            "",
        ]
    by_grouping: dict[str, list[Mapping[str, Any]]] = {}
    for row in report["table_ii"]:
        by_grouping.setdefault(row["grouping"], []).append(row)
    for grouping, rows in by_grouping.items():
        class_names = rows[0]["class_names"]
        lines += [f"### {grouping.upper()}", ""]
        lines.append("| experiment | " + " | ".join(f"F1 {name}" for name in class_names) + " |")
        lines.append("|---|" + "---|" * len(class_names))
        for row in rows:
            cells = []
            for i, value in enumerate(row["f1"]):
                cell = _number(value)
                if show and row["paper_f1"] is not None:
                    cell += f" ({row['paper_f1'][i]:.2f})"
                cells.append(cell)
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        lines.append("")

    comparisons = report.get("comparisons") or []
    if comparisons:
        lines += ["## Paired per-subject comparisons", ""]
        lines += [
            "Differences are B − A over the same test subjects; the interval is a percentile bootstrap of the "
            "mean difference, p is the two-sided Wilcoxon signed-rank test and Holm p the same p after Holm's "
            "correction over every comparison in this table (read a difference as significant only by Holm p).",
            "",
            "| metric | A | B | subjects | mean A | mean B | mean B − A | CI | Wilcoxon p | Holm p | B better / worse |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            confidence = round(100 * c["confidence"])
            lines.append(
                f"| {c['metric']} | {VARIANT_LABELS.get(c['variant_a'], c['variant_a'])} | "
                f"{VARIANT_LABELS.get(c['variant_b'], c['variant_b'])} | {c['n_subjects']} | "
                f"{_number(c['mean_a'])} | {_number(c['mean_b'])} | {c['mean_difference']:+.3f} | "
                f"{confidence}%: [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {format_p_value(c['p_value'])} | "
                f"{format_p_value(c.get('p_adjusted'))} | {c['n_better']} / {c['n_worse']} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_report(
    results: Iterable[VariantResult],
    out_dir: str | os.PathLike[str],
    *,
    name: str = "report",
    comparisons: Sequence[PairedComparison] = (),
    show_reference: bool = True,
    title: str = "Sleep staging results",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` into ``out_dir`` (atomically).

    Parameters are those of :func:`build_report`. Returns the paths of the Markdown and JSON files.
    """
    report = build_report(
        results, comparisons=comparisons, show_reference=show_reference, title=title, metadata=metadata
    )
    out = Path(out_dir)
    markdown_path = write_text_atomic(out / f"{name}.md", render_markdown(report))
    json_path = write_text_atomic(out / f"{name}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    return markdown_path, json_path


# ----------------------------------------------------------------------------------------------------
# Several training seeds: mean ± SD, paired tests on each subject's mean over seeds, Holm, the KD claim

#: Default distilled students and controls of :func:`build_seeds_report` (see :mod:`kdsleep.distill.variants`).
DEFAULT_KD_VARIANTS: tuple[str, ...] = ("sd_cl", "at_cl", "at_sd_cl")
DEFAULT_CONTROLS: tuple[str, ...] = ("ecg_ls", "ecg_self")


def _seed_summary(per_seed: Sequence[StagingMetrics]) -> dict[str, Any]:
    def spread(values: Sequence[float]) -> dict[str, float | None]:
        finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not finite:
            return {"mean": None, "sd": None}
        mean, sd = mean_sd(finite)
        return {"mean": mean, "sd": sd}

    class_names = list(per_seed[0].class_names)
    f1 = np.array([[float(v) for v in m.f1] for m in per_seed], dtype=np.float64)
    collapsed = {
        name: int(np.sum(f1[:, k] == 0.0)) for k, name in enumerate(class_names) if np.any(f1[:, k] == 0.0)
    }
    return {
        "cohen_kappa": spread([m.cohen_kappa for m in per_seed]),
        "macro_f1": spread([m.macro_f1 for m in per_seed]),
        "weighted_f1": spread([m.weighted_f1 for m in per_seed]),
        "accuracy": spread([m.accuracy for m in per_seed]),
        "class_names": class_names,
        "f1": [spread(list(f1[:, k])) for k in range(len(class_names))],
        "collapsed_classes": collapsed,
        "n_epochs": [int(m.n_epochs) for m in per_seed],
    }


def build_seeds_report(
    results_by_seed: Mapping[int, Sequence[VariantResult]],
    *,
    reference: str = "ecg_baseline",
    kd_variants: Sequence[str] = DEFAULT_KD_VARIANTS,
    controls: Sequence[str] = DEFAULT_CONTROLS,
    test_metric: str = "cohen_kappa",
    alpha: float = 0.05,
    title: str = "Sleep staging results over training seeds",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of variants trained with several seeds, as a JSON-serialisable dictionary.

    Every variant's pooled test figures are summarised as mean ± SD over seeds (Cohen's kappa and macro F1
    first, then weighted F1, accuracy and per-class F1, with the classes whose F1 was 0 in some seed). The
    paired tests use each test subject's ``test_metric`` averaged over seeds
    (:func:`~kdsleep.evaluation.compare.mean_over_seeds`): every KD variant and control against
    ``reference``, and every KD variant against every control, two-sided Wilcoxon
    (:func:`~kdsleep.evaluation.compare.paired_comparison`), Holm-corrected over the whole family
    (:func:`~kdsleep.evaluation.compare.with_holm`).

    The KD claim: a KD variant is said to help only where it is better than ``reference`` and than every
    control, each with Holm-corrected p < ``alpha``; the claim needs both controls.

    Parameters
    ----------
    results_by_seed : mapping of int to sequence of VariantResult
        The results of each training seed (each with per-subject metrics; the same test subjects in all).
    reference, kd_variants, controls : str, sequence of str
        The ECG baseline, the distilled students and the controls.
    test_metric : str
        The per-subject figure of the paired tests (a :class:`StagingMetrics` attribute).
    alpha : float
        Level of the Holm-corrected tests.
    title, metadata
        As in :func:`build_report`.
    """
    if not results_by_seed:
        raise ValueError("a seeds report needs the results of at least one seed")
    seeds = sorted(results_by_seed)
    table: dict[tuple[str, str], dict[int, VariantResult]] = {}
    for seed in seeds:
        for result in results_by_seed[seed]:
            key = (_normalise_grouping(result.grouping), result.variant)
            if seed in table.setdefault(key, {}):
                raise ValueError(f"seed {seed}: variant {result.variant!r} appears twice for {key[0]!r}")
            table[key][seed] = result
    keys = sorted(table, key=lambda k: (_grouping_order(k[0]), _variant_order(k[1])))
    rows = []
    for grouping, variant in keys:
        by_seed = table[(grouping, variant)]
        rows.append(
            {
                "grouping": grouping,
                "variant": variant,
                "label": VARIANT_LABELS.get(variant, variant),
                "seeds": sorted(by_seed),
                **_seed_summary([by_seed[s].metrics for s in sorted(by_seed)]),
            }
        )

    groupings = list(dict.fromkeys(k[0] for k in keys))
    pairs: list[tuple[str, str, str]] = []
    for grouping in groupings:
        present = {v for g, v in keys if g == grouping}
        kd = [v for v in kd_variants if v in present]
        ctl = [v for v in controls if v in present]
        if reference in present:
            pairs += [(grouping, reference, v) for v in kd + ctl]
        pairs += [(grouping, c, v) for v in kd for c in ctl]
    comparisons = []
    compared: list[tuple[str, str, str]] = []
    skipped = []
    for grouping, a, b in pairs:
        prefix = f"{grouping}: " if len(groupings) > 1 else ""
        try:
            comparisons.append(
                seeds_paired_comparison(
                    {s: r.per_subject for s, r in table[(grouping, a)].items()},
                    {s: r.per_subject for s, r in table[(grouping, b)].items()},
                    test_metric,
                    variant_a=f"{prefix}{a}",
                    variant_b=f"{prefix}{b}",
                )
            )
            compared.append((grouping, a, b))
        except ValueError as err:
            skipped.append({"grouping": grouping, "a": a, "b": b, "reason": str(err)})
    comparisons = with_holm(comparisons)
    by_pair = dict(zip(compared, comparisons, strict=True))

    claims = []
    for grouping in groupings:
        present = {v for g, v in keys if g == grouping}
        missing = [c for c in controls if c not in present]
        for variant in (v for v in kd_variants if v in present):
            beats = {}
            for other in (reference, *controls):
                c = by_pair.get((grouping, other, variant))
                beats[other] = bool(
                    c is not None
                    and c.p_adjusted is not None
                    and c.p_adjusted < alpha
                    and c.mean_difference > 0
                )
            claim = not missing and all(beats.values())
            claims.append(
                {
                    "grouping": grouping,
                    "variant": variant,
                    "beats": beats,
                    "claim": claim,
                    "missing_controls": missing,
                }
            )
    return {
        "title": title,
        "metadata": dict(metadata or {}),
        "seeds": seeds,
        "test_metric": test_metric,
        "alpha": alpha,
        "reference": reference,
        "kd_variants": list(kd_variants),
        "controls": list(controls),
        "summary": rows,
        "comparisons": [c.to_dict() for c in comparisons],
        "skipped_comparisons": skipped,
        "claims": claims,
        "claim_text": _claim_text(claims, reference, controls, alpha, test_metric),
    }


def _claim_text(
    claims: Sequence[Mapping[str, Any]], reference: str, controls: Sequence[str], alpha: float, metric: str
) -> list[str]:
    if not claims:
        return ["No distilled student was run: this report makes no distillation claim."]
    names = " and ".join(VARIANT_LABELS.get(c, c) for c in controls)
    lines = []
    for item in claims:
        label = VARIANT_LABELS.get(item["variant"], item["variant"])
        where = item["grouping"].upper()
        if item["claim"]:
            lines.append(
                f"{where}: distillation helps — {label} beats the {VARIANT_LABELS.get(reference, reference)} and "
                f"both controls ({names}) on per-subject {metric}, Holm-corrected p < {alpha:g}."
            )
        elif item["missing_controls"]:
            lines.append(
                f"{where}: no distillation claim for {label} — the controls "
                f"{', '.join(item['missing_controls'])} were not run."
            )
        else:
            lost = [VARIANT_LABELS.get(k, k) for k, won in item["beats"].items() if not won]
            lines.append(
                f"{where}: distillation is not shown to help — {label} does not beat {', '.join(lost)} "
                f"on per-subject {metric} at Holm-corrected p < {alpha:g}."
            )
    return lines


def _spread(cell: Mapping[str, float | None]) -> str:
    mean, sd = cell.get("mean"), cell.get("sd")
    return "–" if mean is None else f"{mean:.3f} ± {sd or 0.0:.3f}"


def render_seeds_markdown(report: Mapping[str, Any]) -> str:
    """Markdown text of a report built by :func:`build_seeds_report`."""
    seeds = report["seeds"]
    lines = [f"# {report['title']}", ""]
    metadata = report.get("metadata") or {}
    if metadata:
        lines += [f"- **{key}**: {value}" for key, value in metadata.items()] + [""]
    lines += [
        f"## Test results over {len(seeds)} training seeds ({', '.join(map(str, seeds))})",
        "",
        "Mean ± SD over seeds of the figures pooled over every scored test epoch.",
        "",
        "| classes | experiment | seeds | Cohen's κ | macro F1 | weighted F1 | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['grouping'].upper()} | {row['label']} | {len(row['seeds'])} | {_spread(row['cohen_kappa'])} | "
            f"{_spread(row['macro_f1'])} | {_spread(row['weighted_f1'])} | {_spread(row['accuracy'])} |"
        )
    lines += ["", "## Per-class F1 (mean ± SD over seeds)", ""]
    by_grouping: dict[str, list[Mapping[str, Any]]] = {}
    for row in report["summary"]:
        by_grouping.setdefault(row["grouping"], []).append(row)
    for grouping, rows in by_grouping.items():
        names = rows[0]["class_names"]
        lines += [f"### {grouping.upper()}", ""]
        lines.append("| experiment | " + " | ".join(f"F1 {n}" for n in names) + " | F1 = 0 (seeds) |")
        lines.append("|---|" + "---|" * (len(names) + 1))
        for row in rows:
            collapsed = ", ".join(f"{n} ({k})" for n, k in row["collapsed_classes"].items()) or "none"
            lines.append(
                f"| {row['label']} | " + " | ".join(_spread(c) for c in row["f1"]) + f" | {collapsed} |"
            )
        lines.append("")
    comparisons = report.get("comparisons") or []
    if comparisons:
        lines += [
            "## Paired per-subject comparisons",
            "",
            f"Each test subject's {report['test_metric']} is averaged over seeds; differences are B − A over the "
            "same subjects, the interval a percentile bootstrap of the mean difference, p the two-sided Wilcoxon "
            "signed-rank test and Holm p the same after Holm's correction over every comparison below.",
            "",
            "| A | B | subjects | mean A | mean B | mean B − A | CI | Wilcoxon p | Holm p | B better / worse |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            confidence = round(100 * c["confidence"])
            lines.append(
                f"| {c['variant_a']} | {c['variant_b']} | {c['n_subjects']} | {_number(c['mean_a'])} | "
                f"{_number(c['mean_b'])} | {c['mean_difference']:+.3f} | "
                f"{confidence}%: [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {format_p_value(c['p_value'])} | "
                f"{format_p_value(c.get('p_adjusted'))} | {c['n_better']} / {c['n_worse']} |"
            )
        lines.append("")
    for item in report.get("skipped_comparisons") or []:
        lines.append(f"- not compared: {item['a']} vs {item['b']} ({item['grouping']}): {item['reason']}")
    lines += ["## Distillation claim", ""]
    lines += [f"- {line}" for line in report["claim_text"]]
    lines.append("")
    return "\n".join(lines)


def write_seeds_report(
    results_by_seed: Mapping[int, Sequence[VariantResult]],
    out_dir: str | os.PathLike[str],
    *,
    name: str = "report",
    **kwargs: Any,
) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` of :func:`build_seeds_report` into ``out_dir`` (atomically)."""
    report = build_seeds_report(results_by_seed, **kwargs)
    out = Path(out_dir)
    markdown_path = write_text_atomic(out / f"{name}.md", render_seeds_markdown(report))
    json_path = write_text_atomic(out / f"{name}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    return markdown_path, json_path


__all__ += ["build_seeds_report", "render_seeds_markdown", "write_seeds_report"]
