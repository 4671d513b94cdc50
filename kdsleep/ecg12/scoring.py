"""Scoring tables and the official metrics of the PhysioNet/CinC Challenge 2020.

The challenge scores 27 SNOMED CT codes, three pairs of which are scored as the same diagnosis, so that
the classifiers work in a space of 24 classes. Which codes are scored, which are equivalent and how much
partial credit each confusion earns all come from the challenge's tables (``weights.csv`` and
``dx_mapping_scored.csv``), read from a folder the user names; nothing here is hard-coded but the SNOMED
CT code of normal sinus rhythm, which the tables do not single out.

The metrics follow the definitions of the challenge's evaluation (Perez Alday et al., Physiol. Meas. 2020):

- challenge metric: for each recording, one unit of credit is spread over the classes positive in its
  labels or its outputs (divided by the size of their union); a label j predicted as k earns
  ``weights[j, k]`` of that share; the total is rescaled so that perfect outputs score 1 and outputs that
  always say "normal sinus rhythm" score 0;
- accuracy: the fraction of recordings whose whole label set is predicted exactly;
- macro F-measure: per-class ``2 TP / (2 TP + FP + FN)``, averaged over the classes where it is defined;
- macro F-beta and G-beta (beta = 2): per-class ``(1 + b^2) TP / ((1 + b^2) TP + FP + b^2 FN)`` and
  ``TP / (TP + FP + b FN)``, each recording's counts divided by its number of positive labels;
- macro AUROC and AUPRC of the scalar outputs: the ROC curve integrated with trapezoids and the
  precision-recall curve as a step function (precision at each distinct threshold times the recall gained).

Classes where a figure is undefined (e.g. AUROC of a class with no positive recording) are left out of
the macro average, as the official evaluation does.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdsleep._io import write_text_atomic

logger = logging.getLogger(__name__)

#: SNOMED CT code of normal sinus rhythm, the "always normal" reference of the challenge metric.
NORMAL_SINUS_RHYTHM = "426783006"

WEIGHTS_FILE = "weights.csv"
SCORED_MAPPING_FILE = "dx_mapping_scored.csv"
UNSCORED_MAPPING_FILE = "dx_mapping_unscored.csv"

_SNOMED_CODE = re.compile(r"^\d+$")
# "We score 713427006 and 59118001 as the same diagnosis." in the Notes column of dx_mapping_scored.csv
_SAME_DIAGNOSIS_NOTE = re.compile(r"(\d+)\s+and\s+(\d+)\s+as the same diagnosis", re.IGNORECASE)

POSITIVE_TOKENS = frozenset({"1", "True", "true", "T", "t"})
NEGATIVE_TOKENS = frozenset({"0", "False", "false", "F", "f"})


class ScoringTableError(ValueError):
    """A scoring table is missing or does not have the layout of the challenge's tables."""


class ChallengeOutputError(ValueError):
    """A classifier output file does not follow the challenge's output format."""


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------


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
            if not _SNOMED_CODE.match(code):
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
        if code_col >= len(row) or not _SNOMED_CODE.match(row[code_col]):
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
            unscored = frozenset(r[col] for r in rows[1:] if col < len(r) and _SNOMED_CODE.match(r[col]))

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


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def _as_binary(name: str, x: np.ndarray | Sequence) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_recordings, n_classes), got {x.shape}")
    if x.dtype != bool:
        if not np.all(np.isin(x, (0, 1))):
            raise ValueError(f"{name} must hold only 0/1 or booleans")
        x = x.astype(bool)
    return x


def _check_pair(labels: np.ndarray, outputs: np.ndarray, outputs_name: str = "outputs") -> None:
    if labels.shape != outputs.shape:
        raise ValueError(f"labels {labels.shape} and {outputs_name} {outputs.shape} must have the same shape")
    if labels.shape[0] == 0:
        raise ValueError("no recordings to score")


def modified_confusion_matrix(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Multi-label confusion matrix of the challenge metric (rows: labels, columns: outputs).

    Every recording contributes ``1 / |labels ∪ outputs|`` to each pair (j, k) with label j and output k
    both positive.

    Parameters
    ----------
    labels, outputs : array of bool, shape (n_recordings, n_classes)

    Returns
    -------
    ndarray, shape (n_classes, n_classes)
    """
    labels = _as_binary("labels", labels)
    outputs = _as_binary("outputs", outputs)
    _check_pair(labels, outputs)
    union = np.maximum(np.sum(labels | outputs, axis=1), 1).astype(np.float64)
    return (labels / union[:, None]).T @ outputs.astype(np.float64)


def challenge_metric(
    labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray, normal_index: int
) -> float:
    """The official 2020 challenge metric.

    ``(observed - inactive) / (correct - inactive)``, where each score is the sum of ``weights`` times the
    :func:`modified_confusion_matrix` of the outputs (observed), of the labels themselves (correct) and of
    outputs that always say normal sinus rhythm (inactive). 0 when correct equals inactive.

    Parameters
    ----------
    labels, outputs : array of bool, shape (n_recordings, n_classes)
        Labels and binary outputs over the merged classes (equivalent codes already merged).
    weights : ndarray, shape (n_classes, n_classes)
        :attr:`ScoringTables.weights`.
    normal_index : int
        Column of normal sinus rhythm (:attr:`ScoringTables.normal_index`).

    Returns
    -------
    float
        1 for perfect outputs, 0 for always-normal outputs; can be negative.
    """
    labels = _as_binary("labels", labels)
    outputs = _as_binary("outputs", outputs)
    _check_pair(labels, outputs)
    weights = np.asarray(weights, dtype=np.float64)
    n_classes = labels.shape[1]
    if weights.shape != (n_classes, n_classes):
        raise ValueError(f"weights must have shape ({n_classes}, {n_classes}), got {weights.shape}")
    if not 0 <= normal_index < n_classes:
        raise ValueError(f"normal_index must be in [0, {n_classes}), got {normal_index}")
    inactive_outputs = np.zeros_like(labels)
    inactive_outputs[:, normal_index] = True
    observed = np.nansum(weights * modified_confusion_matrix(labels, outputs))
    correct = np.nansum(weights * modified_confusion_matrix(labels, labels))
    inactive = np.nansum(weights * modified_confusion_matrix(labels, inactive_outputs))
    if correct == inactive:
        return 0.0
    return float((observed - inactive) / (correct - inactive))


def accuracy(labels: np.ndarray, outputs: np.ndarray) -> float:
    """Fraction of recordings whose binary outputs equal their labels on every class."""
    labels = _as_binary("labels", labels)
    outputs = _as_binary("outputs", outputs)
    _check_pair(labels, outputs)
    return float(np.mean(np.all(labels == outputs, axis=1)))


def _counts(labels: np.ndarray, outputs: np.ndarray, per_recording: np.ndarray | None = None):
    w = np.ones(labels.shape[0]) if per_recording is None else per_recording
    w = w[:, None]
    tp = np.sum(w * (labels & outputs), axis=0)
    fp = np.sum(w * (~labels & outputs), axis=0)
    fn = np.sum(w * (labels & ~outputs), axis=0)
    return tp, fp, fn


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else math.nan


def f_measure(labels: np.ndarray, outputs: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro F-measure and per-class F1, ``2 TP / (2 TP + FP + FN)`` (NaN where undefined)."""
    labels = _as_binary("labels", labels)
    outputs = _as_binary("outputs", outputs)
    _check_pair(labels, outputs)
    tp, fp, fn = _counts(labels, outputs)
    per_class = _safe_ratio(2 * tp, 2 * tp + fp + fn)
    return _nanmean(per_class), per_class


def beta_measures(labels: np.ndarray, outputs: np.ndarray, beta: float = 2.0) -> tuple[float, float]:
    """Macro F-beta and G-beta of the challenge's unofficial phase (beta = 2 in the challenge).

    Each recording's contribution to TP, FP and FN is divided by its number of positive labels (at least 1).
    """
    labels = _as_binary("labels", labels)
    outputs = _as_binary("outputs", outputs)
    _check_pair(labels, outputs)
    per_recording = 1.0 / np.maximum(np.sum(labels, axis=1), 1)
    tp, fp, fn = _counts(labels, outputs, per_recording)
    b2 = beta**2
    f_beta = _safe_ratio((1 + b2) * tp, (1 + b2) * tp + fp + b2 * fn)
    g_beta = _safe_ratio(tp, tp + fp + beta * fn)
    return _nanmean(f_beta), _nanmean(g_beta)


def _class_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUROC (trapezoids over TPR vs TNR) and AUPRC (step function) of one class."""
    n_pos = int(np.sum(labels))
    n_neg = labels.size - n_pos
    if n_pos == 0:
        return math.nan, math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Operating points at each distinct score, from the highest threshold down; the first point predicts
    # nothing positive.
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    tp = np.r_[0, np.cumsum(sorted_labels)[last_of_group]].astype(np.float64)
    fp = np.r_[0, np.cumsum(~sorted_labels)[last_of_group]].astype(np.float64)
    tpr = tp / n_pos
    auprc = float(np.sum(np.diff(tpr) * tp[1:] / (tp[1:] + fp[1:])))
    if n_neg == 0:
        return math.nan, auprc
    tnr = 1.0 - fp / n_neg
    auroc = float(np.sum(0.5 * np.diff(tpr) * (tnr[1:] + tnr[:-1])))
    return auroc, auprc


def auroc_auprc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Macro and per-class AUROC and AUPRC of scalar outputs.

    Parameters
    ----------
    labels : array of bool, shape (n_recordings, n_classes)
    scores : array of float, shape (n_recordings, n_classes)
        Scalar outputs (probabilities); NaN is read as 0, as the official evaluation does.

    Returns
    -------
    macro_auroc, macro_auprc : float
    auroc, auprc : ndarray, shape (n_classes,)
        NaN for a class without positive recordings (AUROC also without negative recordings).
    """
    labels = _as_binary("labels", labels)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    _check_pair(labels, scores, "scores")
    n_classes = labels.shape[1]
    auroc = np.empty(n_classes)
    auprc = np.empty(n_classes)
    for k in range(n_classes):
        auroc[k], auprc[k] = _class_auc(labels[:, k], scores[:, k])
    return _nanmean(auroc), _nanmean(auprc), auroc, auprc


@dataclass(frozen=True, eq=False)
class ChallengeScores:
    """All figures of the official 2020 evaluation, plus per-class ones.

    Attributes
    ----------
    auroc, auprc, accuracy, f_measure, f_beta, g_beta, challenge_metric : float
        The seven figures the official evaluation prints, in that order.
    classes : tuple of str
        Representative codes of the merged classes the per-class figures refer to.
    auroc_per_class, auprc_per_class, f_measure_per_class : ndarray, shape (n_classes,)
    n_recordings : int
    """

    auroc: float
    auprc: float
    accuracy: float
    f_measure: float
    f_beta: float
    g_beta: float
    challenge_metric: float
    classes: tuple[str, ...]
    auroc_per_class: np.ndarray
    auprc_per_class: np.ndarray
    f_measure_per_class: np.ndarray
    n_recordings: int

    HEADER = "AUROC,AUPRC,Accuracy,F-measure,Fbeta-measure,Gbeta-measure,Challenge metric"

    def summary(self) -> str:
        """The two lines the official evaluation prints (names, then values with three decimals)."""
        values = (
            self.auroc,
            self.auprc,
            self.accuracy,
            self.f_measure,
            self.f_beta,
            self.g_beta,
            self.challenge_metric,
        )
        return self.HEADER + "\n" + ",".join(f"{v:.3f}" for v in values)

    def class_summary(self) -> str:
        """Per-class AUROC, AUPRC and F-measure in the layout of the official ``class_scores.csv``."""

        def row(name: str, values: np.ndarray) -> str:
            return name + "," + ",".join(f"{v:.3f}" for v in values)

        return "\n".join(
            [
                "Classes," + ",".join(self.classes),
                row("AUROC", self.auroc_per_class),
                row("AUPRC", self.auprc_per_class),
                row("F-measure", self.f_measure_per_class),
            ]
        )


def evaluate(
    labels: np.ndarray,
    binary_outputs: np.ndarray,
    scalar_outputs: np.ndarray,
    tables: ScoringTables,
    beta: float = 2.0,
) -> ChallengeScores:
    """Every figure of the official evaluation, on arrays over ``tables.classes``.

    Parameters
    ----------
    labels : array of bool, shape (n_recordings, tables.n_classes)
    binary_outputs : array of bool, shape (n_recordings, tables.n_classes)
    scalar_outputs : array of float, shape (n_recordings, tables.n_classes)
    tables : ScoringTables
    beta : float
        Beta of the F-beta and G-beta measures (2 in the challenge).
    """
    labels = _as_binary("labels", labels)
    binary_outputs = _as_binary("binary_outputs", binary_outputs)
    if labels.shape[1] != tables.n_classes:
        raise ValueError(f"labels have {labels.shape[1]} classes, the scoring tables {tables.n_classes}")
    macro_auroc, macro_auprc, auroc, auprc = auroc_auprc(labels, scalar_outputs)
    macro_f, f_per_class = f_measure(labels, binary_outputs)
    f_beta, g_beta = beta_measures(labels, binary_outputs, beta)
    return ChallengeScores(
        auroc=macro_auroc,
        auprc=macro_auprc,
        accuracy=accuracy(labels, binary_outputs),
        f_measure=macro_f,
        f_beta=f_beta,
        g_beta=g_beta,
        challenge_metric=challenge_metric(labels, binary_outputs, tables.weights, tables.normal_index),
        classes=tables.classes,
        auroc_per_class=auroc,
        auprc_per_class=auprc,
        f_measure_per_class=f_per_class,
        n_recordings=labels.shape[0],
    )


# ---------------------------------------------------------------------------------------------------------
# Output files of the challenge
# ---------------------------------------------------------------------------------------------------------


def write_challenge_output(
    path: str | os.PathLike,
    record_name: str,
    classes: Sequence[str],
    binary_outputs: Sequence,
    scalar_outputs: Sequence,
) -> None:
    """Write one recording's outputs in the challenge's format (written atomically).

    Line 1 ``#record_name``, line 2 the class codes, line 3 the binary outputs (0/1), line 4 the
    probabilities.
    """
    binary = np.asarray(binary_outputs).ravel()
    scalar = np.asarray(scalar_outputs, dtype=np.float64).ravel()
    if not len(classes) == binary.size == scalar.size:
        raise ValueError(
            f"{len(classes)} classes, {binary.size} binary outputs and {scalar.size} probabilities: "
            "they must be as many"
        )
    lines = [
        f"#{record_name}",
        ",".join(str(c) for c in classes),
        ",".join("1" if b else "0" for b in binary),
        ",".join(f"{s:.6g}" for s in scalar),
    ]
    write_text_atomic(Path(path), "\n".join(lines) + "\n")


def read_challenge_output(
    path: str | os.PathLike, tables: ScoringTables, strict: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read one output file of the challenge's format onto ``tables.classes``.

    Blank lines and lines starting with ``#`` are skipped; the next three lines hold the class codes, the
    binary outputs and the probabilities, comma-separated. Codes that are not scored are ignored; classes
    the file does not name are negative with probability 0. Equivalent codes are merged: positive if any is
    positive, mean probability. NaN probabilities count as 0.

    Parameters
    ----------
    path : path
    tables : ScoringTables
    strict : bool
        When True (default), formatting errors raise :class:`ChallengeOutputError`. When False, they are
        logged and the file is read as all-negative, and unrecognised binary or probability entries as 0,
        as the official evaluation does.

    Returns
    -------
    binary : ndarray of bool, shape (tables.n_classes,)
    scalar : ndarray of float, shape (tables.n_classes,)
    """
    path = Path(path)
    binary = np.zeros(tables.n_classes, dtype=bool)
    scalar = np.zeros(tables.n_classes, dtype=np.float64)

    def fail(message: str) -> tuple[np.ndarray, np.ndarray]:
        if strict:
            raise ChallengeOutputError(f"{path}: {message}")
        logger.warning("%s: %s; all outputs of this recording are read as negative", path, message)
        return binary, scalar

    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise ChallengeOutputError(f"{path}: output file not found") from None
    except UnicodeDecodeError:
        return fail("not a text file")
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    content = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if len(content) < 3:
        return fail(
            f"expected 3 lines after '#record' (class codes, binary outputs, probabilities), found {len(content)}"
        )
    if strict and len(content) > 3:
        return fail(f"line {content[3][0]}: unexpected fourth line of outputs")
    fields = [[cell.strip() for cell in line.split(",")] for _, line in content[:3]]
    if len({len(row) for row in fields}) != 1:
        return fail(
            "the lines of class codes, binary outputs and probabilities have "
            f"{len(fields[0])}, {len(fields[1])} and {len(fields[2])} fields; they must be as many"
        )
    codes, binary_tokens, scalar_tokens = fields
    for k, code in enumerate(codes):
        if not _SNOMED_CODE.match(code) and strict:
            return fail(f"line {content[0][0]}, field {k + 1}: class {code!r} is not a SNOMED CT code")
    binary_values = []
    for k, token in enumerate(binary_tokens):
        if token in POSITIVE_TOKENS:
            binary_values.append(True)
        elif token in NEGATIVE_TOKENS or not strict:
            binary_values.append(False)
        else:
            return fail(
                f"line {content[1][0]}, field {k + 1} ({codes[k]}): binary output {token!r} is not 0 or 1"
            )
    scalar_values = []
    for k, token in enumerate(scalar_tokens):
        try:
            scalar_values.append(float(token))
        except ValueError:
            if strict:
                return fail(
                    f"line {content[2][0]}, field {k + 1} ({codes[k]}): probability {token!r} is not a number"
                )
            scalar_values.append(0.0)

    index = {cls: i for i, cls in enumerate(tables.classes)}
    collected: dict[int, list[float]] = {}
    for code, b, s in zip(codes, binary_values, scalar_values, strict=True):
        rep = tables.representative.get(code)
        if rep is None:
            continue
        i = index[rep]
        binary[i] |= b
        collected.setdefault(i, []).append(s)
    for i, values in collected.items():
        arr = np.asarray(values)
        scalar[i] = float(np.mean(arr[~np.isnan(arr)])) if np.any(~np.isnan(arr)) else 0.0
    return binary, scalar
