"""Evaluation: staging metrics, paired per-subject comparisons, reports and plots.

The plotting functions are imported on first use so that training code can use the metrics without loading
matplotlib.
"""

from __future__ import annotations

from typing import Any

from kdsleep.evaluation.compare import (
    PairedComparison,
    bootstrap_mean_ci,
    compare_variants,
    paired_comparison,
)
from kdsleep.evaluation.metrics import (
    ConfusionMatrix,
    StagingMetrics,
    SubjectConfusion,
    compute_metrics,
    metric_by_subject,
    metrics_from_confusion,
    per_subject_metrics,
)
from kdsleep.evaluation.report import (
    PAPER_TABLE_I,
    PAPER_TABLE_II,
    VARIANT_LABELS,
    VariantResult,
    build_report,
    render_markdown,
    write_report,
)

_PLOTS = (
    "DisagreementProjection",
    "epoch_features",
    "plot_confusion_matrix",
    "plot_disagreement_projection",
    "plot_hypnogram",
    "plot_learning_curves",
    "project_disagreements",
)

__all__ = [
    "PAPER_TABLE_I",
    "PAPER_TABLE_II",
    "VARIANT_LABELS",
    "ConfusionMatrix",
    "PairedComparison",
    "StagingMetrics",
    "SubjectConfusion",
    "VariantResult",
    "bootstrap_mean_ci",
    "build_report",
    "compare_variants",
    "compute_metrics",
    "metric_by_subject",
    "metrics_from_confusion",
    "paired_comparison",
    "per_subject_metrics",
    "render_markdown",
    "write_report",
    *_PLOTS,
]


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        from kdsleep.evaluation import plots  # imported on use: it loads matplotlib

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
