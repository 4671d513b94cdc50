"""Sleep-EDF Expanded (Sleep Cassette ``SC4ssN`` and Sleep Telemetry ``ST7ssN`` studies).

Layout: ``SC4001E0-PSG.edf`` with ``SC4001EC-Hypnogram.edf`` (the scorer letter differs): the two share the
first six characters. Scoring is R&K in 30-s epochs, stored as long EDF+ events (one event per run of equal
stages), with a trailing ``Sleep stage ?`` that overhangs the signal. There is no ECG: the default channels
are ``EEG Fpz-Cz`` and ``EEG Pz-Oz``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import DatasetAdapter, RecordingEntry
from kdsleep.data.readers.annotations import read_edf_hypnogram
from kdsleep.data.recording import Hypnogram

__all__ = ["SleepEdfAdapter"]

_NAME = re.compile(r"^((S[CT])\d(\d{2})(\d))\w\w-(PSG|Hypnogram)\.edf$", re.IGNORECASE)


class SleepEdfAdapter(DatasetAdapter):
    """Sleep-EDF (Expanded)."""

    name = "sleep-edf"
    default_channels = {"eeg": ("EEG Fpz-Cz", "Fpz-Cz"), "eeg2": ("EEG Pz-Oz", "Pz-Oz")}

    def _scan(self, root: Path) -> list[RecordingEntry]:
        found: dict[Path, dict[str, object]] = {}
        for path in root.rglob("*.edf"):
            match = _NAME.match(path.name)
            if not match:
                continue
            record, study, subject, night, kind = match.groups()
            info = found.setdefault(
                path.parent / record.upper(), {"subject": f"{study.upper()}{subject}", "night": night}
            )
            info[kind.lower()] = path
        return [
            self._entry(str(f["subject"]), str(f["night"]), f.get("psg"), f.get("hypnogram"))  # type: ignore[arg-type]
            for f in found.values()
        ]

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        if entry.hypnogram_path is None:
            raise FileNotFoundError(f"sleep-edf recording {entry.key}: no '*-Hypnogram.edf' file")
        return read_edf_hypnogram(
            entry.hypnogram_path,
            epoch_length=30.0,
            signal_duration=signal_duration,
            recording_start=recording_start,
        )
