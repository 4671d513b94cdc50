"""PNG figures: confusion matrices, hypnograms, learning curves and the paper's Fig. 2 feature analysis.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through
``pyplot``, so plotting needs no display and leaves the caller's matplotlib state alone. Every file is written
atomically.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdsleep._io import write_bytes_atomic
from kdsleep.data.stages import IGNORE_INDEX

__all__ = [
    "DisagreementProjection",
    "epoch_features",
    "plot_confusion_matrix",
    "plot_disagreement_projection",
    "plot_hypnogram",
    "plot_learning_curves",
    "project_disagreements",
]

logger = logging.getLogger(__name__)


def _save(figure: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes_atomic(path, buffer.getvalue())


def _to_numpy(array: np.ndarray | torch.Tensor | Sequence[float]) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def plot_confusion_matrix(
    confusion: np.ndarray | torch.Tensor,
    path: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Counts and row-normalised confusion matrix side by side.

    Parameters
    ----------
    confusion : array of shape (K, K)
        Counts, true classes in rows, predicted classes in columns
        (:attr:`~kdsleep.evaluation.metrics.ConfusionMatrix.matrix`).
    path : path-like
        PNG file to write.
    class_names : sequence of str or None
        Class labels of the axes.
    title : str or None
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    counts = _to_numpy(confusion).astype(np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {counts.shape}")
    k = counts.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"{len(names)} class names given for a {k}-class confusion matrix")
    row_sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(row_sums > 0, counts / np.maximum(row_sums, 1), 0.0)

    figure = Figure(figsize=(4.2 * 2 + 1.6, 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, values, panel_title, fmt in (
        (axes[0], counts, "counts", "d"),
        (axes[1], normalised, "row-normalised (recall)", ".2f"),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-12))
        figure.colorbar(image, ax=ax, shrink=0.8)
        threshold = values.max() / 2.0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if values[i, j] > threshold else "black",
                )
        ax.set_xticks(range(k), names)
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted stage")
        ax.set_ylabel("true stage")
        ax.set_title(panel_title)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _hypnogram_levels(class_names: Sequence[str]) -> list[int]:
    """Vertical position of each class: wake on top, REM below it, then NREM from light to deep."""
    order = list(range(len(class_names)))
    upper = [name.upper() for name in class_names]
    front = [upper.index(name) for name in ("W", "WAKE") if name in upper][:1]
    front += [upper.index(name) for name in ("R", "REM") if name in upper][:1]
    order = front + [i for i in order if i not in front]
    levels = [0] * len(class_names)
    for position, index in enumerate(order):
        levels[index] = len(class_names) - 1 - position
    return levels


def plot_hypnogram(
    y_true: np.ndarray | torch.Tensor | Sequence[int] | None,
    y_pred: np.ndarray | torch.Tensor | Sequence[int],
    path: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    epoch_seconds: float = 30.0,
    ignore_index: int = IGNORE_INDEX,
    title: str | None = None,
) -> Path:
    """Scored and predicted hypnograms of one recording, one above the other.

    Parameters
    ----------
    y_true : array of int, shape (n_epochs,), or None
        Scored classes; ``ignore_index`` marks unscored epochs (drawn as gaps). ``None`` for a recording
        without scoring (an ECG-only night): only the predicted hypnogram is drawn.
    y_pred : array of int, shape (n_epochs,)
        Predicted classes (``ignore_index`` for epochs without a prediction); epochs that disagree with the
        scoring are marked in red.
    path : path-like
        PNG file to write.
    class_names : sequence of str
        Name of each class index.
    epoch_seconds : float
        Epoch length in seconds (30).
    ignore_index : int
        Label of unscored epochs (-1).
    title : str or None
        Figure title.
    """
    predicted = _to_numpy(y_pred).astype(np.int64).reshape(-1)
    truth = None if y_true is None else _to_numpy(y_true).astype(np.int64).reshape(-1)
    if truth is not None and truth.shape != predicted.shape:
        raise ValueError(
            f"scored ({truth.size} epochs) and predicted ({predicted.size} epochs) hypnograms differ in length"
        )
    if predicted.size == 0:
        raise ValueError("cannot plot an empty hypnogram")
    k = len(class_names)
    rows = [("predicted", predicted)] if truth is None else [("scored", truth), ("predicted", predicted)]
    for name, values in rows:
        bad = (values != ignore_index) & ((values < 0) | (values >= k))
        if bad.any():
            raise ValueError(
                f"{name} hypnogram holds class {values[bad][0]} outside 0..{k - 1} ({list(class_names)})"
            )
    levels = np.asarray(_hypnogram_levels(class_names), dtype=np.float64)
    hours = np.arange(predicted.size + 1) * epoch_seconds / 3600.0

    def _heights(values: np.ndarray) -> np.ndarray:
        heights = np.where(values == ignore_index, np.nan, levels[np.clip(values, 0, k - 1)])
        return np.append(heights, heights[-1])  # steps need one edge more than epochs

    figure = Figure(figsize=(10, 2.25 * len(rows) + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(rows), 1, sharex=True))
    for ax, (label, values) in zip(axes, rows, strict=True):
        ax.step(hours, _heights(values), where="post", color="black", linewidth=0.9)
        ax.set_yticks(levels, list(class_names))
        ax.set_ylim(-0.5, k - 0.5)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("time (h)")
    if truth is None:
        default_title = f"predicted hypnogram ({predicted.size} epochs of {epoch_seconds:g} s)"
    else:
        scored = truth != ignore_index
        wrong = scored & (predicted != truth)
        if wrong.any():
            centres = (np.flatnonzero(wrong) + 0.5) * epoch_seconds / 3600.0
            heights = np.where(
                predicted[wrong] == ignore_index, np.nan, levels[np.clip(predicted[wrong], 0, k - 1)]
            )
            axes[-1].scatter(centres, heights, s=6, color="tab:red", zorder=3, label="disagrees with scoring")
            axes[-1].legend(loc="lower right", fontsize=8)
        accuracy = float(np.mean(predicted[scored] == truth[scored])) if scored.any() else float("nan")
        default_title = f"hypnogram ({truth.size} epochs, agreement {accuracy:.1%} of scored epochs)"
    figure.suptitle(title or default_title)
    return _save(figure, path)


_X_COLUMNS = ("epoch", "step", "global_step")
_RATE_COLUMNS = {"lr", "learning_rate"}
_SKIPPED_COLUMNS = {"time", "wall_time", "seconds", "elapsed", "timestamp"}


def plot_learning_curves(
    csv_path: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Learning curves from a CSV training log: losses on the left, other metrics on the right.

    Parameters
    ----------
    csv_path : path-like
        CSV with one row per epoch (or step) and a header. The x axis is the first of ``epoch``, ``step``,
        ``global_step`` present (else the row number); columns whose name contains ``loss`` go to the loss
        panel, ``lr`` / ``learning_rate`` to a log-scaled panel of their own and the other numeric ones
        (``val_weighted_f1``, ...) to the metric panel.
    path : path-like
        PNG file to write.
    columns : sequence of str or None
        Columns to draw (default: all numeric ones except the x axis and timing columns).
    title : str or None
        Figure title.
    """
    import pandas as pd

    csv_path = Path(csv_path)
    try:
        log = pd.read_csv(csv_path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{csv_path}: cannot read the training log as CSV ({error})") from error
    if log.empty:
        raise ValueError(f"{csv_path}: the training log has no rows")
    x_column = next((c for c in _X_COLUMNS if c in log.columns), None)
    x = log[x_column].to_numpy() if x_column else np.arange(len(log))
    if columns is None:
        chosen = [
            c
            for c in log.columns
            if c != x_column and c.lower() not in _SKIPPED_COLUMNS and pd.api.types.is_numeric_dtype(log[c])
        ]
    else:
        missing = [c for c in columns if c not in log.columns]
        if missing:
            raise ValueError(f"{csv_path}: columns {missing} not in the log (columns: {list(log.columns)})")
        chosen = list(columns)
    chosen = [c for c in chosen if log[c].notna().any()]
    if not chosen:
        raise ValueError(f"{csv_path}: no numeric column to plot (columns: {list(log.columns)})")
    losses = [c for c in chosen if "loss" in c.lower()]
    rates = [c for c in chosen if c.lower() in _RATE_COLUMNS]
    others = [c for c in chosen if c not in losses and c not in rates]

    panels = [(losses, "loss"), (others, "metric"), (rates, "learning rate")]
    panels = [(cols, label) for cols, label in panels if cols]
    figure = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for ax, (cols, label) in zip(axes, panels, strict=True):
        for column in cols:
            values = log[column].to_numpy(dtype=np.float64)
            finite = np.isfinite(values)
            # Validation columns are often logged every few epochs only; draw their points, not gaps.
            ax.plot(
                x[finite],
                values[finite],
                marker="o" if finite.sum() < 30 else None,
                markersize=3,
                label=column,
            )
        ax.set_xlabel(x_column or "row")
        ax.set_ylabel(label)
        rates_logged = log[cols].to_numpy(dtype=np.float64)
        if label == "learning rate" and np.all(rates_logged[np.isfinite(rates_logged)] > 0):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title or f"learning curves ({csv_path.name})")
    return _save(figure, path)


def epoch_features(feature_map: np.ndarray | torch.Tensor, n_epochs: int) -> np.ndarray:
    """Average a feature map over the positions of each epoch.

    Parameters
    ----------
    feature_map : array of shape (batch, channels, length)
        E.g. the U-Time bottleneck; ``length`` must be a multiple of ``n_epochs``.
    n_epochs : int
        Epochs per window.

    Returns
    -------
    numpy.ndarray of shape (batch * n_epochs, channels)
        One feature vector per epoch, windows in order.
    """
    values = _to_numpy(feature_map).astype(np.float64, copy=False)
    if values.ndim != 3:
        raise ValueError(f"feature map must have shape (batch, channels, length), got {values.shape}")
    batch, channels, length = values.shape
    if length % n_epochs:
        raise ValueError(f"feature map length {length} is not a multiple of n_epochs={n_epochs}")
    per_epoch = values.reshape(batch, channels, n_epochs, length // n_epochs).mean(axis=3)
    return per_epoch.transpose(0, 2, 1).reshape(batch * n_epochs, channels)


# eq=False: the array fields make generated equality ambiguous.
@dataclass(frozen=True, eq=False)
class DisagreementProjection:
    """Epochs on which the baseline and the distilled student disagree, projected to 2-D.

    Attributes
    ----------
    teacher, baseline, distilled : numpy.ndarray of shape (N, 2)
        PCA coordinates of each model's features; one PCA is fitted on the three sets together so that the
        coordinates are comparable.
    case : numpy.ndarray of shape (N,)
        1 where the distilled student is right and the baseline wrong, 2 the other way round (the two cases
        of Fig. 2 of Joshi et al.).
    y_true : numpy.ndarray of shape (N,)
        Scored class of each epoch.
    explained_variance_ratio : tuple of float
        Of the two principal components.
    distance_baseline_to_teacher, distance_distilled_to_teacher : float
        Mean Euclidean distance, in the full feature space, between each student's features and the teacher's
        on the same epochs; distillation should shrink it.
    """

    teacher: np.ndarray
    baseline: np.ndarray
    distilled: np.ndarray
    case: np.ndarray
    y_true: np.ndarray
    explained_variance_ratio: tuple[float, float]
    distance_baseline_to_teacher: float
    distance_distilled_to_teacher: float


def project_disagreements(
    teacher_features: np.ndarray | torch.Tensor,
    baseline_features: np.ndarray | torch.Tensor,
    distilled_features: np.ndarray | torch.Tensor,
    y_true: np.ndarray | torch.Tensor | Sequence[int],
    baseline_pred: np.ndarray | torch.Tensor | Sequence[int],
    distilled_pred: np.ndarray | torch.Tensor | Sequence[int],
    *,
    ignore_index: int = IGNORE_INDEX,
    max_points: int = 2000,
    seed: int = 0,
) -> DisagreementProjection:
    """Select the epochs of Fig. 2 of Joshi et al. and project the three models' features with PCA.

    Parameters
    ----------
    teacher_features, baseline_features, distilled_features : array of shape (N, D)
        Per-epoch features of the EEG teacher, the ECG baseline and the distilled ECG student on the same
        epochs (e.g. :func:`epoch_features` of each bottleneck); D must be equal.
    y_true : array of int, shape (N,)
        Scored classes (``ignore_index`` epochs are skipped).
    baseline_pred, distilled_pred : array of int, shape (N,)
        Predicted classes of the two students.
    ignore_index : int
        Label of unscored epochs (-1).
    max_points : int
        At most this many epochs are kept (a seeded random subset) so the scatter stays legible.
    seed : int
        Seed of that subset.

    Raises
    ------
    ValueError
        On mismatched shapes or when no epoch has exactly one of the two students right.
    """
    from sklearn.decomposition import PCA

    teacher = _to_numpy(teacher_features).astype(np.float64)
    baseline = _to_numpy(baseline_features).astype(np.float64)
    distilled = _to_numpy(distilled_features).astype(np.float64)
    truth = _to_numpy(y_true).astype(np.int64).reshape(-1)
    base_pred = _to_numpy(baseline_pred).astype(np.int64).reshape(-1)
    kd_pred = _to_numpy(distilled_pred).astype(np.int64).reshape(-1)
    if teacher.ndim != 2 or teacher.shape != baseline.shape or teacher.shape != distilled.shape:
        raise ValueError(
            f"teacher, baseline and distilled features must share one (N, D) shape, got {teacher.shape}, "
            f"{baseline.shape} and {distilled.shape}"
        )
    n = teacher.shape[0]
    if not (truth.size == base_pred.size == kd_pred.size == n):
        raise ValueError(
            f"{n} feature rows but {truth.size} labels, {base_pred.size} baseline and {kd_pred.size} distilled "
            f"predictions"
        )
    scored = truth != ignore_index
    case_1 = scored & (kd_pred == truth) & (base_pred != truth)
    case_2 = scored & (kd_pred != truth) & (base_pred == truth)
    selected = np.flatnonzero(case_1 | case_2)
    if selected.size == 0:
        raise ValueError("no epoch where exactly one of the baseline and the distilled student is right")
    if selected.size > max_points:
        selected = np.sort(np.random.default_rng(seed).choice(selected, size=max_points, replace=False))
    stacked = np.concatenate([teacher[selected], baseline[selected], distilled[selected]])
    n_components = min(2, stacked.shape[0], stacked.shape[1])
    pca = PCA(n_components=n_components, random_state=seed)
    coordinates = pca.fit_transform(stacked)
    if n_components < 2:
        coordinates = np.pad(coordinates, ((0, 0), (0, 2 - n_components)))
    ratios = tuple(pca.explained_variance_ratio_.tolist()) + (0.0,) * (2 - n_components)
    m = selected.size
    return DisagreementProjection(
        teacher=coordinates[:m],
        baseline=coordinates[m : 2 * m],
        distilled=coordinates[2 * m :],
        case=np.where(case_1[selected], 1, 2),
        y_true=truth[selected],
        explained_variance_ratio=(float(ratios[0]), float(ratios[1])),
        distance_baseline_to_teacher=float(
            np.linalg.norm(baseline[selected] - teacher[selected], axis=1).mean()
        ),
        distance_distilled_to_teacher=float(
            np.linalg.norm(distilled[selected] - teacher[selected], axis=1).mean()
        ),
    )


def plot_disagreement_projection(
    projection: DisagreementProjection,
    path: str | os.PathLike[str],
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Fig. 2 style scatter: teacher, baseline and distilled features for the two disagreement cases.

    Parameters
    ----------
    projection : DisagreementProjection
        From :func:`project_disagreements`.
    path : path-like
        PNG file to write.
    labels : mapping or None
        Legend names for ``"teacher"``, ``"baseline"`` and ``"distilled"`` (default EEG baseline, ECG baseline,
        KD model).
    title : str or None
        Figure title.
    """
    names = {"teacher": "EEG teacher", "baseline": "ECG baseline", "distilled": "KD student"}
    names.update(labels or {})
    figure = Figure(figsize=(11, 4.8))
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    case_titles = {
        1: f"Case 1: {names['distilled']} right, {names['baseline']} wrong",
        2: f"Case 2: {names['distilled']} wrong, {names['baseline']} right",
    }
    styles = (
        ("teacher", projection.teacher, "tab:green", "o"),
        ("baseline", projection.baseline, "tab:red", "x"),
        ("distilled", projection.distilled, "tab:blue", "^"),
    )
    for ax, case in zip(axes, (1, 2), strict=True):
        rows = projection.case == case
        for key, points, colour, marker in styles:
            ax.scatter(
                points[rows, 0],
                points[rows, 1],
                s=10,
                alpha=0.6,
                color=colour,
                marker=marker,
                label=f"{names[key]} ({int(rows.sum())} epochs)",
            )
        ax.set_title(case_titles[case], fontsize=10)
        ax.set_xlabel(f"PC 1 ({projection.explained_variance_ratio[0]:.0%} of variance)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel(f"PC 2 ({projection.explained_variance_ratio[1]:.0%} of variance)")
    figure.suptitle(
        title
        or (
            "bottleneck features where the students disagree — mean distance to the teacher: "
            f"{names['baseline']} {projection.distance_baseline_to_teacher:.2f}, "
            f"{names['distilled']} {projection.distance_distilled_to_teacher:.2f}"
        ),
        fontsize=10,
    )
    return _save(figure, path)
