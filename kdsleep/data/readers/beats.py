"""Heartbeat times from the files people hold: beat annotations, R-peak lists, RR exports, an ECG channel.

Every reader returns one :class:`BeatSeries`: beat times in seconds after the recording start, with the
recording's wall-clock start and length where the file has them. Formats (``format=``):

``"wfdb"``
    A WFDB annotation file with any extension (slpdb ``.ecg``, MIT-BIH ``.atr``, detector output ``.qrs``,
    ...). Only heartbeat codes count (:data:`~kdsleep.data.readers.wfdb_io.BEAT_SYMBOLS`: ``N``, ``V``,
    ``A``, ...); rhythm, noise and comment annotations are ignored. The record's ``.hea`` header, when it
    lies beside the file, gives the sampling rate (if the annotation file lacks it), the start date and time
    and the record length.
``"peaks"``
    A text or CSV file of R-peak times in seconds, one per line (or one column of a table).
``"rr"``
    A text or CSV file of RR intervals, one per line (or one column): the text export of chest straps
    (one RR in milliseconds per line, with or without a header line, as Polar H10 apps write) and tables
    of RR in seconds. The unit is read from the header (``RR [ms]``, ``rr_s``), given by ``rr_unit``, or
    decided by magnitude (a median above 20 means milliseconds: a resting RR is 0.3–2 s). The first beat
    lies at time 0 and each interval ends the next beat. Missing, zero or negative values are dropped
    without shifting the time base.
``"edf"``
    An EDF / EDF+ / BDF file with an ECG channel; R peaks are detected by
    :func:`kdsleep.data.detect_heartbeats` (slower ECGs are upsampled to 128 Hz for detection, as the
    preprocessing's ``ihr`` channel does).

:func:`detect_beats_format` chooses the format from the extension and the content: EDF/BDF by its header
bytes, a binary file (a WFDB annotation file) or one with a known annotation extension as WFDB, and a text
file as peak times when its values rise steadily through the night, else as RR intervals.

Checks common to all formats: at least two beats (else :class:`BeatsFormatError`), strictly increasing
times (else an error naming the line or annotation), and RR intervals outside the physiological range
(``min_rr``–``max_rr``, 0.3–2.0 s by default) counted in :attr:`BeatSeries.n_out_of_range` and reported in
a warning; such intervals are masked when the heart rate is computed
(:func:`kdsleep.data.heart_rate.rr_intervals`), never used.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep.data.readers.wfdb_io import BEAT_SYMBOLS, read_wfdb_beats, read_wfdb_header

__all__ = [
    "BEAT_FORMATS",
    "BeatSeries",
    "BeatsFormatError",
    "detect_beats_format",
    "read_beats",
    "read_ecg_beats",
    "read_peak_times",
    "read_rr_intervals",
    "read_wfdb_beat_file",
]

logger = logging.getLogger(__name__)

#: Formats :func:`read_beats` reads (``"auto"`` picks one with :func:`detect_beats_format`).
BEAT_FORMATS = ("wfdb", "peaks", "rr", "edf")

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

_RR_WORDS = ("rr", "ibi", "interval", "nn")
_PEAK_WORDS = ("peak", "time", "beat", "onset", "sec")


class BeatsFormatError(ValueError):
    """A beat file that cannot be read as heartbeats; the message names the file and what was expected."""


@dataclass(frozen=True)
class BeatSeries:
    """Heartbeat times of one recording.

    Attributes
    ----------
    times : np.ndarray of float64
        Beat times in seconds after the recording start, strictly increasing.
    source : Path
        The file read.
    format : str
        One of :data:`BEAT_FORMATS`.
    start : datetime or None
        Wall-clock start of the recording, from the file (WFDB header, EDF header) or given by the caller.
    duration : float or None
        Recording length in seconds, from the file or given by the caller; ``None`` when unknown (the night
        then ends at the last beat, see :attr:`end`).
    n_ignored : int
        Entries of the file that are not beats and were skipped: non-beat WFDB annotations, missing, zero
        or negative RR values.
    n_out_of_range : int
        RR intervals between consecutive beats outside the physiological range; masked downstream.
    min_rr, max_rr : float
        The physiological range in seconds used for ``n_out_of_range``.
    detail : str
        One line on how the beats were obtained (sampling rate, unit, detector).
    """

    times: np.ndarray
    source: Path
    format: str
    start: datetime | None = None
    duration: float | None = None
    n_ignored: int = 0
    n_out_of_range: int = 0
    min_rr: float = 0.3
    max_rr: float = 2.0
    detail: str = ""

    @property
    def n_beats(self) -> int:
        """Number of beats."""
        return int(self.times.size)

    @property
    def end(self) -> float:
        """End of the recording in seconds: :attr:`duration` when known, else the last beat."""
        if self.duration is not None:
            return float(self.duration)
        return float(self.times[-1]) if self.times.size else 0.0

    @property
    def rr(self) -> np.ndarray:
        """RR intervals in seconds, ``times[j + 1] - times[j]``."""
        return np.diff(self.times)

    def describe(self) -> str:
        """One line: beats, span, start, masked intervals."""
        hours = self.end / 3600
        parts = [
            f"{self.n_beats} beats over {hours:.2f} h ({self.format}{', ' + self.detail if self.detail else ''})"
        ]
        if self.start is not None:
            parts.append(f"start {self.start.isoformat(sep=' ')}")
        if self.n_ignored:
            parts.append(f"{self.n_ignored} non-beat entries ignored")
        if self.n_out_of_range:
            parts.append(
                f"{self.n_out_of_range} RR intervals outside {self.min_rr:g}-{self.max_rr:g} s masked"
            )
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Common checks
# --------------------------------------------------------------------------------------------------


def _finish(
    times: np.ndarray,
    path: Path,
    fmt: str,
    *,
    start: datetime | None,
    duration: float | None,
    n_ignored: int,
    min_rr: float,
    max_rr: float,
    detail: str,
    where: list[str] | None = None,
) -> BeatSeries:
    """Check beat times (count, order, range) and build the series.

    ``where`` names each beat's origin (``"line 12"``) for the message about non-increasing times.
    """
    if not 0 < min_rr < max_rr:
        raise ValueError(f"min_rr, max_rr: expected 0 < min_rr < max_rr seconds, got {min_rr!r}, {max_rr!r}")
    times = np.asarray(times, dtype=np.float64)
    expected = {
        "wfdb": "WFDB beat annotations (N, V, A, ... codes)",
        "peaks": "R-peak times in seconds",
        "rr": "RR intervals",
        "edf": "an ECG with detectable R peaks",
    }[fmt]
    if times.size < 2:
        raise BeatsFormatError(
            f"{path}: {'no beats' if times.size == 0 else 'only one beat'} found; expected {expected}, at least "
            "two beats"
        )
    if not np.isfinite(times).all():
        bad = int(np.flatnonzero(~np.isfinite(times))[0])
        at = where[bad] if where else f"beat {bad}"
        raise BeatsFormatError(f"{path}: {at}: beat time is not a finite number; expected {expected}")
    step = np.diff(times)
    if np.any(step <= 0):
        j = int(np.flatnonzero(step <= 0)[0])
        at = where[j + 1] if where else f"beat {j + 1}"
        kind = "repeats" if step[j] == 0 else "goes back from"
        raise BeatsFormatError(
            f"{path}: beat times are not strictly increasing: {at} ({times[j + 1]:.6g} s) {kind} the previous "
            f"beat ({times[j]:.6g} s); expected {expected} in increasing order"
        )
    if times[0] < 0:
        raise BeatsFormatError(
            f"{path}: first beat at {times[0]:.6g} s; expected times in seconds after the recording start (>= 0)"
        )
    if duration is not None and times[-1] > duration + 1e-6:
        n_after = int(np.sum(times > duration + 1e-6))
        logger.warning(
            "%s: %d beats lie after the recording end (%.1f s); they are ignored", path, n_after, duration
        )
        times = times[times <= duration + 1e-6]
        if times.size < 2:
            raise BeatsFormatError(f"{path}: fewer than two beats before the recording end ({duration:g} s)")
    rr = np.diff(times)
    n_out = int(np.sum((rr < min_rr) | (rr > max_rr)))
    if n_out:
        message = (
            f"{path}: {n_out} of {rr.size} RR intervals lie outside the physiological range {min_rr:g}-{max_rr:g} s "
            f"({60 / max_rr:g}-{60 / min_rr:g} bpm); they are masked, not used"
        )
        if n_out * 2 > rr.size:
            message += " (most of them: check the unit with --rr-unit, or the format with --beats-format)"
        warnings.warn(message, UserWarning, stacklevel=3)
        logger.warning("%s", message)
    return BeatSeries(
        times=times,
        source=path,
        format=fmt,
        start=start,
        duration=duration,
        n_ignored=int(n_ignored),
        n_out_of_range=n_out,
        min_rr=float(min_rr),
        max_rr=float(max_rr),
        detail=detail,
    )


def _existing(path: str | os.PathLike[str], expected: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BeatsFormatError(f"{path}: no such file (expected {expected})")
    return path


# --------------------------------------------------------------------------------------------------
# WFDB
# --------------------------------------------------------------------------------------------------


def read_wfdb_beat_file(
    path: str | os.PathLike[str], *, min_rr: float = 0.3, max_rr: float = 2.0
) -> BeatSeries:
    """Beats of a WFDB annotation file of any extension (``slp01a.ecg``, ``100.atr``, ``rec.qrs``).

    Non-beat annotations are skipped and counted. The header ``<record>.hea`` beside the file, when
    present, gives the start (``base_date`` and ``base_time``) and the length (``sig_len / fs``).

    Raises
    ------
    BeatsFormatError
        For a missing or unreadable file, no sampling rate (neither in the file nor a header), or no beats.
    """
    path = _existing(path, "a WFDB beat annotation file")
    if not path.suffix or len(path.suffix) < 2:
        raise BeatsFormatError(
            f"{path}: a WFDB annotation file needs an extension (record.ext, e.g. slp01a.ecg or 100.atr)"
        )
    record = path.with_suffix("")
    header = None
    if record.with_suffix(".hea").is_file():
        try:
            header = read_wfdb_header(record)
        except Exception as err:  # a damaged header only costs the start time and the length
            logger.warning("%s.hea: unreadable WFDB header (%s); start and length unknown", record, err)
    try:
        ann = read_wfdb_beats(record, path.suffix[1:])
    except ValueError as err:
        if "no sampling rate" not in str(err):
            raise BeatsFormatError(
                f"{path}: not a readable WFDB annotation file ({err}); expected WFDB beat annotations "
                "(.ecg, .atr, .qrs, ...)"
            ) from err
        raise BeatsFormatError(
            f"{err}; expected the record's .hea file (it gives the rate that turns annotation samples into seconds)"
        ) from err
    except Exception as err:  # wfdb fails in many ways on a file that is not an annotation file
        raise BeatsFormatError(
            f"{path}: not a readable WFDB annotation file ({type(err).__name__}: {err}); expected WFDB beat "
            "annotations (.ecg, .atr, .qrs, ...)"
        ) from err
    fs = ann.sfreq
    samples = ann.samples
    keep = np.array([s in BEAT_SYMBOLS for s in ann.symbols], dtype=bool)
    start = header.start if header is not None else None
    duration = header.duration if header is not None and header.n_samples else None
    where = [f"annotation {i} (sample {samples[i]})" for i in np.flatnonzero(keep)]
    return _finish(
        samples[keep] / fs,
        path,
        "wfdb",
        start=start,
        duration=duration,
        n_ignored=int((~keep).sum()),
        min_rr=min_rr,
        max_rr=max_rr,
        detail=f"annotations at {fs:g} Hz",
        where=where,
    )


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]  # 1-based line number of each row


def _split(line: str, delimiter: str | None) -> list[str]:
    return [c.strip() for c in (line.split(delimiter) if delimiter else line.split())]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path) -> _Table:
    raw = path.read_bytes()
    # Windows tools may write UTF-16 with a byte-order mark; everything else is read as UTF-8
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise BeatsFormatError(
            f"{path}: not a text file ({err.reason} at byte {err.start}); expected a CSV or text file of beat "
            "times or RR intervals"
        ) from err
    entries = [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not entries:
        raise BeatsFormatError(f"{path}: empty file; expected beat times or RR intervals, one per line")
    sample = entries[min(1, len(entries) - 1)][1]
    delimiter = next((d for d in ("\t", ";", ",") if d in sample), None)
    header = None
    first = _split(entries[0][1], delimiter)
    if not all(_is_number(c) for c in first if c):
        header = first
        entries = entries[1:]
    rows = [_split(line, delimiter) for _, line in entries]
    if delimiter in ("\t", ";"):
        # a decimal comma (0,812) is only unambiguous when the comma does not separate columns
        rows = [[c.replace(",", ".") if _is_number(c.replace(",", ".")) else c for c in row] for row in rows]
    return _Table(header, rows, [n for n, _ in entries])


def _unit_from_name(name: str) -> str | None:
    lower = name.lower()
    if re.search(r"(\[|\(|_|\s|^)ms(\]|\)|$|\s)", lower) or "millisec" in lower:
        return "ms"
    if re.search(r"(\[|\(|_|\s)s(\]|\)|$)", lower) or "second" in lower:
        return "s"
    return None


def _kind_from_name(name: str) -> str | None:
    lower = name.lower()
    if any(w in re.split(r"[^a-z]+", lower) for w in _RR_WORDS) or "interval" in lower:
        return "rr"
    if any(w in lower for w in _PEAK_WORDS):
        return "peaks"
    return None


def _pick_column(table: _Table, path: Path, column: str | int | None, kind: str | None) -> tuple[int, str]:
    """Index and name of the column to read."""
    width = max(len(r) for r in table.rows) if table.rows else (len(table.header or []) or 1)
    names = table.header or [f"column {i}" for i in range(width)]
    if column is not None:
        if isinstance(column, int) or (isinstance(column, str) and column.isdigit()):
            index = int(column)
            if not 0 <= index < width:
                raise BeatsFormatError(f"{path}: no column {index}; the file has {width} columns: {names}")
            return index, names[index] if index < len(names) else f"column {index}"
        lowered = [n.lower() for n in names]
        if column.lower() in lowered:
            index = lowered.index(column.lower())
            return index, names[index]
        raise BeatsFormatError(f"{path}: no column {column!r}; columns: {names}")
    if width == 1:
        return 0, names[0]
    if table.header is not None:
        for wanted in [kind] if kind else ["rr", "peaks"]:
            hits = [i for i, n in enumerate(table.header) if _kind_from_name(n) == wanted]
            if hits:
                return hits[0], table.header[hits[0]]
    raise BeatsFormatError(
        f"{path}: {width} columns {names} and none named as RR intervals or beat times; choose one with "
        "--beats-column NAME|INDEX"
    )


def _column_values(table: _Table, index: int, path: Path, expected: str) -> tuple[np.ndarray, list[int]]:
    values = np.empty(len(table.rows), dtype=np.float64)
    for i, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        cell = row[index] if index < len(row) else ""
        if cell == "" or cell.lower() in ("nan", "na", "null", "-"):
            values[i] = np.nan
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            raise BeatsFormatError(
                f"{path}: line {line}: {cell!r} is not a number; expected {expected}"
            ) from None
    return values, table.lines


def _classify(values: np.ndarray) -> str:
    """``"peaks"`` for a column that climbs through the night, ``"rr"`` for one that hovers about a value.

    RR intervals go up and down about half of the time and change little from beat to beat; beat times
    rise at every step (20 values in a row do not rise by chance), in a short file by about one RR
    (0.2-3 s; steps above 20 are peak times in ms or samples, which :func:`read_peak_times` refuses with a
    hint).
    """
    finite = values[np.isfinite(values)]
    if finite.size < 3:
        return "rr"
    step = np.diff(finite)
    rising = float(np.mean(step > 0))
    typical = float(np.median(step))
    if rising > 0.95 and (finite.size >= 20 or 0.2 <= typical <= 3.0 or typical > 20.0):
        return "peaks"
    return "rr"


def _text_kind(path: Path, column: str | int | None) -> str:
    table = _read_table(path)
    index, name = _pick_column(table, path, column, None)
    if table.header is not None:
        kind = _kind_from_name(name)
        if kind is not None:
            return kind
    values, _ = _column_values(table, index, path, "numbers")
    return _classify(values)


def read_peak_times(
    path: str | os.PathLike[str],
    *,
    column: str | int | None = None,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
) -> BeatSeries:
    """R-peak times in seconds from a text or CSV file (one per line, or a column chosen by name/index).

    Raises
    ------
    BeatsFormatError
        For a non-numeric value (naming the line), times that do not increase, values that look like
        milliseconds or sample numbers rather than seconds, or fewer than two beats.
    """
    path = _existing(path, "a text or CSV file of R-peak times in seconds")
    table = _read_table(path)
    index, name = _pick_column(table, path, column, "peaks")
    expected = "R-peak times in seconds"
    values, lines = _column_values(table, index, path, expected)
    keep = np.isfinite(values)
    if not keep.all():
        first = next(n for n, k in zip(lines, keep, strict=True) if not k)
        logger.warning(
            "%s: %d empty or non-finite entries (NaN, inf) skipped, the first at line %d",
            path,
            int((~keep).sum()),
            first,
        )
    values = values[keep]
    where = [f"line {n}" for n, k in zip(lines, keep, strict=True) if k]
    if values.size >= 3:
        typical = float(np.median(np.diff(values)))
        if typical > 20.0:
            raise BeatsFormatError(
                f"{path}: R-peak times {name!r} are {typical:g} apart on typical; expected seconds (a heartbeat "
                "every 0.3-2 s): convert milliseconds or sample numbers to seconds, or read RR intervals with "
                "--beats-format rr"
            )
    return _finish(
        values,
        path,
        "peaks",
        start=None,
        duration=None,
        n_ignored=int((~keep).sum()),
        min_rr=min_rr,
        max_rr=max_rr,
        detail=f"peak times in s from {name!r}",
        where=where,
    )


def read_rr_intervals(
    path: str | os.PathLike[str],
    *,
    unit: str = "auto",
    column: str | int | None = None,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
) -> BeatSeries:
    """Beat times from RR intervals in a text or CSV file (chest-strap exports: one RR in ms per line).

    Parameters
    ----------
    path : path-like
        The file; an optional header line names the column (and may give the unit: ``RR [ms]``).
    unit : {"auto", "ms", "s"}
        Unit of the values; ``"auto"`` reads it from the header or decides by magnitude (median above 20:
        milliseconds).
    column : str or int, optional
        Column name or 0-based index for a table with several columns.
    min_rr, max_rr : float
        Physiological range in seconds; intervals outside it are counted and masked downstream.

    Returns
    -------
    BeatSeries
        The first beat at 0 s, each interval ending the next beat. Empty, zero, negative or NaN values are
        dropped (counted in ``n_ignored``) without shifting the time base.
    """
    if unit not in ("auto", "ms", "s"):
        raise ValueError(f"unit: expected 'auto', 'ms' or 's', got {unit!r}")
    path = _existing(path, "a text or CSV file of RR intervals")
    table = _read_table(path)
    index, name = _pick_column(table, path, column, "rr")
    values, _ = _column_values(table, index, path, f"RR intervals in {unit if unit != 'auto' else 'ms or s'}")
    usable = np.isfinite(values) & (values > 0)
    if not usable.any():
        raise BeatsFormatError(
            f"{path}: no beats: no positive RR interval in {name!r}; expected RR intervals"
        )
    how = "stated"
    if unit == "auto":
        named = _unit_from_name(name) if table.header is not None else None
        if named is not None:
            unit, how = named, "from the header"
        else:
            unit, how = ("ms" if float(np.median(values[usable])) > 20.0 else "s"), "by magnitude"
    rr = values[usable] / (1000.0 if unit == "ms" else 1.0)
    times = np.concatenate([[0.0], np.cumsum(rr)])
    dropped = int((~usable).sum())
    if dropped:
        logger.warning("%s: %d empty, zero or negative RR values dropped", path, dropped)
    return _finish(
        times,
        path,
        "rr",
        start=None,
        duration=None,
        n_ignored=dropped,
        min_rr=min_rr,
        max_rr=max_rr,
        detail=f"RR in {unit} ({how}) from {name!r}",
    )


# --------------------------------------------------------------------------------------------------
# EDF
# --------------------------------------------------------------------------------------------------


def read_ecg_beats(
    path: str | os.PathLike[str],
    *,
    channel: str | None = None,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
) -> BeatSeries:
    """Beats detected in the ECG channel of an EDF / EDF+ / BDF file.

    Parameters
    ----------
    path : path-like
        The recording.
    channel : str, optional
        ECG channel name (resolved through the readers' aliases); default ECG lead I or the montage's single
        ECG lead (``ECG``, ``ECG I``, ``EKG``, ...).
    """
    from kdsleep.data.datasets.base import DEFAULT_CHANNELS
    from kdsleep.data.heartbeats import detect_heartbeats
    from kdsleep.data.readers.channels import MissingChannelError, resolve_channel
    from kdsleep.data.readers.edf import EdfFormatError, read_edf, read_edf_header
    from kdsleep.data.resample import resample

    path = _existing(path, "an EDF, EDF+ or BDF file with an ECG channel")
    spec = channel if channel is not None else list(DEFAULT_CHANNELS["ecg"])
    try:
        source = resolve_channel(spec, read_edf_header(path).signal_labels, source=path)
        recording = read_edf(path, {"ecg": [str(source)]})
    except MissingChannelError as err:
        raise BeatsFormatError(
            f"{path}: no ECG channel (tried {err.candidates}); available channels: {err.available}; choose one "
            "with --channel NAME"
        ) from err
    except EdfFormatError as err:
        raise BeatsFormatError(f"{err} (expected an EDF, EDF+ or BDF recording with an ECG channel)") from err
    except (OSError, ValueError) as err:
        raise BeatsFormatError(f"{path}: cannot read the recording as EDF/BDF: {err}") from err
    signal = recording["ecg"]
    x = np.asarray(signal.data, dtype=np.float64)
    sfreq = float(signal.sfreq)
    detect_sfreq = sfreq
    if sfreq < 100.0:
        # the detector needs 100 Hz; upsample (keeping missing stretches missing) as the ihr channel does
        finite = np.isfinite(x)
        x = resample(np.where(finite, x, 0.0), sfreq, 128.0)
        if not finite.all():
            x[resample(np.where(finite, 0.0, 1.0), sfreq, 128.0) > 0.5] = np.nan
        detect_sfreq = 128.0
    beats = detect_heartbeats(x, detect_sfreq)
    return _finish(
        beats / detect_sfreq,
        path,
        "edf",
        start=recording.start,
        duration=float(signal.duration),
        n_ignored=0,
        min_rr=min_rr,
        max_rr=max_rr,
        detail=f"R peaks detected in {str(source)!r} at {sfreq:g} Hz",
    )


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------


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
    path = _existing(path, "a beat file: WFDB annotations, R-peak times, RR intervals or an EDF with ECG")
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
        return _text_kind(path, column)
    except BeatsFormatError as err:
        raise BeatsFormatError(
            f"{err}. Unknown beat format: expected WFDB beat annotations (.ecg, .atr, .qrs, ...), a CSV/text "
            "file of R-peak times (s) or RR intervals (ms or s), or an EDF with an ECG channel; force one with "
            "--beats-format {wfdb,peaks,rr,edf}"
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
                "R-peak times in increasing order or RR intervals (give --beats-format and --rr-unit to force one)"
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
            series = _finish(
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
