"""Read a hypnogram of any supported format, chosen by the file name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from kdsleep.data.readers.annotations import fit_to_signal, read_edf_hypnogram
from kdsleep.data.readers.nsrr import read_nsrr_xml
from kdsleep.data.readers.text import read_text_hypnogram
from kdsleep.data.readers.wfdb_io import read_wfdb_stages
from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage

__all__ = ["read_hypnogram"]


def read_hypnogram(
    path: str | os.PathLike[str],
    *,
    mapping: str | Mapping[str, SleepStage | int] = "auto",
    epoch_length: float | None = None,
    signal_duration: float | None = None,
    recording_start: datetime | None = None,
) -> Hypnogram:
    """Read a hypnogram file: EDF+/BDF+ annotations, NSRR XML, WFDB ``.st`` or text / CSV.

    Parameters
    ----------
    path : path-like
        The file; the format follows from its extension.
    mapping : str or dict
        Label mapping for EDF+ and text files (``"ucddb"`` for UCDDB codes, ...).
    epoch_length : float, optional
        Scoring epoch in seconds; default read from the file (30 s for text files).
    signal_duration : float, optional
        Length of the paired signal: trailing unscored epochs past it are cropped, scored ones raise.
    recording_start : datetime, optional
        Start of the paired signal, to align an EDF+ scoring file whose header starts at another time.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".edf", ".bdf", ".rec", ".hyp"):
        hypnogram = read_edf_hypnogram(
            path, epoch_length=epoch_length, mapping=mapping, recording_start=recording_start
        )
    elif suffix == ".xml":
        hypnogram = read_nsrr_xml(path, epoch_length=epoch_length)
    elif suffix == ".st":
        hypnogram = read_wfdb_stages(
            path, epoch_length=epoch_length or 30.0, mapping="slpdb" if mapping == "auto" else mapping
        )
    else:
        hypnogram = read_text_hypnogram(path, mapping=mapping, epoch_length=epoch_length or 30.0)
    if signal_duration is not None:
        hypnogram = fit_to_signal(hypnogram, signal_duration)
    return hypnogram
