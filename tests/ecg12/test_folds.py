"""Iterative multi-label stratification into folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdsleep.ecg12.folds import (
    cv_splits,
    groups_split_across_folds,
    iterative_stratification,
    label_counts_per_fold,
    label_distribution_deviation,
)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """2000 recordings, 24 labels with prevalences from 40 % down to 0.5 %, as skewed as the challenge's."""
    rng = np.random.default_rng(1)
    prevalence = np.array([0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005] * 3 + [0.4, 0.15, 0.08])
    return rng.random((2000, 24)) < prevalence


def test_every_recording_gets_one_fold_of_balanced_size(labels):
    folds = iterative_stratification(labels, n_folds=10, seed=0)
    assert folds.shape == (2000,) and folds.min() == 0 and folds.max() == 9
    sizes = np.bincount(folds, minlength=10)
    assert np.all(np.abs(sizes - 200) <= 5)


def test_labels_spread_evenly_over_folds(labels):
    folds = iterative_stratification(labels, n_folds=10, seed=0)
    counts = label_counts_per_fold(labels, folds)
    expected = labels.sum(axis=0) / 10
    deviation = np.abs(counts - expected).max(axis=0)
    # most labels are within one recording of their share in every fold (random folds: several)
    assert np.mean(deviation <= 1) >= 0.8
    # labels with at least 10 recordings appear in every fold
    assert np.all(counts[:, labels.sum(axis=0) >= 10] > 0)
    random_folds = np.random.default_rng(0).permutation(np.arange(2000) % 10)
    stratified = label_distribution_deviation(labels, folds)
    assert stratified < 0.5 * label_distribution_deviation(labels, random_folds)


def test_exact_split_when_it_exists():
    # 3 mutually exclusive labels with 10, 20 and 30 recordings: each fold gets 1, 2 and 3
    labels = np.zeros((60, 3), dtype=bool)
    labels[:10, 0] = labels[10:30, 1] = labels[30:, 2] = True
    folds = iterative_stratification(labels, n_folds=10, seed=5)
    assert np.array_equal(label_counts_per_fold(labels, folds), np.tile([1, 2, 3], (10, 1)))


def test_deterministic_given_seed(labels):
    a = iterative_stratification(labels, seed=42)
    b = iterative_stratification(labels, seed=42)
    c = iterative_stratification(labels, seed=43)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unlabelled_recordings_and_proportions():
    labels = np.zeros((30, 2), dtype=bool)
    labels[:10, 0] = True
    folds = iterative_stratification(labels, n_folds=3, seed=0, proportions=[0.5, 0.25, 0.25])
    assert np.array_equal(np.bincount(folds), [15, 8, 7]) or np.array_equal(np.bincount(folds), [15, 7, 8])
    with pytest.raises(ValueError, match="proportions"):
        iterative_stratification(labels, n_folds=3, proportions=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="n_folds"):
        iterative_stratification(labels, n_folds=1)


def test_cv_splits_partition_and_never_validate_on_test(labels):
    folds = iterative_stratification(labels, seed=0)
    seen_test = []
    for k, train, validation, test in cv_splits(folds):
        assert np.all(folds[test] == k)
        assert np.all(folds[validation] == (k + 1) % 10)
        assert len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(validation, test)) == 0
        assert len(train) + len(validation) + len(test) == len(folds)
        seen_test.append(test)
    assert np.array_equal(np.sort(np.concatenate(seen_test)), np.arange(len(folds)))


def test_real_labelled_records(shared_data: Path):
    from kdsleep.ecg12.reader import list_records, read_header
    from kdsleep.ecg12.scoring import load_scoring_tables

    tables = load_scoring_tables(shared_data / "cinc2020" / "scoring")
    headers = [read_header(p) for p in list_records(shared_data / "cinc2020" / "labelled")]
    labels = tables.encode_many(h.dx_codes for h in headers)
    folds = iterative_stratification(labels, n_folds=10, seed=0)
    counts = label_counts_per_fold(labels, folds)
    # a label on k <= 10 recordings lands on k different folds
    assert np.array_equal((counts > 0).sum(axis=0), np.minimum(labels.sum(axis=0), 10))


@pytest.fixture(scope="module")
def patients(labels) -> np.ndarray:
    """Patient of each of the 2000 recordings: 700 patients with 1 to 7 recordings each."""
    rng = np.random.default_rng(2)
    return np.sort(rng.integers(0, 700, labels.shape[0]))


def test_groups_never_split_across_folds(labels, patients):
    folds = iterative_stratification(labels, n_folds=10, seed=0, groups=patients)
    assert groups_split_across_folds(folds, patients) == []
    for _, train, validation, test in cv_splits(folds):
        test_patients = set(patients[test])
        assert not test_patients & set(patients[train]) and not test_patients & set(patients[validation])
        assert not set(patients[validation]) & set(patients[train])
    # ungrouped folds do split patients, so the check above could fail
    assert groups_split_across_folds(iterative_stratification(labels, n_folds=10, seed=0), patients)


def test_grouped_folds_stay_balanced(labels, patients):
    folds = iterative_stratification(labels, n_folds=10, seed=0, groups=patients)
    sizes = np.bincount(folds, minlength=10)
    assert np.all(np.abs(sizes - 200) <= 20)
    random_folds = np.random.default_rng(0).permutation(700)[patients] % 10
    assert label_distribution_deviation(labels, folds) < 0.6 * label_distribution_deviation(
        labels, random_folds
    )


def test_singleton_groups_give_the_ungrouped_folds(labels):
    plain = iterative_stratification(labels, n_folds=10, seed=3)
    names = [f"record-{i}" for i in range(labels.shape[0])]
    assert np.array_equal(iterative_stratification(labels, n_folds=10, seed=3, groups=names), plain)
    with pytest.raises(ValueError, match="one group per recording"):
        iterative_stratification(labels, n_folds=10, groups=names[:-1])
