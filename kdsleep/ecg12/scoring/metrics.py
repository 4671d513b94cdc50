"""The official metrics of the PhysioNet/CinC Challenge 2020.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdsleep.ecg12.scoring.tables import ScoringTables

__all__ = [
    "ChallengeScores",
    "accuracy",
    "auroc_auprc",
    "beta_measures",
    "challenge_metric",
    "evaluate",
    "f_measure",
    "modified_confusion_matrix",
]


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
