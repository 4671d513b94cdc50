"""Paired per-subject comparison of two variants evaluated on the same held-out subjects.

Pooled test-set figures (Table I of Joshi et al.) hide how consistent a gain is across subjects. Because the
variants share one subject-wise split, each test subject gives one paired difference; their mean is reported
with a seeded percentile-bootstrap confidence interval (subjects resampled with replacement) and a Wilcoxon
signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided).

A report that tests several variants against one reference tests a *family* of hypotheses:
:func:`holm_correction` adjusts their p values (Holm 1979, step-down, controls the family-wise error rate)
and :func:`format_p_value` prints them (``< 0.001`` rather than a rounded ``0.000``). Results of several
training seeds are paired per subject through the subject's mean over seeds (:func:`mean_over_seeds`), so a
subject counts once however many seeds were run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from kdsleep.evaluation.metrics import StagingMetrics, metric_by_subject

__all__ = [
    "PairedComparison",
    "bootstrap_mean_ci",
    "compare_variants",
    "format_p_value",
    "holm_correction",
    "mean_over_seeds",
    "mean_sd",
    "paired_comparison",
    "seeds_paired_comparison",
    "with_holm",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedComparison:
    """Variant B against variant A on the same subjects (differences are B - A).

    Attributes
    ----------
    metric : str
        The per-subject figure compared, e.g. ``"weighted_f1"``.
    variant_a, variant_b : str
        Names of the reference and the compared variant.
    subjects : tuple of str
        The paired subjects, sorted.
    values_a, values_b : tuple of float
        The figure of each subject under A and under B.
    mean_a, mean_b, mean_difference, median_difference : float
        Means over subjects and the mean / median paired difference B - A.
    ci_low, ci_high : float
        Percentile-bootstrap confidence interval of the mean difference.
    confidence : float
        Confidence level of the interval (0.95).
    n_bootstrap : int
        Number of bootstrap resamples.
    seed : int
        Seed of the bootstrap generator.
    wilcoxon_statistic, p_value : float
        Two-sided Wilcoxon signed-rank test of the differences (p = 1 when all differences are zero).
    n_better, n_worse : int
        Subjects where B is above / below A.
    p_adjusted : float or None
        ``p_value`` after Holm's correction over the family of comparisons it was reported with
        (:func:`holm_correction`); ``None`` until a family is corrected.
    """

    metric: str
    variant_a: str
    variant_b: str
    subjects: tuple[str, ...]
    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    mean_a: float
    mean_b: float
    mean_difference: float
    median_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_bootstrap: int
    seed: int
    wilcoxon_statistic: float
    p_value: float
    n_better: int
    n_worse: int
    p_adjusted: float | None = None

    @property
    def n_subjects(self) -> int:
        """Number of paired subjects."""
        return len(self.subjects)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (NaN becomes ``None``)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float) and math.isnan(value):
                data[key] = None
            elif isinstance(value, tuple):
                data[key] = list(value)
        data["n_subjects"] = self.n_subjects
        return data


def bootstrap_mean_ci(
    values: np.ndarray | Sequence[float],
    *,
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of a mean.

    Parameters
    ----------
    values : array of float
        One value per subject.
    n_bootstrap : int
        Number of resamples (10 000).
    confidence : float
        Confidence level (0.95).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same interval.

    Returns
    -------
    (low, high) : tuple of float
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"need a non-empty 1-D array of values, got shape {data.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be positive, got {n_bootstrap}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_bootstrap)
    # Chunks bound the index matrix for large subject counts.
    chunk = max(1, 2_000_000 // data.size)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        index = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[index].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_comparison(
    values_a: Mapping[str, float],
    values_b: Mapping[str, float],
    *,
    metric: str = "weighted_f1",
    variant_a: str = "A",
    variant_b: str = "B",
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two variants subject by subject.

    Parameters
    ----------
    values_a, values_b : mapping of str to float
        The figure of every subject under each variant; both must hold the same subjects.
    metric : str
        Name of the figure, for the report.
    variant_a, variant_b : str
        Names of the variants; differences are ``b - a``.
    n_bootstrap : int
        Bootstrap resamples for the confidence interval (10 000).
    confidence : float
        Confidence level (0.95).
    seed : int
        Bootstrap seed (0).

    Returns
    -------
    PairedComparison

    Raises
    ------
    ValueError
        If the subject sets differ or fewer than two subjects have a defined value in both variants.
    """
    only_a = sorted(set(values_a) - set(values_b))
    only_b = sorted(set(values_b) - set(values_a))
    if only_a or only_b:
        raise ValueError(
            f"paired comparison of {metric} needs the same subjects in both variants: only in {variant_a}: "
            f"{only_a[:10]}{' ...' if len(only_a) > 10 else ''}; only in {variant_b}: "
            f"{only_b[:10]}{' ...' if len(only_b) > 10 else ''}"
        )
    subjects = sorted(values_a)
    undefined = [s for s in subjects if math.isnan(values_a[s]) or math.isnan(values_b[s])]
    if undefined:
        # e.g. kappa of a subject scored as a single stage; such a subject carries no paired information.
        logger.warning(
            "%s undefined for %d subject(s), left out of the comparison: %s",
            metric,
            len(undefined),
            undefined[:10],
        )
        subjects = [s for s in subjects if s not in set(undefined)]
    if len(subjects) < 2:
        raise ValueError(
            f"paired comparison of {metric} between {variant_a} and {variant_b} needs at least 2 subjects with "
            f"defined values, got {len(subjects)}"
        )
    a = np.array([values_a[s] for s in subjects], dtype=np.float64)
    b = np.array([values_b[s] for s in subjects], dtype=np.float64)
    difference = b - a
    ci_low, ci_high = bootstrap_mean_ci(difference, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    if np.all(difference == 0):
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.wilcoxon(difference, alternative="two-sided")
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return PairedComparison(
        metric=metric,
        variant_a=variant_a,
        variant_b=variant_b,
        subjects=tuple(subjects),
        values_a=tuple(float(v) for v in a),
        values_b=tuple(float(v) for v in b),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_difference=float(difference.mean()),
        median_difference=float(np.median(difference)),
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
        wilcoxon_statistic=statistic,
        p_value=p_value,
        n_better=int(np.sum(difference > 0)),
        n_worse=int(np.sum(difference < 0)),
    )


def compare_variants(
    per_subject: Mapping[str, Mapping[str, StagingMetrics]],
    reference: str,
    *,
    metric: str = "weighted_f1",
    variants: Sequence[str] | None = None,
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[PairedComparison]:
    """Compare every variant with a reference (e.g. each KD variant with ``ecg_baseline``).

    Parameters
    ----------
    per_subject : mapping of variant name to mapping of subject to StagingMetrics
        Per-subject metrics of each variant (see :func:`~kdsleep.evaluation.metrics.per_subject_metrics`).
    reference : str
        The variant every other one is compared with (A in :class:`PairedComparison`).
    metric : str
        ``accuracy``, ``weighted_f1``, ``macro_f1``, ``cohen_kappa`` or ``f1:<class name>``.
    variants : sequence of str or None
        Variants to compare (default: all but the reference, in the mapping's order).
    n_bootstrap, confidence, seed
        As for :func:`paired_comparison`.
    """
    if reference not in per_subject:
        raise ValueError(f"reference variant {reference!r} not among the results {list(per_subject)}")
    chosen = [v for v in per_subject if v != reference] if variants is None else list(variants)
    unknown = [v for v in chosen if v not in per_subject]
    if unknown:
        raise ValueError(f"variants {unknown} not among the results {list(per_subject)}")
    reference_values = metric_by_subject(per_subject[reference], metric)
    return [
        paired_comparison(
            reference_values,
            metric_by_subject(per_subject[variant], metric),
            metric=metric,
            variant_a=reference,
            variant_b=variant,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )
        for variant in chosen
        if variant != reference
    ]


def holm_correction(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p values.

    The p values are sorted, the i-th smallest (0-based) is multiplied by ``m - i`` (m tests), a running
    maximum keeps the adjusted values in the order of the raw ones, and they are capped at 1. An adjusted p
    below α rejects with a family-wise error rate of at most α. NaN entries (tests that could not be run) stay
    NaN and do not count towards m.

    Parameters
    ----------
    p_values : sequence of float
        Raw p values of the family, in any order.

    Returns
    -------
    numpy.ndarray
        Adjusted p values in the input order.
    """
    raw = np.asarray(p_values, dtype=np.float64)
    if raw.ndim != 1:
        raise ValueError(f"p values must be a 1-D sequence, got shape {raw.shape}")
    finite = ~np.isnan(raw)
    if np.any((raw[finite] < 0) | (raw[finite] > 1)):
        raise ValueError(f"p values must lie in [0, 1], got {raw[finite].tolist()}")
    adjusted = np.full_like(raw, np.nan)
    index = np.flatnonzero(finite)
    m = index.size
    if m == 0:
        return adjusted
    order = index[np.argsort(raw[index], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        adjusted[i] = running
    return adjusted


def with_holm(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with :attr:`PairedComparison.p_adjusted` set by Holm's correction over all of them."""
    adjusted = holm_correction([c.p_value for c in comparisons])
    return [replace(c, p_adjusted=float(a)) for c, a in zip(comparisons, adjusted, strict=True)]


def format_p_value(p: float | None, *, floor: float = 1e-3) -> str:
    """A p value for a table: ``"< 0.001"`` below ``floor``, three decimals otherwise, ``"–"`` when missing."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    if p < floor:
        return f"< {floor:g}"
    return f"{p:.3f}"


def seeds_paired_comparison(
    a: Mapping[int, Mapping[str, StagingMetrics]],
    b: Mapping[int, Mapping[str, StagingMetrics]],
    metric: str,
    *,
    variant_a: str = "A",
    variant_b: str = "B",
) -> PairedComparison:
    """Compare two variants trained with several seeds, subject by subject.

    ``a`` and ``b`` map each seed to the per-subject metrics of that seed's run. Over the seeds both hold,
    each subject's ``metric`` is averaged (:func:`mean_over_seeds`), then the two sets of subject means are
    paired (:func:`paired_comparison`). Raises ``ValueError`` where they cannot be (no common seed, other
    subjects).
    """
    seeds = sorted(set(a) & set(b))
    values = [mean_over_seeds([metric_by_subject(side[s], metric) for s in seeds]) for side in (a, b)]
    return paired_comparison(
        values[0],
        values[1],
        metric=f"{metric} (mean over {len(seeds)} seeds)",
        variant_a=variant_a,
        variant_b=variant_b,
    )


def mean_over_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each subject's mean figure over training seeds (NaN values ignored; NaN when all are NaN).

    Parameters
    ----------
    per_seed : sequence of mapping of subject to float
        One mapping per seed, e.g. ``metric_by_subject(per_subject_metrics_of_seed, "cohen_kappa")``; every
        seed must hold the same subjects (the same test split).
    """
    if not per_seed:
        raise ValueError("mean_over_seeds needs the results of at least one seed")
    subjects = set(per_seed[0])
    for k, values in enumerate(per_seed[1:], start=1):
        if set(values) != subjects:
            raise ValueError(
                f"seed {k} was evaluated on other subjects than seed 0: "
                f"{sorted(set(values) ^ subjects)[:10]} differ"
            )
    means: dict[str, float] = {}
    for subject in sorted(subjects):
        row = np.array([seed[subject] for seed in per_seed], dtype=np.float64)
        means[subject] = float(np.nanmean(row)) if np.any(~np.isnan(row)) else math.nan
    return means


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of figures over seeds."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"need a non-empty 1-D array of values, got shape {data.shape}")
    return float(data.mean()), float(data.std(ddof=1)) if data.size > 1 else 0.0
