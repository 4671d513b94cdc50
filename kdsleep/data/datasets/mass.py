"""MASS (Montreal Archive of Sleep Studies), subsets SS1-SS5.

Layout: ``<root>/.../01-02-0001 PSG.edf`` with its scoring in ``01-02-0001 Base.edf`` (EDF+ annotations)
beside it. The identifier is ``01-<subset>-<subject>``. SS1 and SS3 are scored in 30-s AASM epochs; SS2,
SS4 and SS5 in 20-s R&K epochs, which are widened to 30 s by 5 s on each side (Joshi et al., arXiv
2112.07252). The EEG C3-A2 derivation is computed as ``EEG C3-CLE`` minus ``EEG A2-CLE``; the ECG is lead I
(``ECG I`` or ``ECG ECGI`` depending on the subset).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from kdsleep.data.datasets.base import DatasetAdapter, RecordingEntry
from kdsleep.data.readers.annotations import read_edf_hypnogram
from kdsleep.data.recording import Hypnogram

__all__ = ["MassAdapter"]

_ID = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")


class MassAdapter(DatasetAdapter):
    """MASS SS1-SS5.

    Parameters
    ----------
    epoch_length : float
        Window length after widening (30 s, as in the paper).
    """

    name = "mass"

    def __init__(self, epoch_length: float = 30.0):
        self.epoch_length = epoch_length

    def _scan(self, root: Path) -> list[RecordingEntry]:
        entries = []
        found: dict[str, dict[str, Path]] = {}
        for path in root.rglob("*.edf"):
            stem = path.name[: -len(".edf")]
            if " " not in stem:
                continue
            ident, kind = stem.rsplit(" ", 1)
            if kind not in ("PSG", "Base") or not _ID.match(ident):
                continue
            found.setdefault(str(path.parent / ident), {})[kind] = path
        for key, files in found.items():
            ident = Path(key).name
            subset = int(_ID.match(ident).group(2))  # type: ignore[union-attr]
            entries.append(self._entry(ident, "", files.get("PSG"), files.get("Base"), subset=f"SS{subset}"))
        return entries

    def read_hypnogram(
        self,
        entry: RecordingEntry,
        signal_duration: float | None = None,
        recording_start: datetime | None = None,
    ) -> Hypnogram:
        if entry.hypnogram_path is None:
            raise FileNotFoundError(f"mass recording {entry.key}: no '{entry.subject} Base.edf' scoring file")
        return read_edf_hypnogram(
            entry.hypnogram_path,
            widen_to=self.epoch_length,
            signal_duration=signal_duration,
            recording_start=recording_start,
        )
