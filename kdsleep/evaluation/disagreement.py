"""Fig. 2 of Joshi et al.: where the ECG baseline and a distilled student disagree, whose features are nearer the teacher's.

:func:`disagreement_figures` takes, for the EEG teacher, the ECG baseline and each distilled student, the
true class, the predicted class and the bottleneck feature row of the same test epochs (each epoch once),
projects the epochs on which exactly one of the two students is right
(:func:`kdsleep.evaluation.plots.project_disagreements`), and writes one plot per student and a JSON
summary of the mean distances to the teacher.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep._io import write_json_atomic
from kdsleep.evaluation.plots import plot_disagreement_projection, project_disagreements

__all__ = ["EpochFeatures", "disagreement_figures"]

logger = logging.getLogger(__name__)

#: ``(labels, predictions, features)`` of the same test epochs: shapes ``(N,)``, ``(N,)``, ``(N, C)``.
EpochFeatures = tuple[np.ndarray, np.ndarray, np.ndarray]


def disagreement_figures(
    features: Mapping[str, EpochFeatures],
    out_dir: str | Path,
    grouping: str,
    distilled: Sequence[str],
    *,
    teacher: str = "eeg_baseline",
    baseline: str = "ecg_baseline",
) -> dict[str, Any] | None:
    """Fig. 2 plots and distances for each distilled student of one class set, against the ECG baseline.

    Parameters
    ----------
    features : mapping of str to (labels, predictions, features)
        Per variant, the same test epochs in the same order.
    out_dir : path-like
        Folder of ``fig2_<variant>.png`` and ``fig2.json``.
    grouping : str
        Class set, recorded in the summary.
    distilled : sequence of str
        Names of the distilled students to plot (those present in ``features``).
    teacher, baseline : str
        Names of the teacher and the ECG baseline in ``features``.

    Returns
    -------
    dict or None
        What ``fig2.json`` holds, or ``None`` when the teacher, the baseline or every distilled student is
        missing.
    """
    present = [name for name in distilled if name in features]
    if teacher not in features or baseline not in features or not present:
        return None
    out_dir = Path(out_dir)
    y_true, _, teacher_features = features[teacher]
    _, baseline_pred, baseline_features = features[baseline]
    summary: dict[str, Any] = {"grouping": grouping, "feature_map": "bottleneck", "variants": {}}
    for name in present:
        _, kd_pred, kd_features = features[name]
        try:
            projection = project_disagreements(
                teacher_features, baseline_features, kd_features, y_true, baseline_pred, kd_pred
            )
        except ValueError as err:
            logger.warning("%s %s: no Fig. 2 plot: %s", grouping, name, err)
            continue
        path = plot_disagreement_projection(
            projection,
            out_dir / f"fig2_{name}.png",
            labels={"teacher": "EEG baseline (teacher)", "baseline": "ECG baseline", "distilled": name},
        )
        summary["variants"][name] = {
            "plot": path.name,
            "epochs_kd_right_baseline_wrong": int((projection.case == 1).sum()),
            "epochs_kd_wrong_baseline_right": int((projection.case == 2).sum()),
            "mean_distance_baseline_to_teacher": projection.distance_baseline_to_teacher,
            "mean_distance_distilled_to_teacher": projection.distance_distilled_to_teacher,
        }
    write_json_atomic(out_dir / "fig2.json", summary)
    return summary
