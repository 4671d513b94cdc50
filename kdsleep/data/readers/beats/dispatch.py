"""The format of a beat file (:func:`detect_beats_format`) and the one reader for all formats (:func:`read_beats`)."""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep.data.readers.beats.ecg import read_ecg_beats
from kdsleep.data.readers.beats.series import (
    BEAT_FORMATS,
    BeatSeries,
    BeatsFormatError,
    existing_file,
    finish_series,
)
from kdsleep.data.readers.beats.text import read_peak_times, read_rr_intervals, text_kind
from kdsleep.data.readers.beats.wfdb_annotations import read_wfdb_beat_file

__all__ = ["EDF_EXTENSIONS", "TEXT_EXTENSIONS", "WFDB_BEAT_EXTENSIONS", "detect_beats_format", "read_beats"]

logger = logging.getLogger(__name__)

#: Extensions of WFDB beat / QRS annotation files in common use (others are recognised by content).
WFDB_BEAT_EXTENSIONS = frozenset(
    {
        ".atr",
        ".ecg",
        ".qrs",
        ".ann",
        ".ari",
        ".sqrs",
        ".wqrs",
        ".gqrs",
        ".xqrs",
        ".man",
        ".beat",
        ".pu",
        ".pu0",
    }
)
#: Extensions read as EDF / BDF.
EDF_EXTENSIONS = frozenset({".edf", ".bdf", ".rec"})
#: Extensions read as text.
TEXT_EXTENSIONS = frozenset({".csv", ".txt", ".tsv", ".rr", ".hrv", ".ibi", ".dat"})


def _is_binary(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return False  # UTF-16 text
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(head) - 4  # a multi-byte character cut at the end is still text
    return False


def detect_beats_format(path: str | os.PathLike[str], *, column: str | int | None = None) -> str:
    """The format of a beat file: ``"wfdb"``, ``"peaks"``, ``"rr"`` or ``"edf"``.

    Raises
    ------
    BeatsFormatError
        For a missing file or one that is none of these (the message lists what is accepted).
    """
    path = existing_file(path, "a beat file: WFDB annotations, R-peak times, RR intervals or an EDF with ECG")
    suffix = path.suffix.lower()
    with path.open("rb") as fh:
        head = fh.read(8)
    if (
        head.startswith(b"0       ")
        or head.startswith(b"\xffBIOSEMI")
        or (suffix in EDF_EXTENSIONS and len(head) == 8)
    ):
        return "edf"
    if suffix in WFDB_BEAT_EXTENSIONS:
        return "wfdb"
    if suffix in (".hea", ".dat") and path.with_suffix(".hea").is_file():
        found = sorted(
            p.name
            for p in path.parent.glob(f"{glob.escape(path.stem)}.*")
            if p.suffix.lower() not in (".hea", ".dat")
        )
        raise BeatsFormatError(
            f"{path}: the {'header' if suffix == '.hea' else 'signal file'} of a WFDB record, not its beats; "
            f"pass the record's beat annotation file (.ecg, .atr, .qrs, ...)"
            + (f"; beside it: {', '.join(found)}" if found else "")
        )
    if _is_binary(path):
        if path.with_suffix(".hea").is_file() or suffix not in TEXT_EXTENSIONS:
            return "wfdb"
        raise BeatsFormatError(
            f"{path}: binary content in a {suffix} file; expected text (R-peak times or RR intervals)"
        )
    try:
        return text_kind(path, column)
    except BeatsFormatError as err:
        raise BeatsFormatError(
            f"{err}. Unknown beat format: expected WFDB beat annotations (.ecg, .atr, .qrs, ...), a CSV/text "
            "file of R-peak times (s) or RR intervals (ms or s), or an EDF with an ECG channel; force one "
            "(wfdb, peaks, rr or edf)",
            remedy=("format",),
        ) from err


def read_beats(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    rr_unit: str = "auto",
    column: str | int | None = None,
    channel: str | None = None,
    start: datetime | None = None,
    duration: float | None = None,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
) -> BeatSeries:
    """Read heartbeat times from any supported file.

    Parameters
    ----------
    path : path-like
        The beat file.
    format : {"auto", "wfdb", "peaks", "rr", "edf"}
        File format; ``"auto"`` uses :func:`detect_beats_format`.
    rr_unit : {"auto", "ms", "s"}
        Unit of RR intervals (format ``"rr"``).
    column : str or int, optional
        Column of a table (formats ``"peaks"`` and ``"rr"``).
    channel : str, optional
        ECG channel (format ``"edf"``).
    start : datetime, optional
        Wall-clock start of the recording; used when the file has none, and overrides the file's (with a
        log line) otherwise.
    duration : float, optional
        Recording length in seconds; likewise. Without either, the night ends at the last beat.
    min_rr, max_rr : float
        Physiological RR range in seconds.

    Returns
    -------
    BeatSeries

    Raises
    ------
    BeatsFormatError
        For an unknown format, a file that does not hold what its format expects, no beats, or beat times
        that do not increase.
    """
    if format not in ("auto", *BEAT_FORMATS):
        raise BeatsFormatError(
            f"{path}: unknown beat format {format!r}; expected one of auto, {', '.join(BEAT_FORMATS)}"
        )
    if duration is not None and not (np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration: expected a positive number of seconds, got {duration!r}")
    fmt = detect_beats_format(path, column=column) if format == "auto" else format
    if fmt == "wfdb":
        series = read_wfdb_beat_file(path, min_rr=min_rr, max_rr=max_rr)
    elif fmt == "peaks":
        series = read_peak_times(path, column=column, min_rr=min_rr, max_rr=max_rr)
    elif fmt == "rr":
        series = read_rr_intervals(path, unit=rr_unit, column=column, min_rr=min_rr, max_rr=max_rr)
        n_rr = series.times.size - 1
        if format == "auto" and rr_unit == "auto" and series.n_out_of_range * 2 > n_rr:
            # neither rising peak times nor plausible RR intervals (shuffled or mixed-up values, wrong column)
            raise BeatsFormatError(
                f"{series.source}: the values do not rise steadily, so they were read as RR intervals, but "
                f"{series.n_out_of_range} of {n_rr} intervals lie outside {min_rr:g}-{max_rr:g} s; expected "
                "R-peak times in increasing order or RR intervals (force the format and the RR unit to read "
                "them otherwise)",
                remedy=("format", "rr_unit"),
            )
    else:
        series = read_ecg_beats(path, channel=channel, min_rr=min_rr, max_rr=max_rr)
    if start is not None:
        if series.start is not None and series.start != start:
            logger.info("%s: start %s given, replacing the file's %s", series.source, start, series.start)
        series = replace(series, start=start)
    if duration is not None:
        if series.duration is not None and abs(series.duration - duration) > 1e-6:
            logger.info(
                "%s: length %.1f s given, replacing the file's %.1f s",
                series.source,
                duration,
                series.duration,
            )
        if series.times[-1] > duration:
            series = finish_series(
                series.times,
                series.source,
                series.format,
                start=series.start,
                duration=float(duration),
                n_ignored=series.n_ignored,
                min_rr=min_rr,
                max_rr=max_rr,
                detail=series.detail,
            )
        series = replace(series, duration=float(duration))
    logger.info("%s: %s", series.source, series.describe())
    return series
