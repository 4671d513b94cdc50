"""Plain-text and CSV hypnograms.

Two layouts are read:

- one label per line (UCDDB ``*_stage.txt``: one code per 30-s epoch; blank lines ignored);
- a delimited table with a header row: either a stage column alone (one row per epoch), or ``onset``,
  ``duration`` and stage columns (one row per scoring event, seconds).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage, parse_stage_labels

__all__ = ["read_text_hypnogram"]

logger = logging.getLogger(__name__)

_STAGE_COLUMNS = (
    "stage",
    "stages",
    "sleep stage",
    "sleep_stage",
    "label",
    "annotation",
    "description",
    "hypnogram",
)
_ONSET_COLUMNS = ("onset", "start", "time", "onset_s", "start_s")
_DURATION_COLUMNS = ("duration", "duration_s", "length")


def _find(columns: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [c.strip().lower() for c in columns]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_text_hypnogram(
    path: str | os.PathLike[str],
    *,
    mapping: str | Mapping[str, SleepStage | int] = "auto",
    epoch_length: float = 30.0,
    onset: float = 0.0,
    column: str | None = None,
) -> Hypnogram:
    """Read a text or CSV hypnogram.

    Parameters
    ----------
    path : path-like
        The file.
    mapping : str or dict
        Label mapping: ``"ucddb"`` for UCDDB codes (0 W, 1 REM, 2-5 S1-S4, 6 artefact, 7 and the
        undocumented 8 unscored), ``"rk"`` for ``W 1 2 3 4 R``, ``"auto"`` for spelled-out labels.
    epoch_length : float
        Seconds per line / row (30 s for UCDDB).
    onset : float
        Start of the first epoch after the recording start (one-label-per-line layout).
    column : str, optional
        Stage column of a CSV with a header; default the first of ``stage``, ``label``, ...

    Raises
    ------
    UnknownStageLabelError
        For a label the mapping does not know (its message names the label and the mapping).
    ValueError
        For an empty file or a table without a stage column.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty hypnogram file")
    first = lines[0]
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    header_cells = [c.strip() for c in first.split(delimiter)] if delimiter else [first.strip()]
    has_header = (
        column is not None
        or _find(header_cells, _STAGE_COLUMNS) is not None
        or (delimiter is not None and _find(header_cells, _ONSET_COLUMNS) is not None)
    )
    if not has_header:
        if delimiter is not None:
            raise ValueError(
                f"{path}: a delimited hypnogram needs a header row with a stage column (one of {_STAGE_COLUMNS}); "
                f"first row is {first!r}"
            )
        labels = [line.strip() for line in lines]
        stages = parse_stage_labels(labels, mapping, source=path)
        return Hypnogram(stages, epoch_length, onset, path, tuple(labels))

    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter or ","))
    columns, body = rows[0], rows[1:]
    if column is not None:
        stage_col = _find(columns, (column.strip().lower(),))
        if stage_col is None:
            raise ValueError(f"{path}: no column {column!r}; columns are {columns}")
    else:
        stage_col = _find(columns, _STAGE_COLUMNS)
        if stage_col is None:
            raise ValueError(f"{path}: no stage column (one of {_STAGE_COLUMNS}); columns are {columns}")
    labels = [row[stage_col].strip() if stage_col < len(row) else "" for row in body]
    stages = parse_stage_labels(labels, mapping, source=path)
    onset_col = _find(columns, _ONSET_COLUMNS)
    duration_col = _find(columns, _DURATION_COLUMNS)
    if onset_col is None:
        return Hypnogram(stages, epoch_length, onset, path, tuple(labels))
    try:
        onsets = [float(row[onset_col]) for row in body]
        durations = [float(row[duration_col]) if duration_col is not None else epoch_length for row in body]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: onset/duration columns must hold seconds") from None
    return Hypnogram.from_events(onsets, np.asarray(durations), stages, epoch_length, path, labels, onset=0.0)
