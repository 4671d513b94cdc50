"""Stage a night from heartbeat times with a heart-rate model: a U-Time that reads the ``ihr`` channel, or a
heart-rate stager (:class:`kdsleep.hr_bundle.HRStagerBundle`, the shipped default) that reads HRV features
and the heart-rate curve of the whole night.

:func:`predict_beats` reads beat times from any format of :mod:`kdsleep.data.readers.beats` (WFDB beat
annotations, R-peak lists, RR exports, an EDF's ECG through the detector), builds the heart-rate channel
exactly as the heart-rate models were trained on it (:func:`kdsleep.data.heart_rate.heart_rate_channel`:
RR intervals with physiological outlier rejection, the rate held on the model's time base, filled with the
median where no valid interval exists and robust-scaled; the channel the slpdb study and the ``ihr``
preprocessing build), runs the model over windows that cover the whole night
(:func:`kdsleep.data.windows.covering_starts`, each epoch taking the window where it lies farther
from the edges, as :func:`kdsleep.inference.predict_recording` does) and returns a
:class:`kdsleep.prediction.Prediction`, written by the same writers (CSV, EDF+, PNG).

The night
    Epoch 0 starts at the recording start (time 0 of the beat times); the night ends at the recording end
    when the file or the caller gives it (WFDB header, EDF length, ``duration=``), else at the last beat.
    A trailing partial epoch is dropped. A night shorter than one model window is an error.

Gaps
    A stretch longer than ``max_gap_min`` minutes without a valid RR interval (no beats, a strap that lost
    contact, a run of rejected intervals, the time before the first or after the last beat) is a gap.
    The model still sees the median-filled heart rate there, as in training, but every epoch at least half
    inside a gap gets no stage: class ``-1``, NaN probabilities, written as ``?`` / ``Sleep stage ?``.
    Shorter stretches are filled with the median and staged, as the training data were.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from kdsleep._torch import resolve_device
from kdsleep.data.heart_rate import heart_rate_channel
from kdsleep.data.readers.beats import BeatSeries, BeatsFormatError, read_beats
from kdsleep.data.windows import covering_starts
from kdsleep.hr_bundle import HRStagerBundle, beat_inputs
from kdsleep.inference import InferenceError, check_modality, predict_windows
from kdsleep.models.pretrained import resolve_model
from kdsleep.prediction import Prediction

if TYPE_CHECKING:
    from kdsleep.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_MAX_GAP_MIN",
    "HEART_RATE_INPUT",
    "HeartRateInput",
    "check_heart_rate_model",
    "heart_rate_input",
    "predict_beats",
    "stage_epochs",
]

logger = logging.getLogger(__name__)

#: Default longest stretch without a valid heart rate (minutes) that is still staged.
DEFAULT_MAX_GAP_MIN = 5.0
#: Name of the heart-rate input channel in checkpoints (:data:`kdsleep.data.preprocess.DERIVED_CHANNELS`).
HEART_RATE_INPUT = "ihr"


@dataclass(frozen=True)
class HeartRateInput:
    """The model input built from beats.

    Attributes
    ----------
    data : np.ndarray of float32, shape (n_epochs, 1, samples_per_epoch)
        The heart-rate channel cut into epochs.
    valid : np.ndarray of bool, shape (n_epochs * samples_per_epoch,)
        True where the value comes from a valid RR interval.
    in_gap : np.ndarray of bool, shape (n_epochs,)
        Epochs at least half inside a gap longer than the limit.
    gaps : list of (float, float)
        Start and end in seconds of each such gap.
    sfreq : float
        Rate of ``data`` in Hz.
    epoch_seconds : float
        Epoch length in seconds.
    """

    data: np.ndarray
    valid: np.ndarray
    in_gap: np.ndarray
    gaps: list[tuple[float, float]]
    sfreq: float
    epoch_seconds: float

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return int(self.data.shape[0])


def _long_invalid_runs(valid: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """``[start, stop)`` sample ranges of runs of False at least ``min_length`` long."""
    padded = np.concatenate([[1], valid.astype(np.int8), [1]])
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == -1)
    stops = np.flatnonzero(edges == 1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b - a >= min_length]


def heart_rate_input(
    beats: BeatSeries,
    sfreq: float,
    epoch_seconds: float = 30.0,
    *,
    n_epochs: int | None = None,
    max_gap_min: float = DEFAULT_MAX_GAP_MIN,
) -> HeartRateInput:
    """The heart-rate channel of a night of beats, epoched, with its long gaps found.

    Parameters
    ----------
    beats : BeatSeries
        Beat times.
    sfreq : float
        Model rate in Hz.
    epoch_seconds : float
        Epoch length in seconds.
    n_epochs : int, optional
        Epochs of the night; default the whole epochs up to :attr:`BeatSeries.end`.
    max_gap_min : float
        Longest stretch in minutes without a valid RR interval that is still staged.

    Raises
    ------
    InferenceError
        When no heart rate can be derived (fewer than two valid RR intervals).
    """
    if not max_gap_min > 0:
        raise ValueError(f"max_gap_min: expected a positive number of minutes, got {max_gap_min!r}")
    spe = int(round(epoch_seconds * sfreq))
    if n_epochs is None:
        n_epochs = int(math.floor(beats.end / epoch_seconds + 1e-9))
    n_times = n_epochs * spe
    try:
        values, valid = heart_rate_channel(beats.times, sfreq, n_times, source=str(beats.source))
    except ValueError as err:
        raise InferenceError(
            f"{err}; expected beats with RR intervals of {beats.min_rr:g}-{beats.max_rr:g} s"
        ) from err
    runs = _long_invalid_runs(valid, int(math.ceil(max_gap_min * 60.0 * sfreq)))
    in_gap_samples = np.zeros(n_times, dtype=bool)
    for a, b in runs:
        in_gap_samples[a:b] = True
    in_gap = in_gap_samples.reshape(n_epochs, spe).sum(axis=1) * 2 >= spe if n_epochs else np.zeros(0, bool)
    return HeartRateInput(
        data=values.reshape(n_epochs, 1, spe),
        valid=valid,
        in_gap=np.asarray(in_gap, dtype=bool),
        gaps=[(a / sfreq, b / sfreq) for a, b in runs],
        sfreq=float(sfreq),
        epoch_seconds=float(epoch_seconds),
    )


def stage_epochs(
    model: torch.nn.Module,
    data: np.ndarray,
    *,
    window_epochs: int,
    n_classes: int,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    progress: bool = False,
    desc: str = "staging",
) -> tuple[np.ndarray, int]:
    """Per-epoch class probabilities of a model over an already preprocessed night.

    Windows start at :func:`kdsleep.data.windows.covering_starts`; an epoch covered by two windows takes
    the one in which it lies farther from the edges (the earlier on a tie), as in
    :func:`kdsleep.inference.predict_recording`.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(batch, n_chans, window_epochs * samples_per_epoch)`` to logits ``(batch, n_classes,
        window_epochs)``.
    data : np.ndarray, shape (n_epochs, n_chans, samples_per_epoch)
        The night's input, epoch by epoch.
    window_epochs, n_classes : int
        The model's window and classes.
    device, batch_size, progress, desc
        Where the model runs, windows per forward pass, and the progress bar.

    Returns
    -------
    (np.ndarray, int)
        float32 probabilities ``(n_epochs, n_classes)`` and the number of windows run.

    Raises
    ------
    ValueError
        When the night is shorter than one window.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        torch_device = resolve_device(device)
    except ValueError as err:
        raise InferenceError(str(err)) from err
    if data.shape[0] < window_epochs:
        raise ValueError(f"{data.shape[0]} epochs are fewer than one window of {window_epochs}")
    starts = covering_starts(data.shape[0], window_epochs)
    model = model.to(torch_device).eval()
    probabilities = predict_windows(
        model,
        data,
        starts,
        window_epochs,
        n_classes,
        device=torch_device,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    return probabilities, len(starts)


def _clock(start: datetime | None, seconds: float) -> str:
    if start is None:
        return f"{seconds / 60:.1f} min"
    return (start + timedelta(seconds=seconds)).strftime("%H:%M")


def check_heart_rate_model(checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint that does not read the heart-rate channel alone.

    Raises
    ------
    InferenceError
        Naming the checkpoint, what it reads and what was expected.
    """
    where = checkpoint.path or "checkpoint"
    inputs = list(checkpoint.inputs)
    if inputs != [HEART_RATE_INPUT]:
        hint = (
            "; stage its EDF recording with predict_recording instead"
            if HEART_RATE_INPUT not in inputs
            else ""
        )
        raise InferenceError(
            f"{where}: the model reads {inputs}, but staging from beats needs a heart-rate model that reads "
            f"[{HEART_RATE_INPUT!r}] only{hint}"
        )
    check_modality(checkpoint, "ecg")


def predict_beats(
    checkpoint: Checkpoint | HRStagerBundle | str | os.PathLike[str],
    beats: BeatSeries | str | os.PathLike[str],
    *,
    format: str = "auto",
    rr_unit: str = "auto",
    column: str | int | None = None,
    channel: str | None = None,
    start: datetime | None = None,
    duration: float | None = None,
    max_gap_min: float = DEFAULT_MAX_GAP_MIN,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    progress: bool = True,
) -> Prediction:
    """Stage every 30-s epoch of a night from its heartbeat times.

    Parameters
    ----------
    checkpoint : Checkpoint, HRStagerBundle, path-like or str
        A loaded heart-rate checkpoint or heart-rate stager, its file, or the name of a shipped model
        (:func:`kdsleep.models.pretrained.resolve_model`). A heart-rate stager reads the whole night at once
        (HRV features and heart-rate curve of :func:`kdsleep.hr_bundle.beat_inputs`).
    beats : BeatSeries or path-like
        Beats already read, or a beat file (read with :func:`kdsleep.data.readers.beats.read_beats` and the
        reader options below).
    format, rr_unit, column, channel, start, duration
        Reader options (see :func:`~kdsleep.data.readers.beats.read_beats`); ``start`` and ``duration`` also
        apply to a :class:`BeatSeries` that lacks them.
    max_gap_min : float
        Stretches without a valid heart rate longer than this (minutes) are left unstaged.
    device, batch_size, progress
        Where the model runs, windows per forward pass, progress bar (a U-Time checkpoint only; a heart-rate
        stager reads the night in one pass on the CPU).

    Returns
    -------
    Prediction
        One entry per whole epoch; epochs in long gaps have class ``-1``.

    Raises
    ------
    InferenceError
        For a checkpoint that is not a heart-rate model, an unreadable beat file (the message names the file
        and what was expected), no derivable heart rate, or a night shorter than one model window.
    """
    checkpoint = resolve_model(checkpoint)
    if not isinstance(checkpoint, HRStagerBundle):
        check_heart_rate_model(checkpoint)
    if isinstance(beats, BeatSeries):
        if start is not None:
            beats = replace(beats, start=start)
        if duration is not None:
            beats = replace(beats, duration=float(duration), times=beats.times[beats.times <= duration])
    else:
        try:
            beats = read_beats(
                beats, format, rr_unit=rr_unit, column=column, channel=channel, start=start, duration=duration
            )
        except BeatsFormatError as err:
            raise InferenceError(str(err), remedy=",".join(err.remedy) or None) from err
    if isinstance(checkpoint, HRStagerBundle):
        return _predict_beats_stager(checkpoint, beats, max_gap_min=max_gap_min)
    model = checkpoint.model
    window_epochs = int(model.n_epochs)
    epoch_seconds = float(model.epoch_seconds)
    n_epochs = int(math.floor(beats.end / epoch_seconds + 1e-9))
    if n_epochs < window_epochs:
        raise InferenceError(
            f"{beats.source}: the beats span {beats.end:g} s ({n_epochs} whole {epoch_seconds:g}-s epochs), shorter "
            f"than one model window of {window_epochs} epochs ({window_epochs * epoch_seconds:g} s); give the "
            "recording length if the file does not hold it",
            remedy="duration",
        )
    hr = heart_rate_input(
        beats, float(model.sfreq), epoch_seconds, n_epochs=n_epochs, max_gap_min=max_gap_min
    )
    probabilities, n_windows = stage_epochs(
        model,
        hr.data,
        window_epochs=window_epochs,
        n_classes=int(model.n_outputs),
        device=device,
        batch_size=batch_size,
        progress=progress,
        desc=f"staging {beats.source.name}",
    )
    return _finish(
        probabilities,
        hr,
        beats,
        n_epochs,
        max_gap_min,
        class_names=tuple(checkpoint.class_names),
        grouping=checkpoint.grouping,
        sfreq=float(model.sfreq),
        n_windows=n_windows,
    )


#: Fewest whole epochs a heart-rate stager stages (its HRV features use windows of up to 10 minutes).
MIN_STAGER_EPOCHS = 20


def _predict_beats_stager(stager: HRStagerBundle, beats: BeatSeries, *, max_gap_min: float) -> Prediction:
    """Stage a night with a heart-rate stager: HRV features and heart-rate curve of the whole night at once."""
    epoch_seconds = stager.epoch_seconds
    n_epochs = int(math.floor(beats.end / epoch_seconds + 1e-9))
    if n_epochs < MIN_STAGER_EPOCHS:
        raise InferenceError(
            f"{beats.source}: the beats span {beats.end:g} s ({n_epochs} whole {epoch_seconds:g}-s epochs), shorter "
            f"than the {MIN_STAGER_EPOCHS} epochs ({MIN_STAGER_EPOCHS * epoch_seconds / 60:g} min) the heart-rate "
            "stager needs; give the recording length if the file does not hold it",
            remedy="duration",
        )
    hr = heart_rate_input(beats, stager.sfreq, epoch_seconds, n_epochs=n_epochs, max_gap_min=max_gap_min)
    try:
        features, curve, _names = beat_inputs(beats.times, n_epochs, stager.sfreq, source=str(beats.source))
    except ValueError as err:
        raise InferenceError(
            f"{err}; expected beats with RR intervals of {beats.min_rr:g}-{beats.max_rr:g} s"
        ) from err
    probabilities = stager.predict_proba(features, curve)
    return _finish(
        probabilities,
        hr,
        beats,
        n_epochs,
        max_gap_min,
        class_names=tuple(stager.class_names),
        grouping=stager.grouping,
        sfreq=stager.sfreq,
        n_windows=1,
    )


def _finish(
    probabilities: np.ndarray,
    hr: HeartRateInput,
    beats: BeatSeries,
    n_epochs: int,
    max_gap_min: float,
    *,
    class_names: tuple[str, ...],
    grouping: str,
    sfreq: float,
    n_windows: int,
) -> Prediction:
    """Mask the epochs in long gaps, log the gaps and build the prediction."""
    epoch_seconds = hr.epoch_seconds
    stages = probabilities.argmax(axis=1).astype(np.int64)
    stages[hr.in_gap] = -1
    probabilities[hr.in_gap] = np.nan
    if hr.gaps:
        spans = ", ".join(f"{_clock(beats.start, a)}-{_clock(beats.start, b)}" for a, b in hr.gaps[:5])
        more = f" and {len(hr.gaps) - 5} more" if len(hr.gaps) > 5 else ""
        total = sum(b - a for a, b in hr.gaps) / 60
        logger.warning(
            "%s: %d stretch(es) longer than %g min without a valid heart rate (%.1f min in all: %s%s); "
            "%d of %d epochs there are left unstaged",
            beats.source,
            len(hr.gaps),
            max_gap_min,
            total,
            spans,
            more,
            int(hr.in_gap.sum()),
            n_epochs,
        )
    return Prediction(
        stages=stages,
        probabilities=probabilities,
        onsets=np.arange(n_epochs, dtype=np.float64) * epoch_seconds,
        class_names=class_names,
        grouping=grouping,
        epoch_seconds=epoch_seconds,
        channel=f"heart rate ({beats.format} beats)",
        source=Path(beats.source),
        start=beats.start,
        sfreq=sfreq,
        n_windows=n_windows,
    )
