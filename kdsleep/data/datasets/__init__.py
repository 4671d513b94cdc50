"""Dataset adapters: a directory in the layout of a known dataset in, :class:`RecordingEntry` objects out.

>>> from kdsleep.data.datasets import find_recordings
>>> for entry in find_recordings("/data/mass", "mass"):      # doctest: +SKIP
...     recording, hypnogram = entry.load()                   # {"eeg": C3-A2, "ecg": ECG I} + 30-s scoring
"""

from __future__ import annotations

import os
from pathlib import Path

from kdsleep.data.datasets.base import DEFAULT_CHANNELS, DatasetAdapter, RecordingEntry
from kdsleep.data.datasets.generic import GenericAdapter
from kdsleep.data.datasets.hmc import HmcAdapter
from kdsleep.data.datasets.mass import MassAdapter
from kdsleep.data.datasets.nsrr import NsrrAdapter
from kdsleep.data.datasets.sleep_edf import SleepEdfAdapter
from kdsleep.data.datasets.slpdb import SlpdbAdapter

__all__ = [
    "DATASETS",
    "DEFAULT_CHANNELS",
    "DatasetAdapter",
    "GenericAdapter",
    "HmcAdapter",
    "MassAdapter",
    "NsrrAdapter",
    "RecordingEntry",
    "SleepEdfAdapter",
    "SlpdbAdapter",
    "detect_dataset",
    "find_recordings",
    "get_adapter",
]

#: Adapter classes by name.
DATASETS: dict[str, type[DatasetAdapter]] = {
    "mass": MassAdapter,
    "hmc": HmcAdapter,
    "sleep-edf": SleepEdfAdapter,
    "slpdb": SlpdbAdapter,
    "nsrr": NsrrAdapter,
    "generic": GenericAdapter,
}
_ALIASES = {
    "shhs": "nsrr",
    "mesa": "nsrr",
    "sleepedf": "sleep-edf",
    "sleep_edf": "sleep-edf",
    "edf": "generic",
}


def get_adapter(name: str | DatasetAdapter) -> DatasetAdapter:
    """An adapter by name (``mass``, ``hmc``, ``sleep-edf``, ``slpdb``, ``nsrr``/``shhs``, ``generic``)."""
    if isinstance(name, DatasetAdapter):
        return name
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} (or shhs, mesa)")
    return DATASETS[key]()


def detect_dataset(root: str | os.PathLike[str]) -> str:
    """Guess the layout of a directory from its file names; ``"generic"`` when nothing specific matches."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset directory not found")
    names = [p.name for p in root.rglob("*") if p.is_file()]
    checks = (
        ("mass", lambda n: n.endswith(" PSG.edf") or n.endswith(" Base.edf")),
        ("hmc", lambda n: n.lower().endswith("_sleepscoring.edf")),
        ("sleep-edf", lambda n: n.endswith("-Hypnogram.edf")),
        ("slpdb", lambda n: n.endswith(".st")),
        ("nsrr", lambda n: n.endswith("-nsrr.xml") or n.endswith("-profusion.xml")),
    )
    for name, test in checks:
        if any(test(n) for n in names):
            return name
    return "generic"


def find_recordings(
    root: str | os.PathLike[str], dataset: str | DatasetAdapter = "auto", *, require_signals: bool = True
) -> list[RecordingEntry]:
    """The recordings of a dataset directory (layout detected when ``dataset="auto"``)."""
    adapter = get_adapter(detect_dataset(root) if dataset == "auto" else dataset)
    return adapter.find(root, require_signals=require_signals)
