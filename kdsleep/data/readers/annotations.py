"""Hypnograms stored as EDF+ annotations: MASS ``Base`` files, HMC ``*_sleepscoring.edf``, Sleep-EDF
``*-Hypnogram.edf``.

Stage annotations become a regular epoch grid; other annotations (lights off/on, arousals) are skipped.
An annotation that looks like a stage (``"Sleep stage ..."``) but is not in the label mapping is an error,
never a guess.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep.data.readers.edf import read_edf_header
from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage, UnknownStageLabelError, get_label_mapping, parse_stage_label

__all__ = ["fit_to_signal", "hypnogram_from_annotations", "read_edf_hypnogram", "widen_epochs"]

logger = logging.getLogger(__name__)

#: Largest difference in seconds between the header start times of a scoring file and its signal file
#: that is applied as a shift (12 h); beyond it the dates are taken as unrelated (e.g. anonymised).
MAX_START_OFFSET = 12 * 3600.0


def _looks_like_stage(label: str) -> bool:
    text = label.split("@@", 1)[0].strip().lower()
    return text.startswith(("sleep stage", "sleep_stage", "stage "))


def hypnogram_from_annotations(
    onsets: np.ndarray,
    durations: np.ndarray,
    descriptions: list[str],
    *,
    epoch_length: float | None = None,
    mapping: str | Mapping[str, SleepStage | int] = "auto",
    source: Path | None = None,
    grid_onset: float | None = None,
) -> Hypnogram:
    """Turn (onset, duration, description) annotations into a :class:`Hypnogram`.

    Parameters
    ----------
    onsets, durations : np.ndarray
        Seconds after the recording start.
    descriptions : list of str
        Annotation texts.
    epoch_length : float, optional
        Scoring epoch in seconds; default the greatest common divisor of the stage durations (30 s in
        AASM scorings, 20 s in R&K scorings of MASS SS2/SS4/SS5), or their most common value when that
        divisor is below 5 s.
    mapping : str or dict
        Label mapping (see :func:`kdsleep.data.stages.parse_stage_label`).
    source : Path, optional
        File named in errors.
    grid_onset : float, optional
        Start of the epoch grid; default the first stage annotation's onset.
    """
    name, table = get_label_mapping(mapping)
    lookup = mapping if isinstance(mapping, str) else table  # keeps the mapping's name for error messages
    keep_onsets, keep_durations, stages, labels = [], [], [], []
    skipped: dict[str, int] = {}
    for onset, duration, text in zip(onsets, durations, descriptions, strict=True):
        try:
            stage = parse_stage_label(text, lookup, source=source)
        except UnknownStageLabelError:
            if _looks_like_stage(text):
                raise UnknownStageLabelError(text, name, table.keys(), source) from None
            skipped[text] = skipped.get(text, 0) + 1
            continue
        keep_onsets.append(float(onset))
        keep_durations.append(float(duration))
        stages.append(int(stage))
        labels.append(text.split("@@", 1)[0])
    if skipped:
        logger.debug("%s: skipped non-stage annotations %s", source, skipped)
    if not stages:
        raise ValueError(
            f"{source}: no sleep-stage annotations found (label mapping {name!r}); annotations seen: "
            f"{sorted(skipped)[:20]}"
        )
    durations_a = np.asarray(keep_durations)
    if epoch_length is None:
        positive = durations_a[durations_a > 0]
        if positive.size == 0:
            raise ValueError(f"{source}: stage annotations have no durations; pass epoch_length")
        # The scoring epoch divides every stage duration (Sleep-EDF stores runs of equal stages as one
        # long event); fall back to the most common duration if the common divisor is implausibly short.
        millis = np.round(positive * 1000).astype(np.int64)
        divisor = int(np.gcd.reduce(millis)) / 1000
        values, counts = np.unique(millis / 1000, return_counts=True)
        epoch_length = divisor if divisor >= 5.0 else float(values[np.argmax(counts)])
    # Zero-duration stage annotations mark one epoch.
    durations_a = np.where(durations_a > 0, durations_a, epoch_length)
    bad = np.abs(durations_a / epoch_length - np.round(durations_a / epoch_length)) * epoch_length > 1e-3
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: stage annotation {labels[i]!r} at {keep_onsets[i]:g} s lasts {durations_a[i]:g} s, "
            f"not a whole number of {epoch_length:g}-s epochs"
        )
    return Hypnogram.from_events(
        keep_onsets, durations_a, stages, epoch_length, source, labels, onset=grid_onset
    )


def widen_epochs(
    hypnogram: Hypnogram, epoch_length: float = 30.0, signal_duration: float | None = None
) -> Hypnogram:
    """Widen short scoring epochs to ``epoch_length`` by taking equal margins on both sides.

    MASS SS2/SS4/SS5 are scored in 20-s epochs; Joshi et al. (arXiv 2112.07252) widen them to 30 s with 5 s
    on each side, so consecutive windows overlap by 10 s while the epoch onsets keep their 20-s step.
    Epochs whose widened window would start before the recording (or end after ``signal_duration``) are
    dropped.

    Parameters
    ----------
    hypnogram : Hypnogram
        Scoring on a regular grid (``epoch_step`` = its epoch length).
    epoch_length : float
        Target window in seconds (30 s in the paper).
    signal_duration : float, optional
        Signal length in seconds, to drop windows that would run past its end.
    """
    step = hypnogram.epoch_step
    if epoch_length < hypnogram.epoch_length:
        raise ValueError(
            f"cannot widen {hypnogram.epoch_length:g}-s epochs to shorter {epoch_length:g}-s ones"
        )
    margin = (epoch_length - hypnogram.epoch_length) / 2
    onsets = hypnogram.epoch_onsets - margin
    keep = onsets >= -1e-9
    if signal_duration is not None:
        keep &= onsets + epoch_length <= signal_duration + 1e-9
    first, n_keep = (int(np.argmax(keep)), int(keep.sum())) if keep.any() else (0, 0)
    if n_keep and not keep[first : first + n_keep].all():
        raise AssertionError("widening kept a non-contiguous set of epochs")
    dropped = hypnogram.n_epochs - n_keep
    if dropped:
        logger.info(
            "%s: %d epoch(s) at the edges dropped when widening to %g s",
            hypnogram.source,
            dropped,
            epoch_length,
        )
    labels = None if hypnogram.labels is None else hypnogram.labels[first : first + n_keep]
    return Hypnogram(
        hypnogram.stages[first : first + n_keep].copy(),
        epoch_length=epoch_length,
        onset=max(0.0, float(onsets[first])) if n_keep else 0.0,
        source=hypnogram.source,
        labels=labels,
        epoch_step=step,
    )


def read_edf_hypnogram(
    path: str | os.PathLike[str],
    *,
    epoch_length: float | None = None,
    mapping: str | Mapping[str, SleepStage | int] = "auto",
    widen_to: float | None = None,
    signal_duration: float | None = None,
    recording_start: datetime | None = None,
) -> Hypnogram:
    """Read the sleep-stage annotations of an EDF+ file.

    Parameters
    ----------
    path : path-like
        EDF+ file (annotations-only scoring file or a PSG file with annotations).
    epoch_length : float, optional
        Scoring epoch; default inferred from the stage annotations.
    mapping : str or dict
        Label mapping; ``"auto"`` reads AASM and R&K spellings (``Sleep stage N2``, ``Sleep stage 4``, ...).
    widen_to : float, optional
        Widen shorter epochs to this length (see :func:`widen_epochs`); e.g. 30 for MASS 20-s scorings.
        Ignored when the epochs already have this length.
    signal_duration : float, optional
        Length of the paired signal in seconds: unscored epochs past its end are cropped, scored ones are an
        error ("annotations past the end of the signal").
    recording_start : datetime, optional
        Start of the paired signal file. A scoring file whose header starts later (or earlier) by up to
        :data:`MAX_START_OFFSET` seconds has its onsets shifted onto the signal's time axis, as mne does
        when it attaches annotations to a recording; larger differences (typically one of the two dates
        anonymised) are ignored with a warning.
    """
    import mne

    path = Path(path)
    header = read_edf_header(path)  # clear errors for corrupt / truncated files before mne reads it
    annotations = mne.read_annotations(path)
    onsets = np.asarray(annotations.onset, dtype=np.float64)
    durations = np.asarray(annotations.duration, dtype=np.float64)
    descriptions = list(annotations.description)
    if recording_start is not None and header.start is not None and header.start != recording_start:
        offset = (header.start - recording_start).total_seconds()
        if abs(offset) <= MAX_START_OFFSET:
            logger.info(
                "%s: scoring starts %+g s from the signal; onsets shifted to the signal's time axis",
                path,
                offset,
            )
            onsets = onsets + offset
            before = onsets < -1e-6
            if before.any():
                logger.warning(
                    "%s: %d annotation(s) before the signal start dropped", path, int(before.sum())
                )
                keep = ~before
                onsets, durations = onsets[keep], durations[keep]
                descriptions = [d for d, k in zip(descriptions, keep, strict=True) if k]
        else:
            logger.warning(
                "%s: scoring file starts %s, signal %s (%+g s apart): start times ignored, onsets taken as "
                "seconds after the signal start",
                path,
                header.start,
                recording_start,
                offset,
            )
    hypnogram = hypnogram_from_annotations(
        onsets,
        durations,
        descriptions,
        epoch_length=epoch_length,
        mapping=mapping,
        source=path,
    )
    if widen_to is not None and abs(widen_to - hypnogram.epoch_length) > 1e-9:
        hypnogram = widen_epochs(hypnogram, widen_to, signal_duration)
    if signal_duration is not None:
        hypnogram = fit_to_signal(hypnogram, signal_duration)
    return hypnogram


def fit_to_signal(hypnogram: Hypnogram, signal_duration: float) -> Hypnogram:
    """Crop trailing unscored epochs that run past the signal; raise if scored ones do.

    Scoring files often end with an unscored epoch that overhangs the signal (Sleep-EDF's final
    ``Sleep stage ?``); that is harmless, but a scored epoch past the end means the files do not belong
    together.
    """
    if hypnogram.end <= signal_duration + 1e-6:
        return hypnogram
    cropped = hypnogram.crop(signal_duration)
    lost = hypnogram.stages[cropped.n_epochs :]
    if (lost <= int(SleepStage.R)).any():
        hypnogram.check_within(signal_duration)  # raises with the numbers
    logger.debug("%s: %d unscored epoch(s) past the signal end cropped", hypnogram.source, len(lost))
    return cropped
