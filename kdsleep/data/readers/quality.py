"""Masking of NaN and flat (disconnected-electrode) stretches.

Bad stretches are not repaired: the epochs they touch are marked ``SleepStage.ARTEFACT`` in the hypnogram,
so they are ignored by the losses and metrics like any unscored epoch, and a warning says how much was
masked.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from kdsleep.data.recording import Hypnogram, Recording
from kdsleep.data.stages import SleepStage

__all__ = ["BadSignalWarning", "bad_sample_mask", "mask_bad_epochs"]

logger = logging.getLogger(__name__)


class BadSignalWarning(UserWarning):
    """Stretches of a signal were NaN or flat and the epochs they touch were masked."""


def bad_sample_mask(
    x: np.ndarray, sfreq: float, flat_seconds: float = 5.0, flat_tolerance: float = 0.0
) -> np.ndarray:
    """Boolean mask of samples that are NaN/infinite or inside a flat run of at least ``flat_seconds``.

    Parameters
    ----------
    x : np.ndarray
        1-D signal.
    sfreq : float
        Sampling rate, Hz.
    flat_seconds : float
        Shortest constant stretch counted as flat (5 s: far longer than any physiological plateau).
    flat_tolerance : float
        Largest sample-to-sample change still counted as constant (0: exactly constant, as a disconnected
        channel stored at a fixed digital value is).
    """
    x = np.asarray(x)
    bad = ~np.isfinite(x)
    if x.size < 2:
        return bad
    min_run = max(2, int(round(flat_seconds * sfreq)))
    steady = np.abs(np.diff(x)) <= flat_tolerance  # steady[i]: x[i] == x[i + 1]
    steady &= ~bad[:-1] & ~bad[1:]
    # Runs of steady steps: a run of k steps spans k + 1 samples.
    edges = np.diff(np.concatenate(([0], steady.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    for s, e in zip(starts, ends, strict=True):
        if e - s + 1 >= min_run:
            bad[s : e + 1] = True
    return bad


def mask_bad_epochs(
    recording: Recording,
    hypnogram: Hypnogram,
    channels: Sequence[str] | None = None,
    *,
    flat_seconds: float = 5.0,
    warn: bool = True,
) -> Hypnogram:
    """Mark epochs touched by NaN or flat stretches of ``channels`` as ``SleepStage.ARTEFACT``.

    Parameters
    ----------
    recording : Recording
        The signals.
    hypnogram : Hypnogram
        Scoring aligned to the recording start.
    channels : sequence of str, optional
        Channels to check; default all.
    flat_seconds : float
        See :func:`bad_sample_mask`.
    warn : bool
        Emit a :class:`BadSignalWarning` naming the file, channel and amount masked; ``False`` logs the same
        message at INFO level instead (never both, so a command line shows it once).

    Returns
    -------
    Hypnogram
        A copy with the affected epochs masked (the input is unchanged).
    """
    stages = hypnogram.stages.copy()
    onsets = hypnogram.epoch_onsets
    for name in channels or recording.channel_names:
        signal = recording[name]
        bad = bad_sample_mask(signal.data, signal.sfreq, flat_seconds)
        if not bad.any():
            continue
        # Per epoch: any bad sample inside its window (cumulative sum gives O(1) window counts).
        csum = np.concatenate(([0], np.cumsum(bad)))
        start = np.clip(np.round(onsets * signal.sfreq).astype(np.int64), 0, bad.size)
        stop = np.clip(
            np.round((onsets + hypnogram.epoch_length) * signal.sfreq).astype(np.int64), 0, bad.size
        )
        hit = (csum[stop] - csum[start]) > 0
        newly = hit & (stages != int(SleepStage.ARTEFACT))
        stages[hit] = int(SleepStage.ARTEFACT)
        n_nan = int((~np.isfinite(signal.data)).sum())
        message = (
            f"{recording.source or recording.subject}: channel {name!r}: {bad.sum() / signal.sfreq:.1f} s of NaN "
            f"or flat signal ({n_nan / signal.sfreq:.1f} s NaN); {int(newly.sum())} epoch(s) masked as artefact"
        )
        # one channel of report: a Python warning, or (warn=False) a log line
        if warn:
            warnings.warn(message, BadSignalWarning, stacklevel=2)
        else:
            logger.info(message)
    return Hypnogram(
        stages,
        hypnogram.epoch_length,
        hypnogram.onset,
        hypnogram.source,
        hypnogram.labels,
        hypnogram.epoch_step,
    )
