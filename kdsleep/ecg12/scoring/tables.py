"""The scoring tables of the PhysioNet/CinC Challenge 2020.

The challenge scores 27 SNOMED CT codes, three pairs of which are scored as the same diagnosis, so that
the classifiers work in a space of 24 classes. Which codes are scored, which are equivalent and how much
partial credit each confusion earns all come from the challenge's tables (``weights.csv`` and
``dx_mapping_scored.csv``), read from a folder the user names; nothing here is hard-coded but the SNOMED
CT code of normal sinus rhythm, which the tables do not single out.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "NORMAL_SINUS_RHYTHM",
    "SCORED_MAPPING_FILE",
    "SNOMED_CODE",
    "UNSCORED_MAPPING_FILE",
    "WEIGHTS_FILE",
    "ScoringTableError",
    "ScoringTables",
    "load_scoring_tables",
]

#: SNOMED CT code of normal sinus rhythm, the "always normal" reference of the challenge metric.
NORMAL_SINUS_RHYTHM = "426783006"

WEIGHTS_FILE = "weights.csv"
SCORED_MAPPING_FILE = "dx_mapping_scored.csv"
UNSCORED_MAPPING_FILE = "dx_mapping_unscored.csv"

#: A SNOMED CT code: digits only.
SNOMED_CODE = re.compile(r"^\d+$")
# "We score 713427006 and 59118001 as the same diagnosis." in the Notes column of dx_mapping_scored.csv
_SAME_DIAGNOSIS_NOTE = re.compile(r"(\d+)\s+and\s+(\d+)\s+as the same diagnosis", re.IGNORECASE)


class ScoringTableError(ValueError):
    """A scoring table is missing or does not have the layout of the challenge's tables."""


@dataclass(frozen=True, eq=False)
class ScoringTables:
    """The challenge's scored classes, their equivalences and the weight matrix.

    Attributes
    ----------
    scored_codes : tuple of str
        Every scored SNOMED CT code, in the order of ``weights.csv`` (27 in 2020).
    classes : tuple of str
        The representative code of each scored class after merging equivalent codes (24 in 2020): the
        first code of each equivalence group in the order of ``weights.csv``, as the official evaluation
        does.
    representative : dict of str to str
        Maps every scored code to the representative code of its class.
    weights : ndarray, shape (n_classes, n_classes)
        Credit earned when a label of class j is predicted as class k (rows: labels, columns: outputs).
    normal_class : str
        Representative code of normal sinus rhythm.
    abbreviations : dict of str to str
        Abbreviation of each scored code (``AF``, ``NSR``...) from ``dx_mapping_scored.csv``.
    unscored_codes : frozenset of str
        Codes listed in ``dx_mapping_unscored.csv`` when that file is present (empty otherwise).
    """

    scored_codes: tuple[str, ...]
    classes: tuple[str, ...]
    representative: dict[str, str]
    weights: np.ndarray
    normal_class: str
    abbreviations: dict[str, str] = field(default_factory=dict)
    unscored_codes: frozenset[str] = frozenset()

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def normal_index(self) -> int:
        return self.classes.index(self.normal_class)

    @property
    def equivalent_groups(self) -> list[tuple[str, ...]]:
        """Groups of two or more scored codes scored as one class, representative first."""
        groups: dict[str, list[str]] = {}
        for code in self.scored_codes:
            groups.setdefault(self.representative[code], []).append(code)
        return [tuple(codes) for codes in groups.values() if len(codes) > 1]

    def class_names(self) -> list[str]:
        """Abbreviations of the merged classes (``"CRBBB|RBBB"`` for a merged pair)."""
        names = []
        for cls in self.classes:
            members = [c for c in self.scored_codes if self.representative[c] == cls]
            names.append("|".join(self.abbreviations.get(c, c) for c in members))
        return names

    def encode(self, codes: Iterable[str]) -> np.ndarray:
        """Multi-hot vector over :attr:`classes` for a list of SNOMED CT codes.

        Codes that are not scored are ignored; equivalent codes set their common class.
        """
        index = {cls: i for i, cls in enumerate(self.classes)}
        labels = np.zeros(self.n_classes, dtype=bool)
        for code in codes:
            rep = self.representative.get(str(code).strip())
            if rep is not None:
                labels[index[rep]] = True
        return labels

    def encode_many(self, code_lists: Iterable[Iterable[str]]) -> np.ndarray:
        """Label matrix, shape (n_recordings, n_classes), one row per list of codes."""
        rows = [self.encode(codes) for codes in code_lists]
        if not rows:
            return np.zeros((0, self.n_classes), dtype=bool)
        return np.stack(rows)


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [[cell.strip() for cell in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise ScoringTableError(
            f"{path}: scoring table not found (expected the challenge's {path.name} in the scoring folder)"
        ) from None


def _read_weights(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """Read ``weights.csv``: a square table whose header row and first column name the same codes.

    Each name is one code, or several codes joined by ``|`` (the layout of the 2021 tables, where a merged
    pair has one row).
    """
    rows = _read_csv_rows(path)
    if len(rows) < 2:
        raise ScoringTableError(f"{path}: expected a header row of SNOMED CT codes and one row per code")
    column_names = rows[0][1:]
    row_names = [row[0] for row in rows[1:]]
    if column_names != row_names:
        raise ScoringTableError(
            f"{path}: the header row and the first column must name the same codes in the same order "
            f"(header {column_names[:3]}..., first column {row_names[:3]}...)"
        )
    n = len(column_names)
    values = np.empty((n, n), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != n + 1:
            raise ScoringTableError(
                f"{path}: row {i + 2} ({row[0]}) has {len(row) - 1} weights, expected {n}"
            )
        for j, cell in enumerate(row[1:]):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ScoringTableError(
                    f"{path}: row {row[0]}, column {column_names[j]}: weight {cell!r} is not a number"
                ) from None
    if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1):
        raise ScoringTableError(f"{path}: weights must be finite numbers between 0 and 1")
    groups = []
    for name in column_names:
        codes = [c.strip() for c in name.split("|")]
        for code in codes:
            if not SNOMED_CODE.match(code):
                raise ScoringTableError(f"{path}: class name {name!r} is not a SNOMED CT code")
        groups.append(codes)
    return groups, values


def load_scoring_tables(
    scoring_dir: str | os.PathLike, normal_class: str = NORMAL_SINUS_RHYTHM
) -> ScoringTables:
    """Read the challenge's scoring tables from a folder.

    Parameters
    ----------
    scoring_dir : path
        Folder holding ``weights.csv`` and ``dx_mapping_scored.csv`` (and optionally
        ``dx_mapping_unscored.csv``), as distributed with the challenge's evaluation code.
    normal_class : str
        SNOMED CT code of normal sinus rhythm (426783006 in the challenge).

    Returns
    -------
    ScoringTables

    Notes
    -----
    Two scored codes are taken as equivalent when ``weights.csv`` gives them full credit for each other
    (weight 1 off the diagonal, identical rows and columns) or joins them with ``|`` in one name. When the
    Notes column of ``dx_mapping_scored.csv`` names pairs "scored as the same diagnosis", they must agree.
    """
    scoring_dir = Path(scoring_dir)
    if not scoring_dir.is_dir():
        raise ScoringTableError(f"{scoring_dir}: scoring folder not found")
    weights_path = scoring_dir / WEIGHTS_FILE
    groups, values = _read_weights(weights_path)

    # Codes joined by "|" already form one class; codes with full mutual credit are merged too.
    n = len(groups)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if values[i, j] == 1.0 or values[j, i] == 1.0:
                if not (np.array_equal(values[i], values[j]) and np.array_equal(values[:, i], values[:, j])):
                    raise ScoringTableError(
                        f"{weights_path}: {'|'.join(groups[i])} and {'|'.join(groups[j])} give each other "
                        "full credit but their rows or columns differ; equivalent classes need identical weights"
                    )
                parent[find(j)] = find(i)
    keep = [i for i in range(n) if find(i) == i]
    scored_codes: list[str] = [code for g in groups for code in g]
    if len(set(scored_codes)) != len(scored_codes):
        raise ScoringTableError(f"{weights_path}: a SNOMED CT code is listed twice")
    representative = {}
    for i in range(n):
        rep = groups[find(i)][0]
        for code in groups[i]:
            representative[code] = rep
    classes = tuple(groups[i][0] for i in keep)
    weights = values[np.ix_(keep, keep)].copy()
    if not np.allclose(np.diag(weights), 1.0):
        raise ScoringTableError(f"{weights_path}: the diagonal (a class predicted as itself) must be 1")

    mapping_path = scoring_dir / SCORED_MAPPING_FILE
    mapping = _read_csv_rows(mapping_path)
    header = mapping[0] if mapping else []
    try:
        code_col = header.index("SNOMED CT Code")
    except ValueError:
        raise ScoringTableError(
            f"{mapping_path}: no 'SNOMED CT Code' column in the header row {header}"
        ) from None
    abbrev_col = header.index("Abbreviation") if "Abbreviation" in header else None
    notes_col = header.index("Notes") if "Notes" in header else None
    abbreviations: dict[str, str] = {}
    noted_pairs: set[frozenset[str]] = set()
    for line_no, row in enumerate(mapping[1:], start=2):
        if code_col >= len(row) or not SNOMED_CODE.match(row[code_col]):
            raise ScoringTableError(
                f"{mapping_path}: line {line_no}: field 'SNOMED CT Code' is not a code: {row}"
            )
        code = row[code_col]
        if abbrev_col is not None and abbrev_col < len(row):
            abbreviations[code] = row[abbrev_col]
        if notes_col is not None and notes_col < len(row):
            for a, b in _SAME_DIAGNOSIS_NOTE.findall(row[notes_col]):
                noted_pairs.add(frozenset((a, b)))
    if set(abbreviations) != set(scored_codes):
        missing = sorted(set(scored_codes) - set(abbreviations))
        extra = sorted(set(abbreviations) - set(scored_codes))
        raise ScoringTableError(
            f"{mapping_path} and {weights_path} disagree on the scored codes "
            f"(only in weights: {missing}; only in mapping: {extra})"
        )
    for pair in noted_pairs:
        a, b = sorted(pair)
        if representative.get(a) is None or representative.get(a) != representative.get(b):
            raise ScoringTableError(
                f"{mapping_path}: the notes score {a} and {b} as the same diagnosis but {weights_path} "
                "does not give them full mutual credit"
            )

    unscored: frozenset[str] = frozenset()
    unscored_path = scoring_dir / UNSCORED_MAPPING_FILE
    if unscored_path.is_file():
        rows = _read_csv_rows(unscored_path)
        if rows and "SNOMED CT Code" in rows[0]:
            col = rows[0].index("SNOMED CT Code")
            unscored = frozenset(r[col] for r in rows[1:] if col < len(r) and SNOMED_CODE.match(r[col]))

    if normal_class not in representative:
        raise ScoringTableError(f"{weights_path}: the normal class {normal_class} is not a scored code")
    return ScoringTables(
        scored_codes=tuple(scored_codes),
        classes=classes,
        representative=representative,
        weights=weights,
        normal_class=representative[normal_class],
        abbreviations=abbreviations,
        unscored_codes=unscored,
    )
