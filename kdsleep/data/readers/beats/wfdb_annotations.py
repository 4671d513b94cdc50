"""Beats of a WFDB annotation file (format ``"wfdb"``)."""

from __future__ import annotations

import logging
import os

import numpy as np

from kdsleep.data.readers.beats.series import BeatSeries, BeatsFormatError, existing_file, finish_series
from kdsleep.data.readers.wfdb_io import BEAT_SYMBOLS, read_wfdb_beats, read_wfdb_header

__all__ = ["read_wfdb_beat_file"]

logger = logging.getLogger(__name__)


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
    path = existing_file(path, "a WFDB beat annotation file")
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
    return finish_series(
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
