"""Cross-validation folds by subject: the records of one subject never sit on both sides of a split."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "subject_folds"]


@dataclass(frozen=True)
class Fold:
    """One fold of the cross-validation.

    Attributes
    ----------
    index : int
        Fold number, from 0.
    test, val, train : tuple of str
        Subjects tested on, used for checkpoint choice, and trained on (disjoint, sorted).
    """

    index: int
    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "test": list(self.test),
            "val": list(self.val),
            "train": list(self.train),
        }


def subject_folds(
    subject_epochs: Mapping[str, int], n_folds: int = 5, *, n_val: int = 2, seed: int = 0
) -> list[Fold]:
    """Split subjects into folds balanced by their number of scored epochs, deterministically.

    Subjects are shuffled with ``seed`` (so that ties are broken at random but reproducibly), sorted by
    decreasing epoch count, and each goes to the fold with the fewest epochs so far (the longest-first
    greedy partition). Inside each fold, ``n_val`` of the training subjects, drawn with ``seed`` and the
    fold number, are held out for validation (checkpoint choice).

    Parameters
    ----------
    subject_epochs : mapping of str to int
        Scored epochs of every subject (all its records together).
    n_folds : int
        Number of folds (5); every subject is tested in exactly one.
    n_val : int
        Validation subjects per fold (2).
    seed : int
        Seed of the tie-breaking and of the validation draw.

    Returns
    -------
    list of Fold

    Raises
    ------
    ValueError
        When there are too few subjects for the folds and the validation subjects.
    """
    subjects = sorted(subject_epochs)
    if isinstance(n_folds, bool) or int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds: expected an integer >= 2, got {n_folds!r}")
    if n_val < 1:
        raise ValueError(f"n_val: expected at least 1 validation subject, got {n_val!r}")
    largest_test = -(-len(subjects) // n_folds)
    if len(subjects) - largest_test - n_val < 1:
        raise ValueError(
            f"{len(subjects)} subjects are too few for {n_folds} folds with {n_val} validation subject(s) "
            f"and at least one training subject each"
        )
    rng = np.random.default_rng(seed)
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    order.sort(key=lambda s: -int(subject_epochs[s]))  # stable: the shuffle breaks ties
    loads = [0] * n_folds
    members: list[list[str]] = [[] for _ in range(n_folds)]
    for subject in order:
        # fewest epochs first, then fewest subjects, then the lowest fold number
        target = min(range(n_folds), key=lambda f: (loads[f], len(members[f]), f))
        members[target].append(subject)
        loads[target] += int(subject_epochs[subject])
    folds = []
    for index, test in enumerate(members):
        rest = sorted(set(subjects) - set(test))
        fold_rng = np.random.default_rng([seed, index])
        val = sorted(rest[i] for i in fold_rng.choice(len(rest), size=n_val, replace=False))
        train = sorted(set(rest) - set(val))
        folds.append(Fold(index, tuple(sorted(test)), tuple(val), tuple(train)))
    return folds
