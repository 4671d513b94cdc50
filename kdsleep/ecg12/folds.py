"""Iterative stratification of multi-label data into folds (Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011).

Random folds of multi-label data leave rare classes absent from some folds. Iterative stratification
places the recordings of the rarest remaining label first, each into the fold that still lacks the most
recordings of that label, so every label is spread over the folds as evenly as its count allows. Phan et
al. (arXiv 2210.06297) split the PhysioNet/CinC 2020 data into 10 such folds. Records of one patient
(``groups``) are kept in one fold, so that no patient is both trained and tested on.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np

#: Number of folds of Phan et al.'s cross-validation.
N_FOLDS = 10


def iterative_stratification(
    labels: np.ndarray,
    n_folds: int = N_FOLDS,
    seed: int | np.random.Generator | None = 0,
    proportions: np.ndarray | None = None,
    groups: Sequence[Hashable] | np.ndarray | None = None,
) -> np.ndarray:
    """Assign each recording to a fold so that every label is spread evenly over the folds.

    Algorithm 1 of Sechidis et al. (2011): while recordings remain, take the label with the fewest
    remaining recordings (ties broken at random); give each of its recordings, in random order, to the
    fold that most lacks that label (ties: the fold that most lacks recordings overall, then at random);
    update what each fold lacks. Recordings without any label go last, each to the fold that most lacks
    recordings.

    With ``groups`` (e.g. the patient of each recording), the units placed are the groups: a group carries
    the union of its recordings' labels, and placing it takes from its fold as many recordings, overall and
    per label, as it holds. Every group lands in one fold. Groups of one recording give exactly the folds
    of ``groups=None``.

    Parameters
    ----------
    labels : array of bool or 0/1, shape (n_recordings, n_labels)
    n_folds : int
        Number of folds (10 in Phan et al.).
    seed : int, numpy Generator or None
        Seed of the tie-breaking; the same seed gives the same folds.
    proportions : array of float, shape (n_folds,), optional
        Desired share of each fold (equal shares by default).
    groups : sequence of hashable, shape (n_recordings,), optional
        Group of each recording; recordings of a group are never split over folds.

    Returns
    -------
    ndarray of int, shape (n_recordings,)
        Fold index (0 to n_folds - 1) of each recording.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (n_recordings, n_labels), got {labels.shape}")
    if labels.dtype != bool:
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError("labels must hold only 0/1 or booleans")
        labels = labels.astype(bool)
    n_recordings, n_labels = labels.shape
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if proportions is None:
        proportions = np.full(n_folds, 1.0 / n_folds)
    proportions = np.asarray(proportions, dtype=np.float64)
    if proportions.shape != (n_folds,) or np.any(proportions < 0) or not np.isclose(proportions.sum(), 1.0):
        raise ValueError(f"proportions must be {n_folds} non-negative shares summing to 1, got {proportions}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # Units placed: recordings, or groups of them. unit_counts: recordings of each label in a unit.
    if groups is None:
        unit_of = np.arange(n_recordings)
        unit_counts = labels.astype(np.float64)
        unit_sizes = np.ones(n_recordings)
    else:
        unit_of = group_indices(groups)
        if unit_of.shape != (n_recordings,):
            raise ValueError(f"groups must give one group per recording ({n_recordings}), got {len(unit_of)}")
        n_units = int(unit_of.max()) + 1 if n_recordings else 0
        unit_counts = np.zeros((n_units, n_labels))
        np.add.at(unit_counts, unit_of, labels.astype(np.float64))
        unit_sizes = np.bincount(unit_of, minlength=n_units).astype(np.float64)
    unit_labels = unit_counts > 0
    n_units = unit_labels.shape[0]

    # What each fold still lacks, in recordings and in recordings of each label.
    wanted = n_recordings * proportions
    wanted_per_label = proportions[:, None] * labels.sum(axis=0)[None, :].astype(np.float64)
    unit_folds = np.full(n_units, -1, dtype=np.int64)
    remaining = unit_labels.copy()
    unassigned = np.ones(n_units, dtype=bool)

    def best_fold(candidates: np.ndarray) -> int:
        """Fold among ``candidates`` that most lacks recordings, ties at random."""
        top = candidates[wanted[candidates] == wanted[candidates].max()]
        return int(top[rng.integers(top.size)]) if top.size > 1 else int(top[0])

    while True:
        counts = remaining.sum(axis=0)
        active = np.flatnonzero(counts > 0)
        if active.size == 0:
            break
        rarest = active[counts[active] == counts[active].min()]
        label = int(rarest[rng.integers(rarest.size)]) if rarest.size > 1 else int(rarest[0])
        members = np.flatnonzero(remaining[:, label])
        for i in rng.permutation(members):
            lack = wanted_per_label[:, label]
            fold = best_fold(np.flatnonzero(lack == lack.max()))
            unit_folds[i] = fold
            unassigned[i] = False
            wanted[fold] -= unit_sizes[i]
            wanted_per_label[fold] -= unit_counts[i]
            remaining[i] = False

    for i in rng.permutation(np.flatnonzero(unassigned)):
        fold = best_fold(np.arange(n_folds))
        unit_folds[i] = fold
        wanted[fold] -= unit_sizes[i]
    return unit_folds[unit_of]


def group_indices(groups: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Index of each recording's group, numbered in order of first appearance."""
    index: dict[Hashable, int] = {}
    return np.asarray([index.setdefault(g, len(index)) for g in groups], dtype=np.int64)


def groups_split_across_folds(folds: np.ndarray, groups: Sequence[Hashable] | np.ndarray) -> list[Hashable]:
    """Groups whose recordings lie in more than one fold (empty when the folds respect the groups)."""
    seen: dict[Hashable, set[int]] = {}
    for g, f in zip(groups, np.asarray(folds).tolist(), strict=True):
        seen.setdefault(g, set()).add(f)
    return [g for g, fs in seen.items() if len(fs) > 1]


def cv_splits(
    folds: np.ndarray, n_folds: int | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Train, validation and test indices of each cross-validation round.

    Round k tests on fold k and validates on fold (k + 1) mod n_folds (where decision thresholds and
    checkpoints are chosen, never on the test fold); the other folds train.

    Parameters
    ----------
    folds : array of int, shape (n_recordings,)
        Output of :func:`iterative_stratification`.
    n_folds : int, optional
        Number of folds (``folds.max() + 1`` by default).

    Yields
    ------
    test_fold : int
    train, validation, test : ndarray of int
        Recording indices.
    """
    folds = np.asarray(folds)
    if n_folds is None:
        n_folds = int(folds.max()) + 1
    if n_folds < 3:
        raise ValueError(f"train, validation and test folds need n_folds >= 3, got {n_folds}")
    if folds.min() < 0 or folds.max() >= n_folds:
        raise ValueError(f"fold indices must be in [0, {n_folds})")
    for k in range(n_folds):
        validation_fold = (k + 1) % n_folds
        test = np.flatnonzero(folds == k)
        validation = np.flatnonzero(folds == validation_fold)
        train = np.flatnonzero((folds != k) & (folds != validation_fold))
        yield k, train, validation, test


def label_counts_per_fold(labels: np.ndarray, folds: np.ndarray, n_folds: int | None = None) -> np.ndarray:
    """Recordings of each label in each fold, shape (n_folds, n_labels)."""
    labels = np.asarray(labels).astype(bool)
    folds = np.asarray(folds)
    n_folds = int(folds.max()) + 1 if n_folds is None else n_folds
    return np.stack([labels[folds == k].sum(axis=0) for k in range(n_folds)])


def label_distribution_deviation(labels: np.ndarray, folds: np.ndarray, n_folds: int | None = None) -> float:
    """Mean over labels and folds of |count in fold - count / n_folds| / (count / n_folds).

    A measure of how unevenly the labels are spread (0 when each fold holds exactly its share); labels
    without recordings are left out.
    """
    labels = np.asarray(labels).astype(bool)
    counts = label_counts_per_fold(labels, folds, n_folds)
    expected = labels.sum(axis=0) / counts.shape[0]
    present = expected > 0
    return float(np.mean(np.abs(counts[:, present] - expected[present]) / expected[present]))
