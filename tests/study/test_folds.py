"""Subject-wise folds of the slpdb study."""

from __future__ import annotations

import pytest

from kdsleep.study.folds import subject_folds

# scored epochs of the 13 slpdb subjects (slp01 and slp02 hold two records each)
EPOCHS = {
    "slp01": 599,
    "slp02": 621,
    "slp03": 720,
    "slp04": 720,
    "slp14": 713,
    "slp16": 694,
    "slp32": 640,
    "slp37": 698,
    "slp48": 759,
    "slp59": 458,
    "slp60": 710,
    "slp66": 439,
    "slp67x": 154,
}


def test_every_subject_tested_once_and_never_split():
    folds = subject_folds(EPOCHS, 5, n_val=2, seed=0)
    assert len(folds) == 5
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == sorted(EPOCHS)
    for fold in folds:
        parts = [set(fold.test), set(fold.val), set(fold.train)]
        assert set().union(*parts) == set(EPOCHS)
        assert sum(len(p) for p in parts) == len(EPOCHS)  # disjoint: a subject sits in one part only
        assert len(fold.val) == 2 and len(fold.train) >= 1


def test_folds_are_balanced_by_epochs():
    folds = subject_folds(EPOCHS, 5, seed=0)
    loads = [sum(EPOCHS[s] for s in f.test) for f in folds]
    assert max(loads) - min(loads) <= max(EPOCHS.values())


def test_folds_are_deterministic_and_depend_on_the_seed():
    a = subject_folds(EPOCHS, 5, seed=0)
    b = subject_folds(dict(reversed(list(EPOCHS.items()))), 5, seed=0)
    assert a == b  # the order of the mapping does not matter
    others = [subject_folds(EPOCHS, 5, seed=s) for s in range(1, 6)]
    assert any(o != a for o in others)


def test_too_few_subjects_is_a_clear_error():
    with pytest.raises(ValueError, match="too few"):
        subject_folds({"a": 10, "b": 10, "c": 10}, 3, n_val=2)
    with pytest.raises(ValueError, match="n_folds"):
        subject_folds(EPOCHS, 1)
