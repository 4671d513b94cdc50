"""Tests of the Table I / Table II reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdsleep.evaluation.compare import compare_variants
from kdsleep.evaluation.metrics import compute_metrics, per_subject_metrics
from kdsleep.evaluation.report import (
    PAPER_TABLE_I,
    PAPER_TABLE_II,
    VariantResult,
    build_report,
    render_markdown,
    write_report,
)

VARIANTS = ("at_sd_cl", "ecg_baseline", "sd_cl", "eeg_baseline", "at_cl")  # deliberately out of order


def _results(grouping: str, class_names: tuple[str, ...], seed: int = 0) -> list[VariantResult]:
    rng = np.random.default_rng(seed)
    k = len(class_names)
    subjects = [f"s{i}" for i in range(4) for _ in range(3)]
    y_true = rng.integers(0, k, size=(12, 35))
    results = []
    for i, variant in enumerate(VARIANTS):
        y_pred = np.where(rng.random((12, 35)) < 0.3 + 0.1 * i, y_true, rng.integers(0, k, size=(12, 35)))
        results.append(
            VariantResult(
                variant,
                grouping,
                compute_metrics(y_true, y_pred, k, class_names),
                per_subject_metrics(y_true, y_pred, subjects, k, class_names),
            )
        )
    return results


def test_tables_hold_every_variant_in_paper_order_with_reference_figures() -> None:
    results = _results("w-n-r", ("W", "N", "R")) + _results("W-L-D-R", ("W", "L", "D", "R"), seed=1)
    report = build_report(results)
    order = [(row["grouping"], row["variant"]) for row in report["table_i"]]
    paper_order = ["eeg_baseline", "ecg_baseline", "sd_cl", "at_cl", "at_sd_cl"]
    assert order == [("w-l-d-r", v) for v in paper_order] + [("w-n-r", v) for v in paper_order]
    first = report["table_i"][0]
    assert (first["paper_weighted_f1"], first["paper_accuracy"]) == PAPER_TABLE_I[("w-l-d-r", "eeg_baseline")]
    assert first["weighted_f1"] == pytest.approx(results[8].metrics.weighted_f1)  # w-l-d-r eeg_baseline
    row = next(r for r in report["table_ii"] if r["grouping"] == "w-n-r" and r["variant"] == "at_cl")
    assert row["paper_f1"] == list(PAPER_TABLE_II[("w-n-r", "at_cl")])
    assert len(report["per_subject"]) == 10 and len(report["per_subject"][0]["subjects"]) == 4
    subject_f1 = [m.weighted_f1 for m in results[8].per_subject.values()]
    assert first["n_subjects"] == 4
    assert first["subject_weighted_f1_mean"] == pytest.approx(np.mean(subject_f1))
    assert first["subject_weighted_f1_sd"] == pytest.approx(np.std(subject_f1, ddof=1))


def test_markdown_shows_ours_beside_the_paper() -> None:
    results = _results("w-l-d-r", ("W", "L", "D", "R"))
    comparisons = compare_variants(
        {r.variant: r.per_subject for r in results}, "ecg_baseline", n_bootstrap=200
    )
    text = render_markdown(build_report(results, comparisons=comparisons, metadata={"dataset": "synthetic"}))
    assert "| W-L-D-R | AT+SD+CL |" in text
    assert "paper weighted F1" in text and "| 0.50 | 0.49 |" in text  # AT+SD+CL reference
    assert "(0.89)" in text  # EEG baseline F1 of W in Table II
    assert "Paired per-subject comparisons" in text and "| weighted_f1 | ECG baseline | AT+CL | 4 |" in text
    assert "**dataset**: synthetic" in text
    assert "per-subject weighted F1 (mean ± SD)" in text and " ± " in text
    plain = render_markdown(build_report(results, show_reference=False))
    assert "paper" not in plain and "(0.89)" not in plain


def test_unknown_grouping_and_variant_get_no_reference() -> None:
    class_names = ("W", "N1", "N2", "N3", "R")
    metrics = compute_metrics([0, 1, 2, 3, 4], [0, 1, 2, 3, 3], 5, class_names)
    report = build_report([VariantResult("my_variant", "aasm-5", metrics)])
    assert report["table_i"][0]["paper_weighted_f1"] is None
    assert report["table_ii"][0]["paper_f1"] is None
    assert "my_variant" in render_markdown(report)


def test_reordered_classes_do_not_borrow_the_papers_per_class_figures() -> None:
    metrics = compute_metrics([0, 1, 2], [0, 1, 2], 3, ("R", "N", "W"))
    report = build_report([VariantResult("eeg_baseline", "w-n-r", metrics)])
    assert report["table_ii"][0]["paper_f1"] is None


def test_duplicates_and_empty_input_raise() -> None:
    results = _results("w-n-r", ("W", "N", "R"))
    with pytest.raises(ValueError, match="appears twice"):
        build_report(results + results[:1])
    with pytest.raises(ValueError, match="at least one"):
        build_report([])


def test_write_report_writes_markdown_and_json_atomically(tmp_path: Path) -> None:
    results = _results("w-n-r", ("W", "N", "R"))
    markdown_path, json_path = write_report(results, tmp_path / "run", name="table")
    assert markdown_path.name == "table.md" and json_path.name == "table.json"
    data = json.loads(json_path.read_text())
    assert data == json.loads(json.dumps(build_report(results)))
    assert markdown_path.read_text().startswith("# Sleep staging results")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["table.json", "table.md"]
    assert oct(json_path.stat().st_mode & 0o777) == oct(0o644)
