"""Beats of a text or CSV file: R-peak times (format ``"peaks"``) or RR intervals (format ``"rr"``)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep.data.readers.beats.series import BeatSeries, BeatsFormatError, existing_file, finish_series

__all__ = ["read_peak_times", "read_rr_intervals", "text_kind"]

logger = logging.getLogger(__name__)

_RR_WORDS = ("rr", "ibi", "interval", "nn")
_PEAK_WORDS = ("peak", "time", "beat", "onset", "sec")


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
        f"{path}: {width} columns {names} and none named as RR intervals or beat times; choose one by name "
        "or index",
        remedy=("column",),
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


def text_kind(path: Path, column: str | int | None) -> str:
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
    path = existing_file(path, "a text or CSV file of R-peak times in seconds")
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
                "every 0.3-2 s): convert milliseconds or sample numbers to seconds, or read the values as RR "
                "intervals (format rr)",
                remedy=("format",),
            )
    return finish_series(
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
    path = existing_file(path, "a text or CSV file of RR intervals")
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
    return finish_series(
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
