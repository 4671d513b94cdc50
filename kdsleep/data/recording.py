"""Domain objects: a recording (signals with their sampling rates and units) and a hypnogram.

Both validate on construction, so a reader that returns one has returned something consistent: 1-D finite
length signals with a positive sampling rate, a hypnogram with known stage values, a positive epoch length
and a non-negative onset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep.data.stages import SleepStage, StageGrouping, stages_to_classes

__all__ = ["Hypnogram", "Recording", "Signal"]

_N_STAGE_VALUES = len(SleepStage)


@dataclass
class Signal:
    """One channel of a recording.

    Parameters
    ----------
    data : np.ndarray
        1-D samples, in ``unit``.
    sfreq : float
        Sampling rate in Hz.
    unit : str
        Physical unit of ``data`` (``"V"`` after reading through mne, which converts µV/mV to volts).
    """

    data: np.ndarray
    sfreq: float
    unit: str = "V"

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 1:
            raise ValueError(f"signal data must be 1-D, got shape {self.data.shape}")
        if not np.issubdtype(self.data.dtype, np.floating):
            self.data = self.data.astype(np.float64)
        self.sfreq = float(self.sfreq)
        if not np.isfinite(self.sfreq) or self.sfreq <= 0:
            raise ValueError(f"signal sfreq must be a positive number of Hz, got {self.sfreq}")

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sfreq


@dataclass
class Recording:
    """A (possibly multi-rate) recording of one subject and session.

    Parameters
    ----------
    subject : str
        Subject identifier (e.g. ``"01-02-0001"`` for MASS, ``"SN001"`` for HMC).
    signals : dict of str to Signal
        Channels by the name the caller asked for (``"EEG C3-A2"``, ``"ECG I"``, ...).
    session : str
        Session / night identifier; ``""`` when the dataset has one night per subject.
    start : datetime, optional
        Wall-clock start of the first sample.
    source : Path, optional
        The file the signals were read from.
    """

    subject: str
    signals: dict[str, Signal]
    session: str = ""
    start: datetime | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        self.subject = str(self.subject)
        if not self.subject:
            raise ValueError("recording subject must be a non-empty identifier")
        self.session = str(self.session)
        if self.source is not None:
            self.source = Path(self.source)
        if not isinstance(self.signals, Mapping):
            raise TypeError(f"{self._where()}signals must be a dict of channel name to Signal")
        signals = {}
        for name, signal in self.signals.items():
            if not isinstance(signal, Signal):
                raise TypeError(
                    f"{self._where()}channel {name!r} must be a Signal, got {type(signal).__name__}"
                )
            signals[str(name)] = signal
        self.signals = signals

    def _where(self) -> str:
        return f"{self.source}: " if self.source is not None else f"recording {self.subject!r}: "

    @property
    def channel_names(self) -> list[str]:
        """Channel names in order."""
        return list(self.signals)

    def __getitem__(self, channel: str) -> Signal:
        try:
            return self.signals[channel]
        except KeyError:
            raise KeyError(
                f"{self._where()}no channel {channel!r}; available channels: {self.channel_names}"
            ) from None

    @property
    def duration(self) -> float:
        """Length in seconds of the shortest channel (the span where all channels have data)."""
        if not self.signals:
            return 0.0
        return min(s.duration for s in self.signals.values())

    def sfreq_of(self, *channels: str) -> float:
        """The common sampling rate of ``channels``.

        Raises
        ------
        ValueError
            When the channels were sampled at different rates (paired channels must be resampled first).
        """
        rates = {name: self[name].sfreq for name in (channels or self.channel_names)}
        if len(set(rates.values())) > 1:
            raise ValueError(
                f"{self._where()}sampling-rate mismatch between paired channels: "
                + ", ".join(f"{k} {v:g} Hz" for k, v in rates.items())
                + "; resample them to one rate first"
            )
        return next(iter(rates.values()))


@dataclass
class Hypnogram:
    """Sleep stage per epoch on a regular grid.

    Parameters
    ----------
    stages : np.ndarray of int8
        :class:`~kdsleep.data.stages.SleepStage` value of each epoch; gaps in the scoring are
        ``SleepStage.UNSCORED``.
    epoch_length : float
        Epoch length in seconds (30 s for AASM; 20 s in older R&K scorings before widening).
    onset : float
        Start of the first epoch in seconds after the recording start.
    source : Path, optional
        The file the hypnogram was read from.
    labels : tuple of str, optional
        The original label of each epoch, kept for provenance (e.g. to tell R&K S3 from S4).
    epoch_step : float, optional
        Seconds between consecutive epoch onsets; default ``epoch_length``. Smaller than ``epoch_length``
        when short scoring epochs were widened (MASS 20-s epochs read as 30-s windows every 20 s).
    """

    stages: np.ndarray
    epoch_length: float = 30.0
    onset: float = 0.0
    source: Path | None = None
    labels: tuple[str, ...] | None = field(default=None, repr=False)
    epoch_step: float | None = None

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source is not None else ""
        if self.source is not None:
            self.source = Path(self.source)
        stages = np.asarray(self.stages)
        if stages.ndim != 1:
            raise ValueError(f"{where}hypnogram stages must be 1-D, got shape {stages.shape}")
        if stages.size and not np.issubdtype(stages.dtype, np.integer):
            raise TypeError(
                f"{where}hypnogram stages must be integer SleepStage values, got dtype {stages.dtype}"
            )
        bad = (stages < 0) | (stages >= _N_STAGE_VALUES)
        if bad.any():
            raise ValueError(
                f"{where}hypnogram stages {sorted(set(stages[bad].tolist()))[:10]} are not SleepStage values "
                f"(0..{_N_STAGE_VALUES - 1})"
            )
        self.stages = stages.astype(np.int8)
        self.epoch_length = float(self.epoch_length)
        if not np.isfinite(self.epoch_length) or self.epoch_length <= 0:
            raise ValueError(
                f"{where}hypnogram epoch_length must be a positive number of seconds, got {self.epoch_length}"
            )
        self.onset = float(self.onset)
        if not np.isfinite(self.onset) or self.onset < 0:
            raise ValueError(
                f"{where}hypnogram onset must be >= 0 s after the recording start, got {self.onset}"
            )
        self.epoch_step = self.epoch_length if self.epoch_step is None else float(self.epoch_step)
        if not np.isfinite(self.epoch_step) or self.epoch_step <= 0:
            raise ValueError(
                f"{where}hypnogram epoch_step must be a positive number of seconds, got {self.epoch_step}"
            )
        if self.labels is not None:
            self.labels = tuple(str(x) for x in self.labels)
            if len(self.labels) != len(self.stages):
                raise ValueError(
                    f"{where}hypnogram has {len(self.stages)} stages but {len(self.labels)} labels"
                )

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return int(self.stages.shape[0])

    @property
    def _step(self) -> float:
        return self.epoch_length if self.epoch_step is None else self.epoch_step

    @property
    def end(self) -> float:
        """End of the last epoch in seconds after the recording start."""
        if self.n_epochs == 0:
            return self.onset
        return self.onset + (self.n_epochs - 1) * self._step + self.epoch_length

    @property
    def epoch_onsets(self) -> np.ndarray:
        """Onset of every epoch in seconds after the recording start."""
        return self.onset + self._step * np.arange(self.n_epochs)

    @property
    def scored(self) -> np.ndarray:
        """Boolean mask of the epochs that carry a sleep stage."""
        return self.stages <= int(SleepStage.R)

    def counts(self) -> dict[SleepStage, int]:
        """Number of epochs of each stage (members with no epochs omitted)."""
        counter = Counter(self.stages.tolist())
        return {SleepStage(k): v for k, v in sorted(counter.items())}

    def to_classes(self, grouping: str | int | StageGrouping) -> np.ndarray:
        """Class index of every epoch in ``grouping``; unscored kinds are ``-1``."""
        return stages_to_classes(self.stages, grouping)

    def check_within(self, duration: float, tolerance: float = 0.0) -> None:
        """Raise when the scoring runs past the end of a signal of ``duration`` seconds.

        Parameters
        ----------
        duration : float
            Signal length in seconds.
        tolerance : float
            Seconds the last epoch may overhang (e.g. a partial final data record).
        """
        if self.end > duration + tolerance:
            where = f"{self.source}: " if self.source is not None else ""
            raise ValueError(
                f"{where}annotations run past the end of the signal: the last epoch ends at {self.end:g} s "
                f"but the signal lasts {duration:g} s"
            )

    def crop(self, duration: float) -> Hypnogram:
        """A copy without the epochs that do not fit entirely before ``duration`` seconds."""
        n_fit = int(np.sum(self.epoch_onsets + self.epoch_length <= duration + 1e-9))
        return Hypnogram(
            self.stages[:n_fit].copy(),
            self.epoch_length,
            self.onset,
            self.source,
            None if self.labels is None else self.labels[:n_fit],
            self.epoch_step,
        )

    @classmethod
    def from_events(
        cls,
        onsets: Iterable[float],
        durations: Iterable[float],
        stages: Iterable[int],
        epoch_length: float = 30.0,
        source: Path | None = None,
        labels: Iterable[str] | None = None,
        onset: float | None = None,
    ) -> Hypnogram:
        """Build a regular hypnogram from stage events (onset, duration, stage), e.g. EDF+ annotations.

        An event that spans k epochs fills k epochs; epochs no event covers are ``UNSCORED``. Events are
        snapped to the epoch grid that starts at ``onset`` (default: the first event's onset).

        Raises
        ------
        ValueError
            When an event does not start on the epoch grid or two events overlap.
        """
        onsets_a = np.asarray(list(onsets), dtype=np.float64)
        durations_a = np.asarray(list(durations), dtype=np.float64)
        stages_a = np.asarray(list(stages), dtype=np.int64)
        labels_l = None if labels is None else [str(x) for x in labels]
        where = f"{source}: " if source is not None else ""
        if not (len(onsets_a) == len(durations_a) == len(stages_a)):
            raise ValueError(f"{where}onsets, durations and stages differ in length")
        if len(onsets_a) == 0:
            return cls(
                np.zeros(0, np.int8),
                epoch_length,
                0.0 if onset is None else onset,
                source,
                None if labels_l is None else (),
            )
        order = np.argsort(onsets_a, kind="stable")
        onsets_a, durations_a, stages_a = onsets_a[order], durations_a[order], stages_a[order]
        if labels_l is not None:
            labels_l = [labels_l[i] for i in order]
        first = float(onsets_a[0]) if onset is None else float(onset)
        # Millisecond tolerance: EDF+ onsets are decimal strings and exporters round.
        position = (onsets_a - first) / epoch_length
        start_idx = np.round(position).astype(np.int64)
        off_grid = np.abs(position - start_idx) * epoch_length > 1e-3
        if off_grid.any():
            i = int(np.flatnonzero(off_grid)[0])
            raise ValueError(
                f"{where}stage event at {onsets_a[i]:g} s is not on the {epoch_length:g}-s epoch grid starting at {first:g} s"
            )
        n_span = np.maximum(1, np.round(durations_a / epoch_length).astype(np.int64))
        n_epochs = int((start_idx + n_span).max())
        out = np.full(n_epochs, int(SleepStage.UNSCORED), dtype=np.int8)
        out_labels = [""] * n_epochs
        filled = np.zeros(n_epochs, dtype=bool)
        for i, (s, k, st) in enumerate(zip(start_idx, n_span, stages_a, strict=True)):
            if s < 0:
                raise ValueError(
                    f"{where}stage event at {onsets_a[i]:g} s starts before the hypnogram onset {first:g} s"
                )
            if filled[s : s + k].any():
                raise ValueError(f"{where}stage events overlap at {onsets_a[i]:g} s")
            filled[s : s + k] = True
            out[s : s + k] = st
            if labels_l is not None:
                out_labels[s : s + k] = [labels_l[i]] * k
        return cls(out, epoch_length, first, source, tuple(out_labels) if labels_l is not None else None)
