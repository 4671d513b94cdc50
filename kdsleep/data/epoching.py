"""Cutting signals into scored epochs and grouping epochs into windows of consecutive epochs.

Epochs are aligned to the hypnogram's onsets, not to the first sample. An epoch may be longer than the
scoring interval: MASS scored 20-s epochs, which the paper widens to 30 s by taking 5 s on each side, so the
segment of epoch ``k`` is centred on its scoring interval. Segments that do not lie entirely inside the
signal (a partial trailing epoch, or a widened first epoch) are dropped. Epochs that carry no sleep stage
keep their place (windows stay consecutive) and get the label ``-1``; so do epochs that overlap a stretch of
NaN or flat signal, with a warning.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from kdsleep.data.stages import IGNORE_INDEX, StageGrouping, stages_to_classes

__all__ = [
    "BadSignalWarning",
    "Epochs",
    "epoch_labels",
    "epoch_signals",
    "find_bad_spans",
    "n_windows",
    "window_starts",
]

logger = logging.getLogger(__name__)

#: Epochs per window, as in U-Time.
DEFAULT_WINDOW_EPOCHS = 35


class BadSignalWarning(UserWarning):
    """Epochs were masked because their signal holds NaN or flat stretches."""


_kernel_cache: dict[str, object] = {}


def _get_kernel():
    kernel = _kernel_cache.get("bad_runs")
    if kernel is not None:
        return kernel
    import numba

    @numba.njit(cache=True, nogil=True)
    def _bad_runs(x, min_flat):  # pragma: no cover - compiled
        # Marks NaN / inf samples, and runs of >= min_flat identical consecutive samples (a disconnected
        # electrode or a saturated amplifier), in a boolean mask.
        n = x.shape[0]
        bad = np.zeros(n, dtype=np.bool_)
        run_start = 0
        for i in range(n):
            if not np.isfinite(x[i]):
                bad[i] = True
            if i > 0 and x[i] != x[i - 1]:
                if i - run_start >= min_flat:
                    bad[run_start:i] = True
                run_start = i
        if n - run_start >= min_flat:
            bad[run_start:n] = True
        return bad

    _kernel_cache["bad_runs"] = _bad_runs
    return _bad_runs


def find_bad_spans(x: np.ndarray, sfreq: float, min_flat_duration: float = 5.0) -> np.ndarray:
    """Time spans (in seconds) where a raw signal is NaN / infinite or flat.

    Run on the signal as read, before filtering (a filter would smear a flat line into small values).

    Parameters
    ----------
    x : array_like, shape (n_samples,)
        One channel.
    sfreq : float
        Its sampling frequency in Hz.
    min_flat_duration : float, default 5.0
        Shortest run of identical samples, in seconds, that counts as flat.

    Returns
    -------
    spans : ndarray of float64, shape (n_spans, 2)
        ``[start, stop)`` of each bad stretch in seconds after the first sample.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"find_bad_spans: x must be one channel (1-D), got shape {x.shape}")
    if not (math.isfinite(sfreq) and sfreq > 0):
        raise ValueError(f"find_bad_spans: sfreq must be a positive number of Hz, got {sfreq!r}")
    if not min_flat_duration > 0:
        raise ValueError(f"find_bad_spans: min_flat_duration must be > 0 s, got {min_flat_duration!r}")
    if x.size == 0:
        return np.zeros((0, 2))
    min_flat = max(2, int(round(min_flat_duration * sfreq)))
    bad = _get_kernel()(x, min_flat)
    edges = np.diff(np.concatenate([[0], bad.view(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return np.stack([starts, stops], axis=1).astype(np.float64) / sfreq


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
    epoch_duration: float = 30.0,
    bad_spans: np.ndarray | None = None,
    channel_names: list[str] | None = None,
    source: str | None = None,
) -> Epochs:
    """Cut ``data`` into one segment per scored epoch, aligned to the hypnogram's onsets.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_samples)
        Signals at ``sfreq``, starting at the recording start.
    sfreq : float
        Sampling frequency in Hz (200 in the paper).
    stages : ndarray of int, shape (n_scored,)
        :class:`~kdsleep.data.stages.SleepStage` of each epoch of the hypnogram.
    onset : float, default 0.0
        Start of the first scored epoch in seconds after the recording start.
    epoch_length : float, default 30.0
        Scoring interval in seconds (20 s for older MASS scorings).
    epoch_duration : float, default 30.0
        Length of each cut segment in seconds, centred on the scoring interval (30 s in the paper, which
        widens 20-s MASS epochs by 5 s on each side).
    bad_spans : ndarray, shape (n_spans, 2), optional
        ``[start, stop)`` seconds of NaN / flat signal (see :func:`find_bad_spans`); overlapping epochs are
        marked bad.
    channel_names : list of str, optional
    source : str, optional
        Name of the recording, for messages.

    Returns
    -------
    Epochs

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
    if not (epoch_length > 0 and epoch_duration >= epoch_length):
        raise ValueError(
            f"{where}epoch_duration ({epoch_duration!r} s) must be at least the scoring epoch_length "
            f"({epoch_length!r} s), which must be > 0"
        )
    samples_per_epoch = epoch_duration * sfreq
    if abs(samples_per_epoch - round(samples_per_epoch)) > 1e-6:
        raise ValueError(
            f"{where}epoch_duration {epoch_duration:g} s is not a whole number of samples at {sfreq:g} Hz"
        )
    samples_per_epoch = int(round(samples_per_epoch))
    stages = np.asarray(stages)
    n_channels, n_samples = data.shape
    if channel_names is None:
        channel_names = [f"ch{i}" for i in range(n_channels)]
    if len(channel_names) != n_channels:
        raise ValueError(f"{where}{len(channel_names)} channel names for {n_channels} channels")
    widen = (epoch_duration - epoch_length) / 2
    seg_onsets = onset + epoch_length * np.arange(stages.size) - widen
    starts = np.round(seg_onsets * sfreq).astype(np.int64)
    inside = (starts >= 0) & (starts + samples_per_epoch <= n_samples)
    if not inside.all():
        # segments can only fall outside at the ends, and keeping the rest consecutive matters for windows
        first_in = np.flatnonzero(inside)
        if first_in.size == 0:
            raise ValueError(
                f"{where}no {epoch_duration:g}-s epoch fits inside the signal "
                f"({n_samples / sfreq:g} s; scoring from {onset:g} s, {stages.size} epochs)"
            )
        lo, hi = int(first_in[0]), int(first_in[-1]) + 1
        if not inside[lo:hi].all():
            raise ValueError(f"{where}epoch segments are not monotonic in time")
        logger.debug("%sdropped %d leading and %d trailing partial epochs", where, lo, stages.size - hi)
        stages, seg_onsets, starts = stages[lo:hi], seg_onsets[lo:hi], starts[lo:hi]
    index = starts[:, None] + np.arange(samples_per_epoch)[None, :]
    # (n_epochs, n_channels, samples): one gather, in the data's dtype
    epochs = np.ascontiguousarray(np.moveaxis(data[:, index], 0, 1))
    bad = np.zeros(stages.size, dtype=bool)
    if bad_spans is not None and len(bad_spans):
        spans = np.asarray(bad_spans, dtype=np.float64).reshape(-1, 2)
        seg_end = seg_onsets + epoch_duration
        # an epoch is bad when any span overlaps [onset, onset + duration)
        order = np.argsort(spans[:, 0])
        spans = spans[order]
        # for each epoch, the spans starting before its end; bad if the latest-ending of them ends after its start
        max_stop = np.maximum.accumulate(spans[:, 1])
        k = np.searchsorted(spans[:, 0], seg_end, side="left") - 1
        bad = (k >= 0) & (max_stop[np.maximum(k, 0)] > seg_onsets)
    nan_epochs = ~np.isfinite(epochs).all(axis=(1, 2))
    bad |= nan_epochs
    n_bad = int(bad.sum())
    if n_bad:
        message = (
            f"{where}{n_bad} of {stages.size} epochs overlap NaN or flat signal and are masked (label -1)"
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


def n_windows(n_epochs: int, window_epochs: int = DEFAULT_WINDOW_EPOCHS, stride: int | None = None) -> int:
    """Number of windows of ``window_epochs`` consecutive epochs, ``stride`` epochs apart."""
    return window_starts(n_epochs, window_epochs, stride).size


def window_starts(
    n_epochs: int,
    window_epochs: int = DEFAULT_WINDOW_EPOCHS,
    stride: int | None = None,
    source: str | None = None,
) -> np.ndarray:
    """First epoch of every window of ``window_epochs`` consecutive epochs.

    Parameters
    ----------
    n_epochs : int
        Epochs in the recording.
    window_epochs : int, default 35
        Epochs per window (35 in U-Time).
    stride : int, optional
        Epochs between window starts; defaults to ``window_epochs`` (no overlap). Epochs after the last full
        window are not covered.
    source : str, optional
        Name of the recording, for the error message.

    Returns
    -------
    ndarray of int64

    Raises
    ------
    ValueError
        When the recording is shorter than one window.
    """
    if stride is None:
        stride = window_epochs
    for name, value in (("window_epochs", window_epochs), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive number of epochs, got {value!r}")
    if n_epochs < window_epochs:
        where = f"{source}: " if source else ""
        raise ValueError(
            f"{where}recording has {n_epochs} epochs, shorter than one window of {window_epochs} epochs"
        )
    return np.arange(0, n_epochs - window_epochs + 1, stride, dtype=np.int64)
