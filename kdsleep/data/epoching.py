"""Cutting signals into scored epochs (windows of consecutive epochs are :mod:`kdsleep.data.windows`).

Epochs are aligned to the hypnogram's onsets, not to the first sample. A segment may be longer than the
step between onsets: MASS scored 20-s epochs, which the paper widens to 30 s by taking 5 s on each side
(see :func:`kdsleep.data.readers.annotations.widen_epochs`), so consecutive segments overlap by 10 s.
Segments that do not lie entirely inside the signal (a partial trailing epoch, or a widened first epoch)
are dropped. Epochs that carry no sleep stage keep their place (windows stay consecutive) and get the label
``-1``; so do epochs holding NaN samples, with a warning (flat and NaN stretches of the raw signal are
masked earlier, by :func:`kdsleep.data.readers.quality.mask_bad_epochs`).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from kdsleep.data.readers.quality import BadSignalWarning
from kdsleep.data.stages import IGNORE_INDEX, StageGrouping, stages_to_classes

# the window rules live in kdsleep.data.windows; these names stay importable from here

__all__ = ["Epochs", "epoch_labels", "epoch_signals"]

logger = logging.getLogger(__name__)


@dataclass
class Epochs:
    """Signals cut into scored epochs.

    Attributes
    ----------
    data : ndarray, shape (n_epochs, n_channels, n_samples_per_epoch)
        Epoch segments.
    stages : ndarray of int8, shape (n_epochs,)
        :class:`~kdsleep.data.stages.SleepStage` of each epoch.
    bad : ndarray of bool, shape (n_epochs,)
        Epochs overlapping NaN or flat signal.
    onsets : ndarray of float64, shape (n_epochs,)
        Start of each segment in seconds after the recording start.
    sfreq : float
        Sampling frequency in Hz.
    channel_names : list of str
    """

    data: np.ndarray
    stages: np.ndarray
    bad: np.ndarray
    onsets: np.ndarray
    sfreq: float
    channel_names: list[str]

    @property
    def n_epochs(self) -> int:
        return int(self.stages.shape[0])

    def labels(self, grouping: str | int | StageGrouping) -> np.ndarray:
        """Class index of every epoch in ``grouping``; unscored, movement, artefact and bad epochs are -1."""
        return epoch_labels(self.stages, self.bad, grouping)


def epoch_labels(stages: np.ndarray, bad: np.ndarray, grouping: str | int | StageGrouping) -> np.ndarray:
    """Class indices of ``stages`` in ``grouping``, with ``-1`` for unscored kinds and ``bad`` epochs."""
    labels = stages_to_classes(stages, grouping)
    labels[np.asarray(bad, dtype=bool)] = IGNORE_INDEX
    return labels


def epoch_signals(
    data: np.ndarray,
    sfreq: float,
    stages: np.ndarray,
    onset: float = 0.0,
    epoch_length: float = 30.0,
    epoch_step: float | None = None,
    channel_names: list[str] | None = None,
    source: str | None = None,
) -> Epochs:
    """Cut ``data`` into one segment per epoch of a hypnogram, aligned to its onsets.

    Epoch ``k`` covers ``[onset + k * epoch_step, onset + k * epoch_step + epoch_length)`` seconds, the
    convention of :class:`~kdsleep.data.recording.Hypnogram`.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_samples)
        Signals at ``sfreq``, starting at the recording start.
    sfreq : float
        Sampling frequency in Hz (200 in the paper).
    stages : ndarray of int, shape (n_epochs,)
        :class:`~kdsleep.data.stages.SleepStage` of each epoch.
    onset : float, default 0.0
        Start of the first epoch's segment in seconds after the recording start; may be negative (the
        widened first MASS epoch), in which case that epoch is dropped.
    epoch_length : float, default 30.0
        Segment length in seconds (30 s in the paper).
    epoch_step : float, optional
        Seconds between consecutive onsets; default ``epoch_length``. MASS 20-s scorings widened to 30 s
        have ``epoch_length=30``, ``epoch_step=20``.
    channel_names : list of str, optional
    source : str, optional
        Name of the recording, for messages.

    Returns
    -------
    Epochs
        Epochs whose segment is not entirely inside the signal (at either end) are dropped; epochs with
        non-finite samples are marked ``bad`` with a :class:`~kdsleep.data.readers.quality.BadSignalWarning`.

    Raises
    ------
    ValueError
        When no epoch fits inside the signal, or the arguments are inconsistent.
    """
    where = f"{source}: " if source else ""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{where}epoching expects data of shape (n_channels, n_samples), got {data.shape}")
    if not (math.isfinite(sfreq) and sfreq > 0):
        raise ValueError(f"{where}sfreq must be a positive number of Hz, got {sfreq!r}")
    if epoch_step is None:
        epoch_step = epoch_length
    if not (epoch_length > 0 and epoch_step > 0):
        raise ValueError(
            f"{where}epoch_length ({epoch_length!r} s) and epoch_step ({epoch_step!r} s) must be > 0"
        )
    samples_per_epoch = epoch_length * sfreq
    if abs(samples_per_epoch - round(samples_per_epoch)) > 1e-6:
        raise ValueError(
            f"{where}epoch_length {epoch_length:g} s is not a whole number of samples at {sfreq:g} Hz"
        )
    samples_per_epoch = int(round(samples_per_epoch))
    stages = np.asarray(stages)
    if stages.ndim != 1:
        raise ValueError(f"{where}stages must be 1-D (one per epoch), got shape {stages.shape}")
    n_channels, n_samples = data.shape
    if channel_names is None:
        channel_names = [f"ch{i}" for i in range(n_channels)]
    if len(channel_names) != n_channels:
        raise ValueError(f"{where}{len(channel_names)} channel names for {n_channels} channels")
    seg_onsets = onset + epoch_step * np.arange(stages.size)
    starts = np.round(seg_onsets * sfreq).astype(np.int64)
    inside = (starts >= 0) & (starts + samples_per_epoch <= n_samples)
    if not inside.all():
        # onsets increase, so only epochs at the two ends can fall outside: the rest stay consecutive
        kept = np.flatnonzero(inside)
        if kept.size == 0:
            raise ValueError(
                f"{where}no {epoch_length:g}-s epoch fits inside the signal "
                f"({n_samples / sfreq:g} s; {stages.size} epochs from {onset:g} s)"
            )
        lo, hi = int(kept[0]), int(kept[-1]) + 1
        logger.debug("%sdropped %d leading and %d trailing partial epochs", where, lo, stages.size - hi)
        stages, seg_onsets, starts = stages[lo:hi], seg_onsets[lo:hi], starts[lo:hi]
    index = starts[:, None] + np.arange(samples_per_epoch)[None, :]
    # (n_epochs, n_channels, samples): one gather, in the data's dtype
    epochs = np.ascontiguousarray(np.moveaxis(data[:, index], 0, 1))
    bad = ~np.isfinite(epochs).all(axis=(1, 2))
    n_bad = int(bad.sum())
    if n_bad:
        message = (
            f"{where}{n_bad} of {stages.size} epochs hold NaN or infinite samples and are masked (label -1)"
        )
        warnings.warn(message, BadSignalWarning, stacklevel=2)
        logger.info(message)
    return Epochs(
        data=epochs,
        stages=stages.astype(np.int8),
        bad=bad,
        onsets=seg_onsets.astype(np.float64),
        sfreq=float(sfreq),
        channel_names=list(channel_names),
    )
