"""What staging a night returns (:class:`Prediction`) and the files it is written to.

The writers put the result next to each other in one folder: a CSV table (:func:`write_hypnogram_csv`), an
EDF+ scoring file with one ``Sleep stage ...`` annotation per epoch that the project's own
:func:`~kdsleep.data.readers.read_hypnogram` reads back (:func:`write_hypnogram_edf`, with
:func:`annotation_label_mapping` for the grouped class sets) and a PNG (:func:`plot_prediction`);
:func:`write_prediction` writes all of them or none. Both staging paths return a :class:`Prediction`: an
EDF recording (:func:`kdsleep.inference.predict_recording`) and heartbeat times
(:func:`kdsleep.beats_inference.predict_beats`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep._io import write_text_atomic
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.stages import SleepStage, get_grouping
from kdsleep.evaluation.plots import plot_hypnogram

__all__ = [
    "UNSCORED_LABEL",
    "Prediction",
    "annotation_descriptions",
    "annotation_label_mapping",
    "output_paths",
    "plot_prediction",
    "write_hypnogram_csv",
    "write_hypnogram_edf",
    "write_prediction",
]

logger = logging.getLogger(__name__)

#: Text written for epochs without a stage (NaN / flat signal); read back as ``SleepStage.UNSCORED``.
UNSCORED_LABEL = "Sleep stage ?"


@dataclass(frozen=True)
class Prediction:
    """Per-epoch output of :func:`kdsleep.inference.predict_recording` and :func:`kdsleep.beats_inference.predict_beats`.

    Attributes
    ----------
    stages : np.ndarray of int64, shape (n_epochs,)
        Predicted class index per epoch (the arg-max of ``probabilities``); ``-1`` where the signal was NaN
        or flat.
    probabilities : np.ndarray of float32, shape (n_epochs, n_classes)
        Softmax of the model's logits; NaN rows where ``stages`` is ``-1``.
    onsets : np.ndarray of float64, shape (n_epochs,)
        Start of every epoch in seconds after the recording start.
    class_names : tuple of str
        Name of each class index (``("W", "L", "D", "R")`` for the 4-class task of Joshi et al.).
    grouping : str
        Stage grouping of the model (``"w-l-d-r"``, ``"w-n-r"``, ``"aasm-5"``).
    epoch_seconds : float
        Epoch length in seconds (30).
    channel : str
        The file's channel the model read (``"ECG ECGI"``, or ``"A - B"`` for a re-referenced derivation).
    source : Path
        The recording.
    start : datetime or None
        Wall-clock start of the recording, from its header.
    sfreq : float
        The model's input rate in Hz after resampling (200 in the paper).
    n_windows : int
        Number of model windows run.
    """

    stages: np.ndarray
    probabilities: np.ndarray
    onsets: np.ndarray
    class_names: tuple[str, ...]
    grouping: str
    epoch_seconds: float
    channel: str
    source: Path
    start: datetime | None
    sfreq: float
    n_windows: int

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return int(self.stages.shape[0])

    @property
    def scored(self) -> np.ndarray:
        """Boolean mask of the epochs that received a stage."""
        return self.stages >= 0

    @property
    def stage_names(self) -> list[str]:
        """Class name of every epoch (``"?"`` where the signal was unusable)."""
        return [self.class_names[s] if s >= 0 else "?" for s in self.stages.tolist()]

    def stage_fractions(self) -> dict[str, float]:
        """Fraction of the staged epochs in each class."""
        scored = self.stages[self.scored]
        total = max(1, scored.size)
        return {name: float(np.sum(scored == k)) / total for k, name in enumerate(self.class_names)}


def annotation_descriptions(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """EDF+ annotation text of each class: ``"Sleep stage W"``, ``"Sleep stage N2"``, ``"Sleep stage L"``."""
    return [f"Sleep stage {name}" for name in class_names]


def annotation_label_mapping(grouping: str, class_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Label mapping that reads the scoring files of :func:`write_hypnogram_edf` back.

    The AASM names (``Sleep stage W/N1/N2/N3/R``) are known to the readers' ``"auto"`` mapping; the grouped
    classes (``L``, ``D``, ``N``) are not sleep stages of their own, so each is read as one member stage of
    its class (``L`` as N1, ``D`` as N3, ``N`` as N1). Grouping the result again with ``grouping`` gives back
    the written classes exactly.

    Parameters
    ----------
    grouping : str
        Stage grouping of the prediction.
    class_names : sequence of str
        Its class names, in class-index order.

    Returns
    -------
    dict of str to int
        Annotation text to :class:`~kdsleep.data.stages.SleepStage` value, for the ``mapping`` argument of
        :func:`~kdsleep.data.readers.read_hypnogram`.
    """
    stage_grouping = get_grouping(grouping)
    if list(stage_grouping.class_names) != list(class_names):
        raise ValueError(
            f"class names {list(class_names)} do not match grouping {stage_grouping.name!r} "
            f"{list(stage_grouping.class_names)}"
        )
    mapping: dict[str, int] = {UNSCORED_LABEL: int(SleepStage.UNSCORED)}
    for text, index in zip(annotation_descriptions(class_names), range(len(class_names)), strict=True):
        members = sorted(int(s) for s, k in stage_grouping.classes.items() if k == index)
        mapping[text] = members[0]
    return mapping


def output_paths(
    recording_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Where :func:`write_prediction` puts its files: ``<stem>_hypnogram.{csv,edf,png}`` in ``out_dir``.

    ``out_dir`` defaults to the recording's folder, so the scoring file lies next to the recording.
    """
    recording_path = Path(recording_path)
    folder = Path(out_dir) if out_dir is not None else recording_path.parent
    stem = f"{recording_path.stem}_hypnogram"
    return {kind: folder / f"{stem}.{kind}" for kind in ("csv", "edf", "png")}


def _format_seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def write_hypnogram_csv(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """Write ``epoch, onset_s, stage, p_<class>...`` rows atomically.

    ``stage`` is the class name (``?`` for epochs without a stage, whose probabilities are left empty);
    probabilities have six decimals.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "onset_s", "stage", *(f"p_{name}" for name in prediction.class_names)])
    for i, (onset, name, probs) in enumerate(
        zip(prediction.onsets, prediction.stage_names, prediction.probabilities, strict=True)
    ):
        cells = ["" if not np.isfinite(p) else f"{p:.6f}" for p in probs]
        writer.writerow([i, _format_seconds(float(onset)), name, *cells])
    return write_text_atomic(path, buffer.getvalue())


def write_hypnogram_edf(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """Write an annotation-only EDF+ scoring file, one ``Sleep stage <class>`` annotation per epoch.

    The file's start time is the recording's (when EDF can store it), so the scoring lines up with the
    signal as HMC and Sleep-EDF scoring files do. Epochs without a stage are written as
    ``Sleep stage ?``. Read it back with :func:`~kdsleep.data.readers.read_hypnogram` and
    :func:`annotation_label_mapping`.
    """
    descriptions = annotation_descriptions(prediction.class_names)
    annotations = [
        (float(onset), prediction.epoch_seconds, descriptions[s] if s >= 0 else UNSCORED_LABEL)
        for onset, s in zip(prediction.onsets, prediction.stages.tolist(), strict=True)
    ]
    start = prediction.start
    if start is not None and not 1985 <= start.year <= 2084:
        logger.warning("%s: start %s cannot be stored in EDF (1985-2084); writing 2000-01-01", path, start)
        start = None
    return write_edf(
        path,
        [],
        [],
        [],
        units=[],
        start=start,
        annotations=annotations,
        recording_id=None,
    )


def plot_prediction(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """PNG of the predicted hypnogram (see :func:`kdsleep.evaluation.plots.plot_hypnogram`)."""
    title = (
        f"{prediction.source.name}: predicted hypnogram from {prediction.channel} "
        f"({prediction.n_epochs} epochs of {prediction.epoch_seconds:g} s)"
    )
    return plot_hypnogram(
        None,
        prediction.stages,
        path,
        prediction.class_names,
        epoch_seconds=prediction.epoch_seconds,
        title=title,
    )


def write_prediction(
    prediction: Prediction, out_dir: str | os.PathLike[str] | None = None, *, plot: bool = True
) -> dict[str, Path]:
    """Write the CSV, the EDF+ scoring file and (unless ``plot=False``) the PNG; returns their paths.

    All or none: every file is first written under a hidden staging name in the output folder and the
    staged files are renamed into place only once all of them are complete, so a failure (a full disk, an
    unwritable name) leaves the folder as it was, never a new CSV beside an old EDF.
    """
    paths = output_paths(prediction.source, out_dir)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    kinds = ["csv", "edf", "png"] if plot else ["csv", "edf"]
    writers = {"csv": write_hypnogram_csv, "edf": write_hypnogram_edf, "png": plot_prediction}
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    staged = {kind: paths[kind].with_name(f".{paths[kind].stem}.staging-{tag}.{kind}") for kind in kinds}
    try:
        for kind in kinds:
            writers[kind](prediction, staged[kind])
        for kind in kinds:
            os.replace(staged[kind], paths[kind])
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    return {kind: paths[kind] for kind in kinds}
