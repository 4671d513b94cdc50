"""A small EDF / EDF+ / BDF writer.

Writes the European Data Format (Kemp et al. 1992), its EDF+ extension with an ``EDF Annotations``
channel of time-stamped annotation lists (TALs; Kemp & Olivan 2003), and the 24-bit BDF variant. Files
are written to a temporary file in the target folder and moved into place, so a crash never leaves a
half-written file under the final name.

The header fields are written exactly as given (units included, e.g. upper-case ``"UV"``), which lets the
tests build the odd files found in the wild.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from kdsleep._io import atomic_write

__all__ = ["EdfAnnotation", "write_edf", "format_tal"]

logger = logging.getLogger(__name__)

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class EdfAnnotation:
    """One EDF+ annotation.

    Parameters
    ----------
    onset : float
        Seconds after the file start.
    duration : float or None
        Seconds; ``None`` writes no duration.
    description : str
        Annotation text (UTF-8 in the file).
    """

    onset: float
    duration: float | None
    description: str


def _format_seconds(value: float) -> str:
    # Decimal seconds with up to 7 decimals (100 ns), no exponent, no trailing zeros.
    text = f"{value:.7f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def format_tal(onset: float, duration: float | None, descriptions: Sequence[str]) -> bytes:
    """Encode one time-stamped annotation list: ``+onset[\\x15duration]\\x14text\\x14...\\x00``.

    An empty ``descriptions`` gives the time-keeping TAL that opens every data record (``+onset\\x14\\x14\\x00``).
    """
    sign = "-" if onset < 0 else "+"
    out = (sign + _format_seconds(abs(onset))).encode("ascii")
    if duration is not None:
        if duration < 0:
            raise ValueError(f"annotation duration must be >= 0 s, got {duration}")
        out += b"\x15" + _format_seconds(duration).encode("ascii")
    out += b"\x14"
    if not descriptions:
        out += b"\x14"
    for text in descriptions:
        encoded = text.encode("utf-8")
        if any(c in encoded for c in (0, 0x14, 0x15)):
            raise ValueError(f"annotation text {text!r} contains an EDF+ separator byte (0x00, 0x14 or 0x15)")
        out += encoded + b"\x14"
    return out + b"\x00"


def _field(value: object, width: int, name: str, path: Path) -> bytes:
    text = str(value)
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{path}: EDF header field {name} must be ASCII, got {text!r}") from None
    if any(b < 32 or b > 126 for b in raw):
        raise ValueError(f"{path}: EDF header field {name} must hold printable ASCII only, got {text!r}")
    if len(raw) > width:
        raise ValueError(f"{path}: EDF header field {name} holds at most {width} characters, got {text!r}")
    return raw.ljust(width, b" ")


def _format_physical(value: float, direction: str) -> tuple[str, float]:
    """Write ``value`` in at most 8 characters, rounded outward (``direction`` "down" or "up")."""
    for decimals in range(6, -1, -1):
        scale = 10.0**decimals
        rounded = (math.floor(value * scale) if direction == "down" else math.ceil(value * scale)) / scale
        text = f"{rounded:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= 8:
            return text, float(text)
    raise ValueError(f"physical value {value} cannot be written in the 8 characters of an EDF header field")


def _edf_date(start: datetime, path: Path) -> tuple[str, str]:
    if not 1985 <= start.year <= 2084:
        raise ValueError(f"{path}: EDF start dates must lie in 1985-2084, got {start:%Y-%m-%d}")
    return start.strftime("%d.%m.%y"), start.strftime("%H.%M.%S")


def _choose_record_duration(sfreqs: Sequence[float]) -> float:
    for duration in range(1, 61):
        if all(abs(f * duration - round(f * duration)) < 1e-6 for f in sfreqs):
            return float(duration)
    raise ValueError(
        f"no data-record duration of 1-60 s holds a whole number of samples for sampling rates {list(sfreqs)}; "
        "pass record_duration"
    )


def _as_annotations(annotations: Iterable[object] | None) -> list[EdfAnnotation]:
    if annotations is None:
        return []
    items: Iterable[Any] = annotations
    if all(hasattr(annotations, a) for a in ("onset", "duration", "description")):
        # mne.Annotations: parallel arrays
        items = zip(annotations.onset, annotations.duration, annotations.description, strict=True)  # type: ignore[attr-defined]
    out: list[EdfAnnotation] = []
    for item in items:
        if isinstance(item, EdfAnnotation):
            out.append(item)
        else:
            onset, duration, text = item
            out.append(EdfAnnotation(float(onset), None if duration is None else float(duration), str(text)))
    return out


def write_edf(
    path: str | os.PathLike[str],
    signals: Sequence[np.ndarray] | np.ndarray,
    sfreqs: Sequence[float] | float,
    channel_names: Sequence[str],
    units: Sequence[str] | str = "uV",
    start: datetime | None = None,
    annotations: Iterable[object] | None = None,
    *,
    physical_min: Sequence[float] | None = None,
    physical_max: Sequence[float] | None = None,
    transducers: Sequence[str] | None = None,
    prefiltering: Sequence[str] | None = None,
    patient_id: str = "X X X X",
    recording_id: str | None = None,
    record_duration: float | None = None,
    plus: bool | None = None,
    bdf: bool = False,
) -> Path:
    """Write signals (and annotations) to an EDF, EDF+ or BDF(+) file, atomically.

    Parameters
    ----------
    path : path-like
        Target file; its folder must exist.
    signals : sequence of 1-D arrays or 2-D array (n_channels, n_samples)
        Samples in the physical ``units``. Channels may have different rates but must span the same duration
        (to the nearest data record); the last data record is padded with each channel's last value.
    sfreqs : float or sequence of float
        Sampling rate of each channel in Hz.
    channel_names : sequence of str
        EDF labels (at most 16 ASCII characters), e.g. ``"EEG C3-CLE"``.
    units : str or sequence of str
        Physical dimension of each channel, written verbatim (at most 8 characters): ``"uV"``, ``"mV"``,
        ``"UV"``, ...
    start : datetime, optional
        Start of the recording (1985-2084); default 2000-01-01 00:00:00. Sub-second parts are dropped.
    annotations : iterable, optional
        ``(onset, duration, description)`` tuples, :class:`EdfAnnotation` objects or ``mne.Annotations``.
        When given (or ``plus=True``) the file is EDF+ with an ``EDF Annotations`` channel.
    physical_min, physical_max : sequence of float, optional
        Physical range of each channel; default the data range (rounded outward to fit 8 characters).
        Samples outside the range are clipped.
    transducers, prefiltering : sequence of str, optional
        Header text per channel.
    patient_id : str
        EDF+ patient field (``"code sex birthdate name"``, ``X`` for unknown).
    recording_id : str, optional
        EDF+ recording field; default ``"Startdate dd-MMM-yyyy X X X"``.
    record_duration : float, optional
        Data-record duration in seconds; default the smallest whole number of seconds that holds a whole
        number of samples of every channel. Annotation-only files use one record of duration 0, like the
        HMC and Sleep-EDF scoring files.
    plus : bool, optional
        Force EDF+ (``True``) or plain EDF (``False``); default EDF+ exactly when annotations are given.
    bdf : bool
        Write 24-bit BDF (BDF+ with ``BDF Annotations``) instead of 16-bit EDF.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if isinstance(signals, np.ndarray) and signals.ndim == 2:
        data = [np.asarray(row, dtype=np.float64) for row in signals]
    else:
        data = [np.asarray(s, dtype=np.float64) for s in signals]
    n_channels = len(data)
    channel_names = list(channel_names)
    if isinstance(sfreqs, (int, float, np.integer, np.floating)):
        sfreqs = [float(sfreqs)] * n_channels
    sfreqs = [float(f) for f in sfreqs]
    if isinstance(units, str):
        units = [units] * n_channels
    units = list(units)
    for name, values in (("sfreqs", sfreqs), ("channel_names", channel_names), ("units", units)):
        if len(values) != n_channels:
            raise ValueError(f"{path}: {name} has {len(values)} entries for {n_channels} signals")
    for name, x in zip(channel_names, data, strict=True):
        if x.ndim != 1:
            raise ValueError(f"{path}: signal {name!r} must be 1-D, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: signal {name!r} holds NaN or infinite samples, which EDF cannot store")
    for name, f in zip(channel_names, sfreqs, strict=True):
        if not f > 0:
            raise ValueError(f"{path}: sampling rate of {name!r} must be positive, got {f}")

    ann_list = _as_annotations(annotations)
    plus = bool(ann_list) if plus is None else plus
    if ann_list and not plus:
        raise ValueError(f"{path}: annotations need EDF+ (plus=True)")
    start = start or datetime(2000, 1, 1)
    if start.microsecond:
        logger.debug(
            "%s: dropping %d us of the start time (EDF stores whole seconds)", path, start.microsecond
        )
        start = start.replace(microsecond=0)
    start_date, start_time = _edf_date(start, path)
    if recording_id is None:
        recording_id = (
            f"Startdate {start.day:02d}-{_MONTHS[start.month - 1]}-{start.year} X X X" if plus else ""
        )

    # Data records.
    if n_channels == 0:
        if record_duration is None:
            record_duration = 0.0
        n_records = 1
        samples_per_record: list[int] = []
    else:
        if record_duration is None:
            record_duration = _choose_record_duration(sfreqs)
        if record_duration <= 0:
            raise ValueError(f"{path}: record_duration must be > 0 s when the file holds signals")
        samples_per_record = []
        for name, f in zip(channel_names, sfreqs, strict=True):
            spr = f * record_duration
            if abs(spr - round(spr)) > 1e-6:
                raise ValueError(
                    f"{path}: {f:g} Hz x {record_duration:g} s records is not a whole number of samples for {name!r}"
                )
            samples_per_record.append(int(round(spr)))
        n_records_each = [
            math.ceil(len(x) / spr - 1e-9) for x, spr in zip(data, samples_per_record, strict=True)
        ]
        n_records = max(n_records_each)
        if min(n_records_each) != n_records:
            raise ValueError(
                f"{path}: signals span different durations: "
                + ", ".join(
                    f"{n} {len(x) / f:g} s" for n, x, f in zip(channel_names, data, sfreqs, strict=True)
                )
            )
        n_records = max(n_records, 1)

    # Annotation channel: enough bytes per record for the time-keeping TAL plus an even share of the rest.
    ann_label = "BDF Annotations" if bdf else "EDF Annotations"
    bytes_per_sample = 3 if bdf else 2
    record_tals: list[bytes] = []
    if plus:
        tals = [format_tal(a.onset, a.duration, [a.description]) for a in ann_list]
        keep_max = max(len(format_tal(r * record_duration, None, [])) for r in (0, n_records - 1))
        longest = max((len(t) for t in tals), default=0)
        capacity = keep_max + longest + math.ceil(sum(len(t) for t in tals) / n_records)
        capacity = max(capacity, 2 * bytes_per_sample)
        ann_spr = math.ceil(capacity / bytes_per_sample)
        capacity = ann_spr * bytes_per_sample
        queue = list(tals)
        for r in range(n_records):
            chunk = format_tal(r * record_duration, None, [])
            while queue and len(chunk) + len(queue[0]) <= capacity:
                chunk += queue.pop(0)
            record_tals.append(chunk.ljust(capacity, b"\x00"))
        if queue:  # unreachable by construction of capacity; kept as a guard against silent loss
            raise RuntimeError(f"{path}: {len(queue)} annotations did not fit into the data records")

    # Header.
    all_labels = channel_names + ([ann_label] if plus else [])
    ns = len(all_labels)
    dig_min, dig_max = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    pmins_text, pmaxs_text, pmins, pmaxs = [], [], [], []
    for i, x in enumerate(data):
        lo = float(physical_min[i]) if physical_min is not None else float(x.min()) if x.size else -1.0
        hi = float(physical_max[i]) if physical_max is not None else float(x.max()) if x.size else 1.0
        if hi <= lo:
            # Flat channel: any non-empty range represents it exactly at its centre.
            lo, hi = lo - 1.0, hi + 1.0
        lo_text, lo_val = _format_physical(lo, "down")
        hi_text, hi_val = _format_physical(hi, "up")
        pmins_text.append(lo_text)
        pmaxs_text.append(hi_text)
        pmins.append(lo_val)
        pmaxs.append(hi_val)
    if plus:
        pmins_text.append("-1")
        pmaxs_text.append("1")

    transducers = list(transducers) if transducers is not None else [""] * n_channels
    prefiltering = list(prefiltering) if prefiltering is not None else [""] * n_channels
    spr_all = samples_per_record + ([ann_spr] if plus else [])
    header_bytes = 256 * (ns + 1)
    if bdf:
        version = b"\xffBIOSEMI"
        reserved = "BDF+C" if plus else "24BIT"
    else:
        version = b"0       "
        reserved = "EDF+C" if plus else ""
    header = bytearray(version)
    header += _field(patient_id, 80, "patient", path)
    header += _field(recording_id, 80, "recording", path)
    header += _field(start_date, 8, "startdate", path)
    header += _field(start_time, 8, "starttime", path)
    header += _field(header_bytes, 8, "header bytes", path)
    header += _field(reserved, 44, "reserved", path)
    header += _field(n_records, 8, "number of data records", path)
    header += _field(_format_seconds(record_duration), 8, "record duration", path)
    header += _field(ns, 4, "number of signals", path)
    units_all = units + ([""] if plus else [])
    per_signal: list[tuple[Sequence[object], int, str]] = [
        (all_labels, 16, "label"),
        (transducers + ([""] if plus else []), 80, "transducer"),
        (units_all, 8, "physical dimension"),
        (pmins_text, 8, "physical minimum"),
        (pmaxs_text, 8, "physical maximum"),
        ([dig_min] * ns, 8, "digital minimum"),
        ([dig_max] * ns, 8, "digital maximum"),
        (prefiltering + ([""] if plus else []), 80, "prefiltering"),
        (spr_all, 8, "samples per record"),
        ([""] * ns, 32, "reserved"),
    ]
    for entries, width, field_name in per_signal:
        if len(entries) != ns:
            raise ValueError(f"{path}: header field {field_name} has {len(entries)} entries for {ns} signals")
        for i, v in enumerate(entries):
            header += _field(v, width, f"{field_name} of signal {i + 1} ({all_labels[i]!r})", path)
    assert len(header) == header_bytes

    # Digital samples, one (n_records, spr) block per channel.
    blocks = []
    for x, spr, lo, hi in zip(data, samples_per_record, pmins, pmaxs, strict=True):
        total = n_records * spr
        if len(x) < total:
            fill = x[-1] if x.size else 0.0
            x = np.concatenate([x, np.full(total - len(x), fill)])
        if x.size and (x.min() < lo or x.max() > hi):
            logger.warning(
                "%s: samples outside the physical range [%s, %s] are clipped",
                path,
                format(lo, "g"),
                format(hi, "g"),
            )
        gain = (dig_max - dig_min) / (hi - lo)
        digital = np.rint((np.clip(x, lo, hi) - lo) * gain + dig_min)
        digital = np.clip(digital, dig_min, dig_max).astype(np.int32)
        blocks.append(digital.reshape(n_records, spr))

    # Assemble all records at once as bytes: (n_records, bytes per record).
    columns = []
    for block in blocks:
        if bdf:
            columns.append(
                block.astype("<i4").view(np.uint8).reshape(n_records, -1, 4)[:, :, :3].reshape(n_records, -1)
            )
        else:
            columns.append(block.astype("<i2").view(np.uint8).reshape(n_records, -1))
    if plus:
        columns.append(np.frombuffer(b"".join(record_tals), dtype=np.uint8).reshape(n_records, -1))
    payload = np.ascontiguousarray(np.concatenate(columns, axis=1)) if columns else np.zeros(0, np.uint8)

    def write(fh: IO[bytes]) -> None:
        fh.write(bytes(header))
        fh.write(payload.tobytes())

    return atomic_write(path, write)
