"""The dataset-adapter interface: a directory in, a list of recordings (lazily loaded) out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kdsleep.data.readers.annotations import fit_to_signal
from kdsleep.data.readers.channels import CHANNEL_ALIASES
from kdsleep.data.readers.edf import read_edf
from kdsleep.data.readers.quality import mask_bad_epochs
from kdsleep.data.recording import Hypnogram, Recording

__all__ = ["ChannelRequest", "DatasetAdapter", "RecordingEntry", "DEFAULT_CHANNELS"]

logger = logging.getLogger(__name__)

ChannelRequest = Mapping[str, str | Sequence[str]]

#: The paper's pair: central EEG referenced to the opposite mastoid (C3-A2, else C4-A1) and ECG lead I
#: (else the single ECG lead of the montage).
DEFAULT_CHANNELS: dict[str, tuple[str, ...]] = {
    "eeg": tuple(CHANNEL_ALIASES["C3-A2"]) + tuple(CHANNEL_ALIASES["C4-A1"]),
    "ecg": tuple(CHANNEL_ALIASES["ECG"]),
}


@dataclass(frozen=True)
class RecordingEntry:
    """One night of one subject found in a dataset directory; nothing is read until :meth:`load`.

    Parameters
    ----------
    dataset : str
        Adapter name.
    subject, session : str
        Identifiers.
    signal_path : Path or None
        PSG signal file (EDF or WFDB header); ``None`` when the directory holds only the scoring.
    hypnogram_path : Path or None
        Scoring file.
    extra : dict
        Dataset-specific paths and facts (e.g. ``"beats"`` for slpdb, ``"subset"`` for MASS).
    """

    dataset: str
    subject: str
    session: str
    signal_path: Path | None
    hypnogram_path: Path | None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    adapter: DatasetAdapter | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """``subject`` or ``subject/session``: unique within a dataset."""
        return f"{self.subject}/{self.session}" if self.session else self.subject

    def _adapter(self) -> DatasetAdapter:
        if self.adapter is None:
            raise RuntimeError(f"recording entry {self.key} has no adapter to read it with")
        return self.adapter

    def read_signals(
        self, channels: ChannelRequest | None = None, *, ecg_polarity: str | None = None
    ) -> Recording:
        """Read the signals (default: the adapter's EEG and ECG channels)."""
        return self._adapter().read_signals(self, channels, ecg_polarity=ecg_polarity)

    def read_hypnogram(
        self, signal_duration: float | None = None, recording_start: datetime | None = None
    ) -> Hypnogram:
        """Read the scoring; with ``signal_duration``, check / crop it against the signal length; with
        ``recording_start``, align a separate scoring file whose header starts at another time."""
        hypnogram = self._adapter().read_hypnogram(self, signal_duration, recording_start)
        if signal_duration is not None:
            hypnogram = fit_to_signal(hypnogram, signal_duration)
        return hypnogram

    def load(
        self,
        channels: ChannelRequest | None = None,
        *,
        ecg_polarity: str | None = None,
        mask_bad: bool = True,
    ) -> tuple[Recording, Hypnogram]:
        """Read signals and scoring together.

        Parameters
        ----------
        channels : dict of output name to channel spec, optional
            Default the adapter's ``default_channels`` (``{"eeg": ..., "ecg": ...}``).
        ecg_polarity : {None, "auto", "invert"}
            ECG polarity correction.
        mask_bad : bool
            Mark epochs touched by NaN or flat stretches as artefact (with a warning).

        Raises
        ------
        ValueError
            When scored epochs run past the end of the signal.
        """
        recording = self.read_signals(channels, ecg_polarity=ecg_polarity)
        hypnogram = self.read_hypnogram(recording.duration, recording.start)
        if mask_bad:
            hypnogram = mask_bad_epochs(recording, hypnogram)
        return recording, hypnogram


class DatasetAdapter:
    """Finds the recordings of one dataset layout and reads them.

    Subclasses set :attr:`name`, :attr:`default_channels` and implement :meth:`find`,
    :meth:`read_signals` and :meth:`read_hypnogram`.
    """

    name: str = "base"
    default_channels: ChannelRequest = DEFAULT_CHANNELS

    def find(self, root: str | os.PathLike[str], *, require_signals: bool = True) -> list[RecordingEntry]:
        """Recordings under ``root``, sorted by subject and session.

        Parameters
        ----------
        root : path-like
            Dataset directory (searched recursively).
        require_signals : bool
            Skip entries whose signal file is missing (``False`` lists scoring-only entries too).
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset directory not found")
        entries = [e for e in self._scan(root) if e.signal_path is not None or not require_signals]
        entries = [e for e in entries if e.hypnogram_path is not None or e.signal_path is not None]
        entries.sort(key=lambda e: (e.subject, e.session))
        if not entries:
            logger.warning("%s: no %s recordings found", root, self.name)
        return entries

    def _scan(self, root: Path) -> list[RecordingEntry]:
        raise NotImplementedError

    def _entry(
        self, subject: str, session: str, signal: Path | None, hypnogram: Path | None, **extra: Any
    ) -> RecordingEntry:
        return RecordingEntry(self.name, subject, session, signal, hypnogram, extra, self)

    def _channels(self, channels: ChannelRequest | None) -> ChannelRequest:
        return self.default_channels if channels is None else channels

    def read_signals(
        self,
        entry: RecordingEntry,
        channels: ChannelRequest | None = None,
        *,
        ecg_polarity: str | None = None,
    ) -> Recording:
        if entry.signal_path is None:
            raise FileNotFoundError(
                f"{self.name} recording {entry.key}: no signal file was found, only the scoring"
            )
        return read_edf(
            entry.signal_path,
            self._channels(channels),
            subject=entry.subject,
            session=entry.session,
            ecg_polarity=ecg_polarity,
        )

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
