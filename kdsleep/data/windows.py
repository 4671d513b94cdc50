"""Windows of consecutive epochs: where they start, how their outputs merge, and the dataset that serves them.

Every sleep model of the package reads windows of ``window_epochs`` consecutive 30-s epochs (35 in U-Time)
and outputs one prediction per epoch of the window. This module holds the three rules that decide which
epochs are seen and scored, used alike by training, validation, testing, the slpdb study and prediction:

Where windows start
    :func:`covering_starts`: windows every ``stride`` epochs from the first epoch and, when the last of them
    stops short of the end of the night, one more window aligned to the last epoch. Every epoch of a night
    at least one window long is covered; nothing is zero-padded. Training uses a stride (overlapping windows
    give more distinct inputs); validation, test and prediction use ``stride = window_epochs`` (windows side
    by side, plus the end-aligned one). :func:`window_starts` (whole windows only, the tail left out) is kept
    for callers that want strictly periodic windows.

How overlapping outputs merge
    :func:`owned_positions` / :func:`merge_windows`: an epoch covered by several windows takes the output of
    the window in which it lies farthest from the window's edges (the most central window); ties go to the
    earlier window. U-Time sees an epoch near a window edge with context on one side only (and its pooling
    pads there), so the most central window is the one with the most context on both sides. The rule picks
    one window per epoch, so it applies unchanged to class predictions, probabilities and feature rows, and
    a scorer that counts only each window's *owned* epochs counts every epoch exactly once.

What is served
    :class:`WindowDataset`: ``(eeg, ecg, labels)`` windows over a :class:`WindowStore` -- the on-disk cache
    (:class:`kdsleep.data.cache.PreprocessedCache`) or recordings held in memory (:class:`MemoryStore`).
    With ``evaluation=True`` its windows cover every epoch and the labels of epochs owned by another window
    are ``-1``, so metrics over its windows score every scored epoch once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kdsleep.data.stages import StageGrouping, get_grouping, stages_to_classes

__all__ = [
    "DEFAULT_WINDOW_EPOCHS",
    "MemoryStore",
    "WindowDataset",
    "WindowStore",
    "covering_starts",
    "merge_windows",
    "n_windows",
    "owned_positions",
    "window_starts",
]

logger = logging.getLogger(__name__)

#: Epochs per window, as in U-Time.
DEFAULT_WINDOW_EPOCHS = 35


def _check_sizes(window_epochs: int, stride: int) -> None:
    for name, value in (("window_epochs", window_epochs), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive number of epochs, got {value!r}")


def _too_short(n_epochs: int, window_epochs: int, source: str | None) -> ValueError:
    where = f"{source}: " if source else ""
    return ValueError(
        f"{where}recording has {n_epochs} epochs, shorter than one window of {window_epochs} epochs"
    )


def window_starts(
    n_epochs: int,
    window_epochs: int = DEFAULT_WINDOW_EPOCHS,
    stride: int | None = None,
    source: str | None = None,
) -> np.ndarray:
    """First epoch of every whole window ``stride`` epochs apart; epochs after the last whole window are left out.

    Parameters
    ----------
    n_epochs : int
        Epochs in the recording.
    window_epochs : int, default 35
        Epochs per window.
    stride : int, optional
        Epochs between window starts; default ``window_epochs``.
    source : str, optional
        Name of the recording, for the error message.

    Returns
    -------
    ndarray of int64

    Raises
    ------
    ValueError
        When the recording is shorter than one window, or a size is not a positive integer.
    """
    stride = window_epochs if stride is None else stride
    _check_sizes(window_epochs, stride)
    if n_epochs < window_epochs:
        raise _too_short(n_epochs, window_epochs, source)
    return np.arange(0, n_epochs - window_epochs + 1, stride, dtype=np.int64)


def n_windows(n_epochs: int, window_epochs: int = DEFAULT_WINDOW_EPOCHS, stride: int | None = None) -> int:
    """Number of whole windows of :func:`window_starts`."""
    return int(window_starts(n_epochs, window_epochs, stride).size)


def covering_starts(
    n_epochs: int,
    window_epochs: int = DEFAULT_WINDOW_EPOCHS,
    stride: int | None = None,
    source: str | None = None,
) -> np.ndarray:
    """First epoch of windows that cover every epoch of a recording, the last one aligned to its end.

    Parameters
    ----------
    n_epochs : int
        Epochs in the recording.
    window_epochs : int, default 35
        Epochs per window.
    stride : int, optional
        Epochs between window starts (default ``window_epochs``: windows side by side).
    source : str, optional
        Name of the recording, for the error message.

    Returns
    -------
    ndarray of int64
        ``0, s, 2s, ...`` and, when the last of these windows stops short of the end, ``n_epochs - window_epochs``.

    Raises
    ------
    ValueError
        When the recording is shorter than one window, or a size is not a positive integer.
    """
    starts = window_starts(n_epochs, window_epochs, stride, source)
    if starts[-1] + window_epochs < n_epochs:
        starts = np.append(starts, np.int64(n_epochs - window_epochs))
    return starts


def owned_positions(starts: Sequence[int] | np.ndarray, window_epochs: int) -> np.ndarray:
    """Which epochs of each window the merge rule gives to that window.

    An epoch covered by several windows belongs to the one in which it lies farthest from the window's
    edges; on a tie, to the earlier window (the module docstring says why).

    Parameters
    ----------
    starts : sequence of int
        First epoch of every window of one recording, in increasing order.
    window_epochs : int
        Epochs per window.

    Returns
    -------
    ndarray of bool, shape (n_windows, window_epochs)
        ``True`` where the window owns the epoch; every covered epoch is owned by exactly one window.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size == 0:
        return np.zeros((0, window_epochs), dtype=bool)
    position = np.arange(window_epochs)
    centrality = np.minimum(position, window_epochs - 1 - position)
    n_total = int(starts.max()) + window_epochs
    best = np.full(n_total, -1, dtype=np.int64)
    owner = np.full(n_total, -1, dtype=np.int64)
    for i, start in enumerate(starts.tolist()):
        index = start + position
        take = centrality > best[index]
        best[index[take]] = centrality[take]
        owner[index[take]] = i
    return owner[starts[:, None] + position[None, :]] == np.arange(starts.size)[:, None]


def merge_windows(
    n_epochs: int, starts: Sequence[int] | np.ndarray, outputs: np.ndarray, fill: Any = -1
) -> np.ndarray:
    """Per-epoch outputs of one recording from per-window outputs, by the most-central-window rule.

    Parameters
    ----------
    n_epochs : int
        Epochs in the recording.
    starts : sequence of int
        First epoch of every window.
    outputs : ndarray, shape (n_windows, window_epochs, ...)
        What each window gives for each of its epochs: a class, a row of probabilities, a feature row.
    fill : scalar
        Value of epochs no window covers.

    Returns
    -------
    ndarray, shape (n_epochs, ...)
    """
    outputs = np.asarray(outputs)
    starts = np.asarray(starts, dtype=np.int64)
    if outputs.shape[0] != starts.size:
        raise ValueError(f"{outputs.shape[0]} window outputs for {starts.size} window starts")
    window_epochs = outputs.shape[1] if outputs.ndim > 1 else 0
    if starts.size and int(starts.max()) + window_epochs > n_epochs:
        raise ValueError(
            f"a window of {window_epochs} epochs from epoch {int(starts.max())} runs past {n_epochs} epochs"
        )
    out = np.full((n_epochs, *outputs.shape[2:]), fill, dtype=outputs.dtype)
    owned = owned_positions(starts, window_epochs)
    for start, output, mask in zip(starts.tolist(), outputs, owned, strict=True):
        out[start + np.flatnonzero(mask)] = output[mask]
    return out


# --------------------------------------------------------------------------------------------------
# Stores and the window dataset
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class WindowStore(Protocol):
    """Recordings cut into epochs, as :class:`WindowDataset` reads them.

    :class:`kdsleep.data.cache.PreprocessedCache` (on disk, memory-mapped) and :class:`MemoryStore` are the
    two implementations.
    """

    @property
    def keys(self) -> list[str]:
        """Recording keys."""
        ...

    def meta(self, key: str) -> Mapping[str, Any]:
        """At least ``n_epochs`` and ``subject`` of a recording."""
        ...

    def epochs(self, key: str) -> np.ndarray:
        """Epoch array ``(n_epochs, n_channels, samples_per_epoch)``."""
        ...

    def labels(self, key: str, grouping: str | int | StageGrouping | None = None) -> np.ndarray:
        """Class per epoch in ``grouping``, ``-1`` where ignored."""
        ...

    def channel_index(self, key: str, channel: str) -> int:
        """Position of ``channel`` in the recording's epoch array."""
        ...


class MemoryStore:
    """Recordings held in memory, behind the same interface as the on-disk cache.

    Examples
    --------
    >>> store = MemoryStore()
    >>> store.add("night1", np.zeros((40, 1, 60), np.float32), np.zeros(40, np.int8), ["ihr"], subject="s1")
    >>> store.meta("night1")["n_epochs"]
    40
    """

    def __init__(self) -> None:
        self._data: dict[str, np.ndarray] = {}
        self._stages: dict[str, np.ndarray] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def add(
        self,
        key: str,
        data: np.ndarray,
        stages: np.ndarray,
        channels: Sequence[str],
        *,
        subject: str | None = None,
    ) -> None:
        """Add a recording: ``data`` of shape ``(n_epochs, n_channels, samples_per_epoch)`` and its stages.

        Raises
        ------
        ValueError
            When the shapes of ``data``, ``stages`` and ``channels`` disagree.
        """
        data = np.asarray(data)
        stages = np.asarray(stages)
        if data.ndim != 3 or stages.shape != data.shape[:1] or len(channels) != data.shape[1]:
            raise ValueError(
                f"{key}: expected data (n_epochs, n_channels, samples), stages (n_epochs,) and one name per "
                f"channel; got {data.shape}, {stages.shape} and {list(channels)}"
            )
        self._data[key] = data
        self._stages[key] = stages
        self._meta[key] = {
            "n_epochs": int(data.shape[0]),
            "subject": subject or key,
            "channels": list(channels),
            "samples_per_epoch": int(data.shape[2]),
        }

    @property
    def keys(self) -> list[str]:
        """Recording keys, in the order they were added."""
        return list(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def meta(self, key: str) -> dict[str, Any]:
        """``n_epochs``, ``subject``, ``channels`` and ``samples_per_epoch`` of a recording."""
        try:
            return self._meta[key]
        except KeyError:
            raise KeyError(f"no recording {key!r} in memory ({len(self)} recordings)") from None

    def epochs(self, key: str) -> np.ndarray:
        """Epoch array of a recording."""
        self.meta(key)
        return self._data[key]

    def stages(self, key: str) -> np.ndarray:
        """Sleep stage per epoch."""
        self.meta(key)
        return self._stages[key]

    def labels(self, key: str, grouping: str | int | StageGrouping | None = None) -> np.ndarray:
        """Class per epoch in ``grouping`` (required), ``-1`` where ignored."""
        if grouping is None:
            raise ValueError("MemoryStore.labels needs a stage grouping")
        return stages_to_classes(self.stages(key), grouping)

    def channel_index(self, key: str, channel: str) -> int:
        """Position of ``channel`` in a recording's epoch array."""
        channels = self.meta(key)["channels"]
        try:
            return channels.index(channel)
        except ValueError:
            raise KeyError(f"recording {key!r} has no channel {channel!r}; it has {channels}") from None


class WindowDataset:
    """``(eeg, ecg, labels)`` windows of consecutive epochs from a :class:`WindowStore`.

    Parameters
    ----------
    store : WindowStore
        The recordings.
    keys : sequence of str, optional
        Recordings to use (one split part's); default all of the store's.
    inputs : mapping of str to sequence of str
        Stored channels stacked into each modality's input: ``{"eeg": ("eeg",), "ecg": ("ecg", "ihr")}``.
    window_epochs : int, default 35
        Epochs per window.
    stride : int, optional
        Epochs between window starts for training (default ``window_epochs``); ignored with ``evaluation``.
    grouping : str or StageGrouping, optional
        Class set of the labels (default the store's own).
    evaluation : bool
        Windows for validation, test or prediction: side by side plus one aligned to the end of each
        recording (:func:`covering_starts`), every window kept, and the labels of epochs owned by another
        window (:func:`owned_positions`) set to ``-1``. Otherwise training windows: :func:`covering_starts`
        with ``stride``, leaving out windows without a scored epoch.

    Notes
    -----
    Recordings shorter than one window are left out (logged). Items are NumPy arrays -- float32
    ``(n_channels, window_epochs * samples_per_epoch)`` for each modality (zeros for a modality without
    channels) and int64 ``(window_epochs,)`` labels -- which torch's ``DataLoader`` batches into tensors.
    A window is its epochs' segments laid end to end.
    """

    def __init__(
        self,
        store: WindowStore,
        keys: Sequence[str] | None = None,
        *,
        inputs: Mapping[str, Sequence[str]] | None = None,
        window_epochs: int = DEFAULT_WINDOW_EPOCHS,
        stride: int | None = None,
        grouping: str | StageGrouping | None = None,
        evaluation: bool = False,
    ) -> None:
        self.store = store
        self.keys = list(store.keys if keys is None else keys)
        self.window_epochs = int(window_epochs)
        self.evaluation = bool(evaluation)
        inputs = dict(inputs) if inputs is not None else {"eeg": ("eeg",), "ecg": ("ecg",)}
        self.inputs = {m: tuple(inputs.get(m, ())) for m in ("eeg", "ecg")}
        self.grouping = get_grouping(grouping) if grouping is not None else None
        self._channels: list[dict[str, list[int]]] = []
        self._labels: list[np.ndarray] = []
        self._epoch_labels: list[np.ndarray] = []
        self._starts: dict[str, np.ndarray] = {}
        self._owned: dict[str, np.ndarray] = {}
        index: list[tuple[int, int]] = []
        for r, key in enumerate(self.keys):
            n_epochs = int(store.meta(key)["n_epochs"])
            self._channels.append(
                {m: [store.channel_index(key, c) for c in names] for m, names in self.inputs.items()}
            )
            labels = np.array(store.labels(key, self.grouping), dtype=np.int64)
            self._epoch_labels.append(labels)
            if n_epochs < self.window_epochs:
                logger.info("skipping %s: %d epochs, shorter than one window", key, n_epochs)
                self._labels.append(labels)
                continue
            starts = covering_starts(n_epochs, self.window_epochs, None if evaluation else stride, source=key)
            if evaluation:
                # every epoch counts once: in the window that owns it
                owned = owned_positions(starts, self.window_epochs)
                masked = np.full((starts.size, self.window_epochs), -1, dtype=np.int64)
                for i, start in enumerate(starts.tolist()):
                    window = labels[start : start + self.window_epochs]
                    masked[i, owned[i]] = window[owned[i]]
                self._labels.append(masked)
                self._owned[key] = owned
                kept = starts
            else:
                self._labels.append(labels)
                kept = np.array(
                    [s for s in starts.tolist() if (labels[s : s + self.window_epochs] >= 0).any()],
                    dtype=np.int64,
                )
            self._starts[key] = kept
            index.extend((r, int(s)) for s in kept.tolist())
        self._index = index
        self._position = {(r, s): i for i, (r, s) in enumerate(index)}

    def __len__(self) -> int:
        return len(self._index)

    def window_key(self, i: int) -> tuple[str, int]:
        """``(recording key, first epoch)`` of window ``i``."""
        r, start = self._index[i]
        return self.keys[r], start

    def starts(self, key: str) -> np.ndarray:
        """First epochs of the windows of recording ``key`` (empty when it is shorter than one window)."""
        return self._starts.get(key, np.zeros(0, dtype=np.int64))

    def window_labels(self, i: int) -> np.ndarray:
        """Labels of window ``i`` (with ``-1`` for epochs owned by another window under ``evaluation``)."""
        r, start = self._index[i]
        labels = self._labels[r]
        if self.evaluation:
            return labels[int(np.searchsorted(self._starts[self.keys[r]], start))]
        return labels[start : start + self.window_epochs]

    def owned(self, i: int) -> np.ndarray:
        """Epochs of window ``i`` whose output counts (:func:`owned_positions`; all of them for training)."""
        r, start = self._index[i]
        key = self.keys[r]
        if not self.evaluation:
            return np.ones(self.window_epochs, dtype=bool)
        return self._owned[key][int(np.searchsorted(self._starts[key], start))]

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window ``i`` as ``(eeg, ecg, labels)`` NumPy arrays."""
        r, start = self._index[i]
        data = self.store.epochs(self.keys[r])
        stop = start + self.window_epochs
        spe = data.shape[2]
        out = []
        for modality in ("eeg", "ecg"):
            channels = self._channels[r][modality]
            if not channels:
                out.append(np.zeros((1, self.window_epochs * spe), dtype=np.float32))
                continue
            # (epochs, channels, samples) -> (channels, epochs * samples)
            x = np.asarray(data[start:stop][:, channels], dtype=np.float32).transpose(1, 0, 2)
            out.append(np.ascontiguousarray(x).reshape(len(channels), -1))
        return out[0], out[1], self.window_labels(i).astype(np.int64, copy=True)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        return self.window(i % len(self))

    def merge(self, window_outputs: np.ndarray, fill: Any = -1) -> dict[str, np.ndarray]:
        """Per-epoch outputs of every recording from outputs of this dataset's windows, in window order.

        Parameters
        ----------
        window_outputs : ndarray, shape (len(self), window_epochs, ...)
            One output per epoch of every window (classes, probability rows, ...).
        fill : scalar
            Value for epochs no window covers (none, for an ``evaluation`` dataset).

        Returns
        -------
        dict of str to ndarray
            ``(n_epochs, ...)`` per recording key (recordings without windows are left out).
        """
        window_outputs = np.asarray(window_outputs)
        if window_outputs.shape[0] != len(self):
            raise ValueError(f"{window_outputs.shape[0]} window outputs for {len(self)} windows")
        rows: dict[int, list[int]] = {}
        for i, (r, _) in enumerate(self._index):
            rows.setdefault(r, []).append(i)
        out = {}
        for r, members in rows.items():
            key = self.keys[r]
            starts = [self._index[i][1] for i in members]
            out[key] = merge_windows(
                int(self.store.meta(key)["n_epochs"]), starts, window_outputs[members], fill
            )
        return out

    def epoch_labels(self, key: str) -> np.ndarray:
        """Class per epoch of recording ``key`` (``-1`` where ignored)."""
        return self._epoch_labels[self.keys.index(key)]
