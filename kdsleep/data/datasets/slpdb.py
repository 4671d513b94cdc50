"""MIT-BIH Polysomnographic Database (slpdb): WFDB records with ``.st`` stages and ``.ecg`` beats.

Layout: ``slp01a.hea`` / ``.dat`` / ``.st`` / ``.ecg``. The EEG derivation differs per record (C4-A1,
O2-A1 or C3-O1, written ``EEG (C4-A1)``); the ECG is ``ECG``. slp01a/b and slp02a/b are two parts of one
night each: subject ``slp01``, sessions ``a`` and ``b``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import ChannelRequest, DatasetAdapter, RecordingEntry
from kdsleep.data.readers.channels import CHANNEL_ALIASES
from kdsleep.data.readers.wfdb_io import BeatAnnotations, read_wfdb_beats, read_wfdb_record, read_wfdb_stages
from kdsleep.data.recording import Hypnogram, Recording

__all__ = ["SlpdbAdapter"]

_NAME = re.compile(r"^(slp\d+)([ab])?$")


class SlpdbAdapter(DatasetAdapter):
    """MIT-BIH Polysomnographic Database."""

    name = "slpdb"
    default_channels = {
        "eeg": (*CHANNEL_ALIASES["C3-A2"], *CHANNEL_ALIASES["C4-A1"], "O2-A1", "C3-O1"),
        "ecg": ("ECG",),
    }

    def _scan(self, root: Path) -> list[RecordingEntry]:
        entries = []
        for st in root.rglob("*.st"):
            record = st.with_suffix("")
            if not record.with_suffix(".hea").exists():
                continue  # README.st and other non-record files
            match = _NAME.match(record.name)
            subject, session = (match.group(1), match.group(2) or "") if match else (record.name, "")
            has_signal = record.with_suffix(".hea").exists() and record.with_suffix(".dat").exists()
            beats = record.with_suffix(".ecg")
            entries.append(
                self._entry(
                    subject,
                    session,
                    record.with_suffix(".hea") if has_signal else None,
                    st,
                    record=record,
                    beats=beats if beats.exists() else None,
                )
            )
        return entries

    def read_signals(
        self,
        entry: RecordingEntry,
        channels: ChannelRequest | None = None,
        *,
        ecg_polarity: str | None = None,
    ) -> Recording:
        if entry.signal_path is None:
            raise FileNotFoundError(
                f"slpdb record {entry.extra['record']}: no signal file (.dat), only annotations are present"
            )
        return read_wfdb_record(
            entry.extra["record"],
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
        return read_wfdb_stages(entry.extra["record"])

    def read_beats(self, entry: RecordingEntry) -> BeatAnnotations:
        """The reference beat positions (``.ecg``) of a record."""
        if entry.extra.get("beats") is None:
            raise FileNotFoundError(f"slpdb record {entry.extra['record']}: no .ecg beat annotation file")
        return read_wfdb_beats(entry.extra["record"])
