"""HMC (Haaglanden Medisch Centrum sleep staging database).

Layout: ``SN001.edf`` (PSG) with ``SN001_sleepscoring.edf`` (EDF+ annotations, AASM 30-s epochs, lights
off/on markers) beside it. EEG derivations are AASM-named (``EEG C3-M2``, ``EEG C4-M1``), the ECG is ``ECG``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import DatasetAdapter, RecordingEntry
from kdsleep.data.readers.annotations import read_edf_hypnogram
from kdsleep.data.recording import Hypnogram

__all__ = ["HmcAdapter"]

_NAME = re.compile(r"^(SN\d{3})(_sleepscoring)?\.edf$", re.IGNORECASE)


class HmcAdapter(DatasetAdapter):
    """HMC sleep staging database."""

    name = "hmc"

    def _scan(self, root: Path) -> list[RecordingEntry]:
        found: dict[Path, dict[str, Path]] = {}
        for path in root.rglob("*.edf"):
            match = _NAME.match(path.name)
            if match:
                kind = "scoring" if match.group(2) else "psg"
                found.setdefault(path.parent / match.group(1).upper(), {})[kind] = path
        return [self._entry(key.name, "", f.get("psg"), f.get("scoring")) for key, f in found.items()]

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        if entry.hypnogram_path is None:
            raise FileNotFoundError(f"hmc recording {entry.key}: no '{entry.subject}_sleepscoring.edf' file")
        return read_edf_hypnogram(
            entry.hypnogram_path,
            epoch_length=30.0,
            signal_duration=signal_duration,
            recording_start=recording_start,
        )
