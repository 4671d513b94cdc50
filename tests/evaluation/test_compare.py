"""Tests of the paired per-subject comparison between variants."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy import stats

from kdsleep.evaluation.compare import bootstrap_mean_ci, compare_variants, paired_comparison
from kdsleep.evaluation.metrics import per_subject_metrics

BASELINE = {"s1": 0.50, "s2": 0.60, "s3": 0.55, "s4": 0.40, "s5": 0.70, "s6": 0.65}
DISTILLED = {"s1": 0.58, "s2": 0.61, "s3": 0.60, "s4": 0.52, "s5": 0.69, "s6": 0.75}


def test_differences_means_and_wilcoxon_by_hand() -> None:
    result = paired_comparison(
        BASELINE, DISTILLED, variant_a="ecg_baseline", variant_b="at_cl", n_bootstrap=2000
    )
    differences = np.array([DISTILLED[s] - BASELINE[s] for s in sorted(BASELINE)])
    assert result.subjects == tuple(sorted(BASELINE))
    assert result.mean_difference == pytest.approx(differences.mean())
    assert result.median_difference == pytest.approx(np.median(differences))
    assert result.mean_a == pytest.approx(np.mean(list(BASELINE.values())))
    assert (result.n_better, result.n_worse) == (5, 1)
    expected = stats.wilcoxon(differences)
    assert result.wilcoxon_statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    # Ranks of |d| = .08 .01 .05 .12 .01 .10: the single negative difference has tied rank 1.5.
    assert result.wilcoxon_statistic == pytest.approx(1.5)
    assert differences.min() <= result.ci_low < result.mean_difference < result.ci_high <= differences.max()


def test_bootstrap_is_seeded_and_sensible() -> None:
    first = paired_comparison(BASELINE, DISTILLED, n_bootstrap=3000, seed=7)
    second = paired_comparison(BASELINE, DISTILLED, n_bootstrap=3000, seed=7)
    other = paired_comparison(BASELINE, DISTILLED, n_bootstrap=3000, seed=8)
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert bootstrap_mean_ci([0.2, 0.2, 0.2], n_bootstrap=100) == pytest.approx((0.2, 0.2))
    # A wider interval at a higher confidence level.
    low90, high90 = bootstrap_mean_ci(np.arange(10.0), confidence=0.90, n_bootstrap=4000)
    low99, high99 = bootstrap_mean_ci(np.arange(10.0), confidence=0.99, n_bootstrap=4000)
    assert low99 < low90 < 4.5 < high90 < high99


def test_bootstrap_interval_covers_a_known_mean() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(40):
        sample = rng.normal(1.0, 1.0, size=30)
        low, high = bootstrap_mean_ci(sample, n_bootstrap=1000, seed=int(rng.integers(1 << 30)))
        covered += low <= 1.0 <= high
    assert covered >= 32  # about 95 % of 40 intervals, with slack for bootstrap undercoverage


def test_identical_variants_give_p_value_one() -> None:
    result = paired_comparison(BASELINE, dict(BASELINE), n_bootstrap=100)
    assert result.mean_difference == 0.0 and result.p_value == 1.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_mismatched_subjects_and_too_few_pairs_raise() -> None:
    with pytest.raises(ValueError, match=r"only in A: \['s6'\]; only in B: \['s9'\]"):
        paired_comparison(BASELINE, {**{k: v for k, v in DISTILLED.items() if k != "s6"}, "s9": 0.5})
    with pytest.raises(ValueError, match="at least 2 subjects"):
        paired_comparison({"s1": 0.5}, {"s1": 0.6})


def test_undefined_values_are_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = paired_comparison(
            {**BASELINE, "s7": float("nan")}, {**DISTILLED, "s7": 0.3}, n_bootstrap=100
        )
    assert "s7" not in result.subjects and result.n_subjects == 6
    assert "s7" in caplog.text


def test_compare_variants_from_per_subject_metrics() -> None:
    rng = np.random.default_rng(1)
    subjects = [f"s{i}" for i in range(8) for _ in range(2)]
    y_true = rng.integers(0, 3, size=(16, 20))
    noisy = np.where(rng.random((16, 20)) < 0.4, y_true, rng.integers(0, 3, size=(16, 20)))
    better = np.where(rng.random((16, 20)) < 0.8, y_true, rng.integers(0, 3, size=(16, 20)))
    per_subject = {
        "ecg_baseline": per_subject_metrics(y_true, noisy, subjects, 3),
        "at_cl": per_subject_metrics(y_true, better, subjects, 3),
        "sd_cl": per_subject_metrics(y_true, noisy, subjects, 3),
    }
    comparisons = compare_variants(per_subject, "ecg_baseline", metric="cohen_kappa", n_bootstrap=500)
    assert [c.variant_b for c in comparisons] == ["at_cl", "sd_cl"]
    assert comparisons[0].mean_difference > 0.2 and comparisons[0].ci_low > 0
    assert comparisons[0].p_value < 0.05
    assert comparisons[1].mean_difference == 0.0
    encoded = json.loads(json.dumps(comparisons[0].to_dict()))
    assert encoded["n_subjects"] == 8 and encoded["metric"] == "cohen_kappa"
    with pytest.raises(ValueError, match="reference variant 'eeg_baseline'"):
        compare_variants(per_subject, "eeg_baseline")


def test_holm_correction_matches_the_step_down_definition() -> None:
    from kdsleep.evaluation.compare import holm_correction

    raw = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert np.allclose(holm_correction(raw), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm_correction([0.5, 0.9]), [1.0, 1.0])
    adjusted = holm_correction([0.01, float("nan"), 0.02])
    assert np.isnan(adjusted[1]) and np.allclose(adjusted[[0, 2]], [0.02, 0.02])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_correction([1.5])


def test_holm_never_below_raw_and_with_holm_sets_adjusted() -> None:
    from kdsleep.evaluation.compare import holm_correction, paired_comparison, with_holm

    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 0.2, size=12)
    adjusted = holm_correction(raw)
    assert np.all(adjusted >= raw) and np.all(adjusted <= 1)
    subjects = [f"s{i}" for i in range(8)]
    a = {s: float(i) for i, s in enumerate(subjects)}
    b = {s: float(i) + 1.0 + 0.1 * i for i, s in enumerate(subjects)}
    comparisons = with_holm(
        [paired_comparison(a, b, n_bootstrap=100), paired_comparison(a, a, n_bootstrap=100)]
    )
    assert comparisons[0].p_adjusted == pytest.approx(min(1.0, 2 * comparisons[0].p_value))
    assert comparisons[1].p_adjusted == 1.0
    assert comparisons[0].to_dict()["p_adjusted"] == comparisons[0].p_adjusted


def test_format_p_value() -> None:
    from kdsleep.evaluation.compare import format_p_value

    assert format_p_value(0.0) == "< 0.001"
    assert format_p_value(0.00049) == "< 0.001"
    assert format_p_value(0.0123) == "0.012"
    assert format_p_value(None) == "–"
    assert format_p_value(float("nan")) == "–"


def test_mean_over_seeds_pairs_subjects() -> None:
    from kdsleep.evaluation.compare import mean_over_seeds, mean_sd

    means = mean_over_seeds([{"a": 0.2, "b": 0.4}, {"a": 0.4, "b": float("nan")}])
    assert means == pytest.approx({"a": 0.3, "b": 0.4})
    with pytest.raises(ValueError, match="other subjects"):
        mean_over_seeds([{"a": 0.1}, {"b": 0.1}])
    mean, sd = mean_sd([0.1, 0.3])
    assert mean == pytest.approx(0.2) and sd == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert mean_sd([0.5]) == (0.5, 0.0)


def test_seeds_paired_comparison_averages_each_subject_over_the_common_seeds() -> None:
    from kdsleep.evaluation.compare import seeds_paired_comparison

    rng = np.random.default_rng(0)
    subjects = [f"s{i}" for i in range(6)]

    def run(shift: float) -> dict:
        labels = rng.integers(0, 4, 200 * len(subjects))
        noise = rng.integers(0, 4, labels.size)
        preds = np.where(rng.random(labels.size) < 0.5 + shift, labels, noise)
        return per_subject_metrics(labels, preds, np.repeat(subjects, 200).tolist(), n_classes=4)

    a = {0: run(0.0), 1: run(0.0), 2: run(0.0)}
    b = {0: run(0.2), 1: run(0.2)}  # seed 2 is missing: only seeds 0 and 1 are paired
    result = seeds_paired_comparison(a, b, "cohen_kappa", variant_a="x", variant_b="y")
    expected = paired_comparison(
        {s: np.mean([a[k][s].cohen_kappa for k in (0, 1)]) for s in subjects},
        {s: np.mean([b[k][s].cohen_kappa for k in (0, 1)]) for s in subjects},
        metric="cohen_kappa (mean over 2 seeds)",
        variant_a="x",
        variant_b="y",
    )
    assert result == expected and result.mean_difference > 0
    with pytest.raises(ValueError, match="at least one seed"):
        seeds_paired_comparison(a, {5: b[0]}, "cohen_kappa")
