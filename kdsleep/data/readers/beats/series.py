"""The beat series every beat reader returns, and the checks common to all formats."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["BEAT_FORMATS", "BeatSeries", "BeatsFormatError", "existing_file", "finish_series"]

logger = logging.getLogger(__name__)

#: Formats :func:`read_beats` reads (``"auto"`` picks one with :func:`detect_beats_format`).
BEAT_FORMATS = ("wfdb", "peaks", "rr", "edf")


class BeatsFormatError(ValueError):
    """A beat file that cannot be read as heartbeats; the message names the file and what was expected.

    Attributes
    ----------
    remedy : tuple of str
        The arguments of :func:`~kdsleep.data.readers.beats.read_beats` that would read the file otherwise
        (``"format"``, ``"rr_unit"``, ``"column"``, ``"channel"``), when some would; a front end names its own
        options for them.
    """

    def __init__(self, message: str, *, remedy: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.remedy = remedy


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


def finish_series(
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
            message += " (most of them: check the RR unit, or the file format)"
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


def existing_file(path: str | os.PathLike[str], expected: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BeatsFormatError(f"{path}: no such file (expected {expected})")
    return path
