"""Sleep-staging metrics computed from confusion matrices that are accumulated batch by batch.

Every metric of Joshi et al. (weighted F1 and accuracy in Table I, per-class F1 in Table II) and the usual
extras (macro F1, Cohen's kappa) are functions of the confusion matrix, so predictions never need to be kept:
:class:`ConfusionMatrix` adds each batch into a K x K count matrix (on the device of the predictions, with no
growing buffers) and :func:`metrics_from_confusion` turns it into :class:`StagingMetrics`. Epochs labelled
``ignore_index`` (unscored, movement, padding) are left out everywhere.

Definitions follow scikit-learn with ``zero_division=0``: a class never predicted has precision 0, a class
with no true epoch has recall 0; weighted F1 weighs the per-class F1 by the true support; macro F1 averages
over the classes present in the labels or the predictions (scikit-learn's default label set). A class absent
from both has an undefined F1, reported as NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdsleep.data.stages import IGNORE_INDEX

__all__ = [
    "ConfusionMatrix",
    "StagingMetrics",
    "SubjectConfusion",
    "compute_metrics",
    "metric_by_subject",
    "metrics_from_confusion",
    "per_subject_metrics",
]

logger = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _nan_to_none(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


# eq=False: the array field makes generated equality ambiguous.
@dataclass(frozen=True, eq=False)
class StagingMetrics:
    """Agreement between scored and predicted sleep stages.

    Attributes
    ----------
    confusion : numpy.ndarray
        ``(K, K)`` counts; rows are the true classes, columns the predicted ones.
    class_names : tuple of str
        Name of each class (``"0"``, ``"1"``, ... when none were given).
    accuracy, weighted_f1, macro_f1, cohen_kappa : float
        Overall figures (Table I of Joshi et al. reports weighted F1 and accuracy).
    f1, precision, recall : tuple of float
        Per-class figures (Table II reports the per-class F1); F1 is NaN for a class absent from both the
        labels and the predictions.
    support : tuple of int
        Number of scored epochs of each true class.
    """

    confusion: np.ndarray
    class_names: tuple[str, ...]
    accuracy: float
    weighted_f1: float
    macro_f1: float
    cohen_kappa: float
    f1: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    support: tuple[int, ...]

    @property
    def n_epochs(self) -> int:
        """Number of scored epochs that were counted."""
        return int(self.confusion.sum())

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return len(self.class_names)

    def f1_by_class(self) -> dict[str, float]:
        """Per-class F1 keyed by class name."""
        return dict(zip(self.class_names, self.f1, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (NaN becomes ``None``)."""
        return {
            "class_names": list(self.class_names),
            "n_epochs": self.n_epochs,
            "accuracy": _nan_to_none([self.accuracy])[0],
            "weighted_f1": _nan_to_none([self.weighted_f1])[0],
            "macro_f1": _nan_to_none([self.macro_f1])[0],
            "cohen_kappa": _nan_to_none([self.cohen_kappa])[0],
            "f1": _nan_to_none(self.f1),
            "precision": _nan_to_none(self.precision),
            "recall": _nan_to_none(self.recall),
            "support": [int(s) for s in self.support],
            "confusion": self.confusion.astype(np.int64).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StagingMetrics:
        """Rebuild from :meth:`to_dict` output (the figures are recomputed from the confusion matrix)."""
        try:
            confusion = np.asarray(data["confusion"], dtype=np.int64)
            class_names = data.get("class_names")
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"metrics dictionary needs a 'confusion' matrix, got keys {list(data)}"
            ) from error
        return metrics_from_confusion(confusion, class_names)


def metrics_from_confusion(
    confusion: np.ndarray | torch.Tensor, class_names: Sequence[str] | None = None
) -> StagingMetrics:
    """All staging metrics from a confusion matrix.

    Parameters
    ----------
    confusion : array of shape (K, K)
        Counts with true classes in rows and predicted classes in columns.
    class_names : sequence of str or None
        K class names, e.g. ``("W", "L", "D", "R")``.

    Returns
    -------
    StagingMetrics

    Raises
    ------
    ValueError
        If the matrix is not square, has negative entries or counts no epoch at all.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("confusion matrix has negative counts")
    n_classes = counts.shape[0]
    names = tuple(str(i) for i in range(n_classes)) if class_names is None else tuple(map(str, class_names))
    if len(names) != n_classes:
        raise ValueError(
            f"{len(names)} class names {list(names)} given for a {n_classes}-class confusion matrix"
        )
    total = counts.sum()
    if total == 0:
        raise ValueError("no scored epochs to evaluate (every label is ignored or nothing was accumulated)")

    c = counts.astype(np.float64)
    true_positive = np.diag(c)
    support = c.sum(axis=1)
    predicted = c.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        # 2TP / (2TP + FP + FN) = 2TP / (support + predicted): identical to 2PR / (P + R) and defined at P = 0.
        f1 = np.where(support + predicted > 0, 2.0 * true_positive / (support + predicted), math.nan)
    present = (support + predicted) > 0
    accuracy = true_positive.sum() / total
    weighted_f1 = float(np.sum(np.nan_to_num(f1) * support) / support.sum())
    macro_f1 = float(np.mean(f1[present]))
    expected_agreement = float(np.sum(support * predicted) / total**2)
    # Perfect chance agreement (a single class everywhere) leaves kappa undefined, as in scikit-learn.
    cohen_kappa = (
        (accuracy - expected_agreement) / (1.0 - expected_agreement) if expected_agreement < 1 else math.nan
    )
    return StagingMetrics(
        confusion=counts.astype(np.int64),
        class_names=names,
        accuracy=float(accuracy),
        weighted_f1=weighted_f1,
        macro_f1=macro_f1,
        cohen_kappa=float(cohen_kappa),
        f1=tuple(float(v) for v in f1),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        support=tuple(int(v) for v in support),
    )


def _as_class_indices(
    target: ArrayLike, prediction: ArrayLike, device: torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    target_t = torch.as_tensor(target, device=device)
    prediction_t = torch.as_tensor(prediction, device=target_t.device)
    if prediction_t.is_floating_point():
        # Logits or probabilities with the class axis at dim 1, as returned by the model: (B, K, n_epochs).
        if prediction_t.dim() != target_t.dim() + 1:
            raise ValueError(
                f"floating-point predictions are read as scores of shape (batch, K, ...) for targets of shape "
                f"(batch, ...); got predictions {tuple(prediction_t.shape)} for targets {tuple(target_t.shape)}"
            )
        prediction_t = prediction_t.argmax(dim=1)
    if prediction_t.shape != target_t.shape:
        raise ValueError(
            f"predicted classes {tuple(prediction_t.shape)} and targets {tuple(target_t.shape)} must have the same shape"
        )
    if target_t.is_floating_point():
        raise ValueError(f"targets must be integer class indices, got dtype {target_t.dtype}")
    return target_t.reshape(-1).long(), prediction_t.reshape(-1).long()


class ConfusionMatrix:
    """A K x K confusion matrix accumulated across batches.

    Parameters
    ----------
    n_classes : int
        Number of classes K.
    class_names : sequence of str or None
        Names used by :meth:`compute`.
    ignore_index : int
        Target value of epochs to leave out (-1, as in the data layer).
    device : torch.device or str or None
        Where the counts live; by default the device of the first batch, so that accumulating GPU
        predictions needs no copy to the host.

    Examples
    --------
    >>> confusion = ConfusionMatrix(4, ("W", "L", "D", "R"))
    >>> for x, y in loader:  # doctest: +SKIP
    ...     confusion.update(y, model(x))  # logits (B, K, n_epochs), labels (B, n_epochs)
    >>> confusion.compute().weighted_f1  # doctest: +SKIP
    """

    def __init__(
        self,
        n_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(n_classes, bool) or int(n_classes) != n_classes or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(
                f"{len(class_names)} class names {list(class_names)} given for n_classes={n_classes}"
            )
        if 0 <= ignore_index < n_classes:
            raise ValueError(f"ignore_index={ignore_index} collides with a class index 0..{n_classes - 1}")
        self.n_classes = int(n_classes)
        self.class_names = None if class_names is None else tuple(map(str, class_names))
        self.ignore_index = int(ignore_index)
        self._counts: torch.Tensor | None = (
            None if device is None else torch.zeros(self.n_classes**2, dtype=torch.int64, device=device)
        )

    def reset(self) -> None:
        """Set all counts to zero."""
        if self._counts is not None:
            self._counts.zero_()

    @torch.no_grad()
    def update(self, target: ArrayLike, prediction: ArrayLike) -> None:
        """Add a batch.

        Parameters
        ----------
        target : array of int
            True classes, any shape (e.g. ``(batch, n_epochs)``); ``ignore_index`` marks epochs to skip.
        prediction : array
            Predicted classes of the same shape, or scores (logits or probabilities) with one more axis at
            dim 1 holding the K classes (e.g. ``(batch, K, n_epochs)``), reduced by argmax.

        Raises
        ------
        ValueError
            For mismatched shapes or class indices outside ``0..K-1``.
        """
        device = None if self._counts is None else self._counts.device
        target_t, prediction_t = _as_class_indices(target, prediction, device)
        k = self.n_classes
        scored = target_t != self.ignore_index
        out_of_range = scored & ((target_t < 0) | (target_t >= k) | (prediction_t < 0) | (prediction_t >= k))
        if bool(out_of_range.any()):
            first = int(out_of_range.nonzero()[0, 0])
            raise ValueError(
                f"class indices must lie in 0..{k - 1} (targets may also be ignore_index={self.ignore_index}); "
                f"got target {int(target_t[first])} with prediction {int(prediction_t[first])}"
            )
        # Ignored epochs go to an extra bin that is dropped, which avoids a data-dependent boolean index.
        cell = torch.where(scored, target_t * k + prediction_t, torch.full_like(target_t, k * k))
        counts = torch.bincount(cell, minlength=k * k + 1)[: k * k]
        if self._counts is None:
            self._counts = torch.zeros(k * k, dtype=torch.int64, device=counts.device)
        self._counts += counts

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of another matrix with the same classes (in place); returns ``self``."""
        if other.n_classes != self.n_classes:
            raise ValueError(
                f"cannot merge a {other.n_classes}-class matrix into a {self.n_classes}-class one"
            )
        if other._counts is not None:
            if self._counts is None:
                self._counts = other._counts.clone()
            else:
                self._counts += other._counts.to(self._counts.device)
        return self

    def all_reduce(self) -> None:
        """Sum the counts over the processes of an initialised ``torch.distributed`` group (no-op otherwise).

        Every process must call it, also one that saw no batch.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if self._counts is None:
            self._counts = torch.zeros(self.n_classes**2, dtype=torch.int64)
        dist.all_reduce(self._counts, op=dist.ReduceOp.SUM)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(K, K)`` counts (rows true, columns predicted) as an int64 NumPy array."""
        if self._counts is None:
            return np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        return self._counts.view(self.n_classes, self.n_classes).cpu().numpy().copy()

    @property
    def n_epochs(self) -> int:
        """Number of scored epochs accumulated so far."""
        return 0 if self._counts is None else int(self._counts.sum())

    def compute(self) -> StagingMetrics:
        """All metrics of the accumulated epochs; raises ValueError when nothing was counted."""
        return metrics_from_confusion(self.matrix, self.class_names)


def compute_metrics(
    target: ArrayLike,
    prediction: ArrayLike,
    n_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> StagingMetrics:
    """Metrics of one set of predictions (see :class:`ConfusionMatrix` for the accepted arrays)."""
    confusion = ConfusionMatrix(n_classes, class_names, ignore_index=ignore_index)
    confusion.update(target, prediction)
    return confusion.compute()


class SubjectConfusion:
    """One :class:`ConfusionMatrix` per subject, accumulated across batches.

    Parameters
    ----------
    n_classes : int
        Number of classes K.
    class_names : sequence of str or None
        Names used by :meth:`compute`.
    ignore_index : int
        Target value of epochs to leave out (-1).
    """

    def __init__(
        self, n_classes: int, class_names: Sequence[str] | None = None, *, ignore_index: int = IGNORE_INDEX
    ) -> None:
        self.n_classes = n_classes
        self.class_names = class_names
        self.ignore_index = ignore_index
        self._by_subject: dict[str, ConfusionMatrix] = {}
        # Validate the arguments once, with the same messages as a single matrix.
        ConfusionMatrix(n_classes, class_names, ignore_index=ignore_index, device="cpu")

    @property
    def subjects(self) -> list[str]:
        """Subjects seen so far, in order of first appearance."""
        return list(self._by_subject)

    def update(self, subjects: Sequence[str], target: ArrayLike, prediction: ArrayLike) -> None:
        """Add a batch whose first axis runs over windows of the given subjects.

        Parameters
        ----------
        subjects : sequence of str
            Subject of each window (length ``batch``).
        target, prediction : array
            As for :meth:`ConfusionMatrix.update`, with the batch on the first axis.
        """
        target_t = torch.as_tensor(target)
        prediction_t = torch.as_tensor(prediction, device=target_t.device)
        if (
            target_t.dim() == 0
            or len(subjects) != target_t.shape[0]
            or prediction_t.shape[:1] != target_t.shape[:1]
        ):
            raise ValueError(
                f"{len(subjects)} subject ids for targets {tuple(target_t.shape)} and predictions "
                f"{tuple(prediction_t.shape)}: expected one id per row of the batch"
            )
        rows_of: dict[str, list[int]] = {}
        for row, subject in enumerate(subjects):
            rows_of.setdefault(str(subject), []).append(row)
        for subject, rows in rows_of.items():
            index = torch.as_tensor(rows, device=target_t.device)
            matrix = self._by_subject.get(subject)
            if matrix is None:
                matrix = ConfusionMatrix(self.n_classes, self.class_names, ignore_index=self.ignore_index)
                self._by_subject[subject] = matrix
            matrix.update(target_t.index_select(0, index), prediction_t.index_select(0, index))

    def overall(self) -> ConfusionMatrix:
        """The pooled matrix of all subjects."""
        pooled = ConfusionMatrix(self.n_classes, self.class_names, ignore_index=self.ignore_index)
        for matrix in self._by_subject.values():
            pooled.merge(matrix)
        return pooled

    def compute(self) -> dict[str, StagingMetrics]:
        """Metrics per subject; subjects without any scored epoch are left out with a warning."""
        result: dict[str, StagingMetrics] = {}
        empty = []
        for subject, matrix in self._by_subject.items():
            if matrix.n_epochs == 0:
                empty.append(subject)
                continue
            result[subject] = matrix.compute()
        if empty:
            logger.warning(
                "left out %d subject(s) without scored epochs: %s", len(empty), ", ".join(empty[:10])
            )
        return result


def per_subject_metrics(
    target: ArrayLike,
    prediction: ArrayLike,
    subjects: Sequence[str],
    n_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, StagingMetrics]:
    """Metrics for each subject, given the subject of every row of ``target`` and ``prediction``."""
    accumulator = SubjectConfusion(n_classes, class_names, ignore_index=ignore_index)
    accumulator.update(subjects, target, prediction)
    return accumulator.compute()


def metric_by_subject(
    per_subject: Mapping[str, StagingMetrics], metric: str = "weighted_f1"
) -> dict[str, float]:
    """One figure per subject, e.g. ``metric_by_subject(results, "cohen_kappa")``.

    ``metric`` is an overall attribute of :class:`StagingMetrics` (``accuracy``, ``weighted_f1``,
    ``macro_f1``, ``cohen_kappa``) or ``f1:<class name>`` for a per-class F1.
    """
    values = {}
    for subject, metrics in per_subject.items():
        values[subject] = _metric_value(metrics, metric)
    return values


_SCALAR_METRICS = ("accuracy", "weighted_f1", "macro_f1", "cohen_kappa")


def _metric_value(metrics: StagingMetrics, metric: str) -> float:
    if metric in _SCALAR_METRICS:
        return float(getattr(metrics, metric))
    if metric.startswith("f1:"):
        name = metric[3:]
        if name not in metrics.class_names:
            raise ValueError(
                f"unknown class {name!r} in metric {metric!r}; classes are {list(metrics.class_names)}"
            )
        return metrics.f1[metrics.class_names.index(name)]
    raise ValueError(
        f"unknown metric {metric!r}; expected one of {list(_SCALAR_METRICS)} or 'f1:<class name>'"
    )
