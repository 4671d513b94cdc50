"""A generic layout: each EDF/BDF file with a hypnogram file of the same stem beside it.

Recognised hypnogram files for ``night.edf``: ``night_hypnogram.{edf,txt,csv,xml}``, ``night-hypnogram.*``,
``night.hypnogram.*``, ``night_sleepscoring.edf``, ``night-nsrr.xml``, ``night.xml``, ``night.txt``,
``night.csv``, ``night_stage.txt``. Without one, the EDF+ file's own stage annotations are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import DatasetAdapter, RecordingEntry
from kdsleep.data.readers.dispatch import read_hypnogram
from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage

__all__ = ["GenericAdapter"]

_HYPNOGRAM_SUFFIXES = tuple(
    f"{sep}{word}.{ext}"
    for sep in ("_", "-", ".")
    for word in ("hypnogram", "Hypnogram")
    for ext in ("edf", "txt", "csv", "xml")
) + ("_sleepscoring.edf", "-nsrr.xml", "-profusion.xml", ".xml", ".txt", ".csv", "_stage.txt", " Base.edf")
_HYPNOGRAM_NAME = re.compile(r"(hypnogram|sleepscoring| base)\.(edf|bdf)$", re.IGNORECASE)


class GenericAdapter(DatasetAdapter):
    """EDF/BDF + hypnogram pairs by file stem.

    Parameters
    ----------
    mapping : str or dict
        Label mapping for text hypnograms (``"auto"``; ``"ucddb"`` for UCDDB codes, ...).
    epoch_length : float
        Epoch length of text hypnograms (30 s).
    """

    name = "generic"

    def __init__(self, mapping: str | Mapping[str, SleepStage | int] = "auto", epoch_length: float = 30.0):
        self.mapping = mapping
        self.epoch_length = epoch_length

    def _scan(self, root: Path) -> list[RecordingEntry]:
        entries = []
        for signal in sorted(list(root.rglob("*.edf")) + list(root.rglob("*.bdf"))):
            if _HYPNOGRAM_NAME.search(signal.name):
                continue
            stem = signal.name[: -len(signal.suffix)]
            hypnogram = next(
                (
                    signal.parent / (stem + s)
                    for s in _HYPNOGRAM_SUFFIXES
                    if (signal.parent / (stem + s)).is_file()
                ),
                None,
            )
            if hypnogram is None:
                hypnogram = signal  # EDF+ with its own stage annotations (checked when read)
            entries.append(self._entry(stem, "", signal, hypnogram))
        return entries

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        path = entry.hypnogram_path
        if path is None:
            raise FileNotFoundError(f"generic recording {entry.key}: no hypnogram file")
        return read_hypnogram(
            path,
            mapping=self.mapping,
            epoch_length=None if path.suffix.lower() in (".edf", ".bdf", ".xml") else self.epoch_length,
            signal_duration=signal_duration,
            recording_start=recording_start,
        )
