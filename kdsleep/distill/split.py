"""Subject-wise train / validation / test split (80:10:10 in Joshi et al.), seeded and saved as JSON.

All recordings of a subject land in the same part, so no subject is seen in training and in testing. The
split file of a run can be passed to later runs (``--split FILE``) so that variants trained separately are
compared on the same subjects.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep._io import write_json_atomic

__all__ = ["SPLIT_FORMAT", "EmptySplitError", "SubjectSplit", "load_split", "split_subjects"]

SPLIT_FORMAT = "kdsleep-split"
PARTS = ("train", "val", "test")


class EmptySplitError(ValueError):
    """A split part without subjects (too few subjects for the fractions)."""


@dataclass(frozen=True)
class SubjectSplit:
    """Subjects and recording keys of each part.

    Attributes
    ----------
    subjects : mapping of part to list of str
        ``train``, ``val`` and ``test`` subject ids.
    recordings : mapping of subject to list of str
        Recording keys (cache keys) of every subject.
    seed : int
        Seed that drew the split.
    fractions : tuple of float
        Requested fractions.
    """

    subjects: Mapping[str, list[str]]
    recordings: Mapping[str, list[str]]
    seed: int
    fractions: tuple[float, float, float]

    def keys(self, part: str) -> list[str]:
        """Recording keys of ``part`` (``train``, ``val`` or ``test``)."""
        if part not in PARTS:
            raise ValueError(f"split part must be one of {PARTS}, got {part!r}")
        return [key for subject in self.subjects[part] for key in self.recordings[subject]]

    def to_dict(self) -> dict:
        return {
            "format": SPLIT_FORMAT,
            "format_version": 1,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "subjects": {part: list(self.subjects[part]) for part in PARTS},
            "recordings": {s: list(k) for s, k in sorted(self.recordings.items())},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split as JSON (atomically)."""
        return write_json_atomic(path, self.to_dict())

    def check_available(self, available: Sequence[str], source: str) -> None:
        """Raise when a recording of the split is missing from ``available`` (e.g. another dataset)."""
        missing = sorted(set(k for part in PARTS for k in self.keys(part)) - set(available))
        if missing:
            raise ValueError(
                f"{source}: the split names {len(missing)} recording(s) not in the data, e.g. {missing[:3]}; "
                f"was it written for another dataset?"
            )


def _part_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    # Validation and test get their rounded share (at least one subject each when their fraction is > 0);
    # training keeps the rest, so that the sizes always add up to n.
    n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    return n - n_val - n_test, n_val, n_test


def split_subjects(
    recordings: Mapping[str, str],
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    source: str = "dataset",
) -> SubjectSplit:
    """Split subjects at random into train / validation / test.

    Parameters
    ----------
    recordings : mapping of recording key to subject id
        Every recording and its subject (a subject may have several nights).
    fractions : sequence of three float
        Train, validation and test fractions (0.8, 0.1, 0.1 in the paper).
    seed : int
        Seed of the shuffle; the same subjects and seed give the same split.
    source : str
        Name of the data, for error messages.

    Raises
    ------
    EmptySplitError
        When a part would hold no subject (e.g. fewer than three subjects for 80:10:10).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )
    by_subject: dict[str, list[str]] = {}
    for key, subject in sorted(recordings.items()):
        by_subject.setdefault(str(subject), []).append(key)
    subjects = sorted(by_subject)
    n = len(subjects)
    n_train, n_val, n_test = _part_sizes(n, fractions)
    if n_train < 1 or (fractions[1] > 0 and n_val < 1) or (fractions[2] > 0 and n_test < 1):
        needed = sum(1 for f in fractions if f > 0)
        raise EmptySplitError(
            f"{source}: {n} subject(s) cannot be split {':'.join(f'{round(100 * f)}' for f in fractions)} into "
            f"train / validation / test with at least one subject in each part; at least {max(needed, 3)} "
            f"subjects are needed"
        )
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [subjects[i] for i in order]
    parts = {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train : n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val :]),
    }
    return SubjectSplit(parts, by_subject, int(seed), tuple(float(f) for f in fractions))  # type: ignore[arg-type]


def load_split(path: str | os.PathLike[str]) -> SubjectSplit:
    """Read a split written by :meth:`SubjectSplit.save`.

    Raises
    ------
    ValueError
        For a file that is not a kdsleep split, or one with an empty part.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: split file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON split file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path}: not a kdsleep split file (no format marker {SPLIT_FORMAT!r})")
    subjects = data.get("subjects", {})
    for part in PARTS:
        if not subjects.get(part):
            raise EmptySplitError(f"{path}: the {part!r} part of the split has no subjects")
    recordings = data.get("recordings", {})
    unknown = sorted(s for part in PARTS for s in subjects[part] if s not in recordings)
    if unknown:
        raise ValueError(f"{path}: subjects {unknown[:3]} have no recordings listed")
    fractions = tuple(data.get("fractions", (math.nan,) * 3))
    return SubjectSplit(
        {p: list(subjects[p]) for p in PARTS},
        recordings,
        int(data.get("seed", 0)),
        fractions,  # type: ignore[arg-type]
    )
