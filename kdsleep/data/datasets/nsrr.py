"""SHHS and other NSRR cohorts: EDF signals with XML scorings.

Layout (as downloaded from the NSRR): ``polysomnography/edfs/shhs1/shhs1-200001.edf`` with
``polysomnography/annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml`` and/or
``annotations-events-profusion/shhs1/shhs1-200001-profusion.xml``; the XML may also sit beside the EDF. The
NSRR XML-events file is preferred. SHHS names its C4-A1 EEG ``EEG`` and its C3-A2 EEG ``EEG(sec)`` (``EEG2``
or ``EEG 2`` in some visits).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import DatasetAdapter, RecordingEntry
from kdsleep.data.readers.nsrr import read_nsrr_xml
from kdsleep.data.recording import Hypnogram

__all__ = ["NsrrAdapter"]

_SUFFIXES = ("-nsrr.xml", "-profusion.xml", ".xml")


class NsrrAdapter(DatasetAdapter):
    """SHHS / NSRR EDF + XML layout."""

    name = "nsrr"

    def _scan(self, root: Path) -> list[RecordingEntry]:
        xml_by_name = {p.name.lower(): p for p in sorted(root.rglob("*.xml"))}
        entries = []
        seen: set[str] = set()
        for edf in sorted(root.rglob("*.edf")):
            stem = edf.stem
            xml = next(
                (xml_by_name[n] for n in (stem.lower() + s for s in _SUFFIXES) if n in xml_by_name), None
            )
            cohort, _, subject = stem.rpartition("-")
            entries.append(self._entry(subject or stem, cohort, edf, xml))
            seen.add(stem.lower())
        # Scorings without signals (require_signals=False lists them)
        for name, xml in xml_by_name.items():
            stem = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
            if stem in seen:
                continue
            seen.add(stem)
            cohort, _, subject = xml.name[: len(stem)].rpartition("-")
            entries.append(self._entry(subject or stem, cohort, None, xml))
        return entries

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        if entry.hypnogram_path is None:
            raise FileNotFoundError(
                f"nsrr recording {entry.key}: no '-nsrr.xml' or '-profusion.xml' scoring file"
            )
        return read_nsrr_xml(entry.hypnogram_path)
