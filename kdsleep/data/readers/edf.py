"""EDF / EDF+ / BDF signals through mne, with a strict header check first.

The header is parsed here before mne sees the file, for three reasons: a corrupt or truncated file gets an
error that names the field at fault (mne tends to warn and read what it can); units that mne does not
recognise (upper-case ``UV`` / ``MV``, common in files from older systems) are scaled correctly; and
channels with different sampling rates are read at their own rate (mne upsamples all channels it reads
together to the highest rate, so channels are read in groups of equal rate).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kdsleep.data.readers.channels import (
    ChannelSource,
    correct_ecg_polarity,
    is_ecg_name,
    resolve_channel,
    unit_scale_to_volts,
)
from kdsleep.data.recording import Recording, Signal

__all__ = ["EdfFormatError", "EdfHeader", "read_edf", "read_edf_header"]

logger = logging.getLogger(__name__)

ChannelRequest = Sequence[str] | Mapping[str, str | Sequence[str]] | None


class EdfFormatError(ValueError):
    """A file that is not a readable EDF / EDF+ / BDF file (corrupt or truncated header, missing data)."""


@dataclass(frozen=True)
class EdfHeader:
    """What the fixed part of an EDF / BDF header says."""

    path: Path
    bdf: bool
    plus: bool
    start: datetime | None
    n_records: int
    record_duration: float
    labels: tuple[str, ...]
    units: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    physical_min: tuple[float, ...] = ()
    physical_max: tuple[float, ...] = ()
    digital_min: tuple[float, ...] = ()
    digital_max: tuple[float, ...] = ()
    #: Whole data records the file holds (more than ``n_records`` when the header under-declares them).
    records_in_file: int | None = None

    @property
    def signal_labels(self) -> list[str]:
        """Labels of the signal channels (annotation channels excluded)."""
        return [label for label in self.labels if label not in ("EDF Annotations", "BDF Annotations")]

    def sfreq(self, label: str) -> float:
        """Sampling rate of channel ``label`` in Hz."""
        i = self.labels.index(label)
        if self.record_duration <= 0:
            raise EdfFormatError(
                f"{self.path}: record duration {self.record_duration} s gives no sampling rate"
            )
        return self.samples_per_record[i] / self.record_duration

    @property
    def duration(self) -> float:
        """Recording length in seconds."""
        return self.n_records * self.record_duration


def _number(raw: bytes, name: str, path: Path) -> float:
    text = raw.decode("ascii", errors="replace").strip()
    try:
        return float(text)
    except ValueError:
        raise EdfFormatError(
            f"{path}: corrupt EDF header: field {name} is {text!r}, expected a number"
        ) from None


def _integer(raw: bytes, name: str, path: Path) -> int:
    value = _number(raw, name, path)
    if not math.isfinite(value) or value != int(value):
        raise EdfFormatError(
            f"{path}: corrupt EDF header: field {name} is {value:g}, expected a whole number"
        )
    return int(value)


def _parse_start(date: str, time: str, path: Path) -> datetime | None:
    try:
        day, month, year = (int(v) for v in date.split("."))
        hour, minute, second = (int(v) for v in time.replace(":", ".").split("."))
        # EDF years: 85-99 -> 1985-1999, 00-84 -> 2000-2084 (the clipping-date convention).
        year += 1900 if year >= 85 else 2000
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        logger.warning("%s: unreadable start date/time %r %r; start left unknown", path, date, time)
        return None


def read_edf_header(path: str | os.PathLike[str]) -> EdfHeader:
    """Parse and check the header of an EDF, EDF+ or BDF file.

    Raises
    ------
    EdfFormatError
        When the file is shorter than its header, a numeric field does not parse, the header length
        disagrees with the number of signals, or the data records are missing or truncated.
    FileNotFoundError
        When the file does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise EdfFormatError(f"{path}: is a folder, not an EDF/BDF file; give the recording file itself")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            raise EdfFormatError(f"{path}: truncated EDF header: {len(fixed)} bytes, expected at least 256")
        version = fixed[0:8]
        bdf = version == b"\xffBIOSEMI"
        if not bdf and version.strip() != b"0":
            raise EdfFormatError(
                f"{path}: not an EDF/BDF file: version field is {version!r}, expected '0' or '\\xffBIOSEMI'"
            )
        header_bytes = _integer(fixed[184:192], "header bytes", path)
        reserved = fixed[192:236].decode("ascii", errors="replace").strip()
        n_records = _integer(fixed[236:244], "number of data records", path)
        record_duration = _number(fixed[244:252], "duration of a data record", path)
        ns = _integer(fixed[252:256], "number of signals", path)
        if ns < 0 or ns > 4096:
            raise EdfFormatError(f"{path}: corrupt EDF header: {ns} signals")
        if header_bytes != 256 * (ns + 1):
            raise EdfFormatError(
                f"{path}: corrupt EDF header: header length field is {header_bytes} bytes, expected "
                f"{256 * (ns + 1)} for {ns} signals"
            )
        rest = fh.read(256 * ns)
    if len(rest) < 256 * ns:
        raise EdfFormatError(
            f"{path}: truncated EDF header: {256 + len(rest)} of {header_bytes} header bytes present"
        )

    def fields(offset: int, width: int) -> list[bytes]:
        base = offset * ns
        return [rest[base + i * width : base + (i + 1) * width] for i in range(ns)]

    labels = tuple(f.decode("latin-1").strip() for f in fields(0, 16))
    units = tuple(f.decode("latin-1").strip() for f in fields(16 + 80, 8))
    spr_offset = 16 + 80 + 8 * 5 + 80
    samples_per_record = tuple(
        _integer(f, f"samples per record of {labels[i]!r}", path) for i, f in enumerate(fields(spr_offset, 8))
    )
    ranges = [
        tuple(
            _number(raw, f"{name} of {label!r}", path)
            for label, raw in zip(labels, fields(16 + 80 + 8 + 8 * i, 8), strict=True)
        )
        for i, name in enumerate(
            ("physical minimum", "physical maximum", "digital minimum", "digital maximum")
        )
    ]
    bytes_per_sample = 3 if bdf else 2
    record_bytes = bytes_per_sample * sum(samples_per_record)
    data_bytes = size - header_bytes
    if n_records == -1 and record_bytes:  # recording still in progress when written: count what is there
        n_records = data_bytes // record_bytes
    if n_records < 0:
        raise EdfFormatError(f"{path}: corrupt EDF header: {n_records} data records")
    if data_bytes < n_records * record_bytes:
        raise EdfFormatError(
            f"{path}: truncated EDF file: the header declares {n_records} data records of {record_bytes} bytes "
            f"({n_records * record_bytes} bytes) but only {data_bytes} bytes of data follow the header"
        )
    records_in_file = data_bytes // record_bytes if record_bytes else n_records
    date = fixed[168:176].decode("ascii", errors="replace")
    time = fixed[176:184].decode("ascii", errors="replace")
    return EdfHeader(
        path=path,
        bdf=bdf,
        plus=reserved.startswith(("EDF+", "BDF+")),
        start=_parse_start(date, time, path),
        n_records=n_records,
        record_duration=record_duration,
        labels=labels,
        units=units,
        samples_per_record=samples_per_record,
        physical_min=ranges[0],
        physical_max=ranges[1],
        digital_min=ranges[2],
        digital_max=ranges[3],
        records_in_file=records_in_file,
    )


# Units of non-voltage channels that are read as they are without a warning.
_NON_VOLTAGE_UNITS = frozenset(
    {
        "%",
        "bpm",
        "degc",
        "deg",
        "\u00b0c",
        "l/min",
        "ml/s",
        "cmh2o",
        "mmhg",
        "db",
        "lux",
        "g",
        "hz",
        "ohm",
        "kohm",
        "s",
        "ms",
        "a.u.",
        "au",
        "-",
        "bit",
        "count",
        "counts",
        "n/a",
        "unit",
        "mv/s",
    }
)


def _mne_scale(unit: str) -> float:
    # The scale mne applies for a header unit (mne/io/edf/edf.py): exact spellings only.
    if unit in ("\u03bcV", "\u00b5V", "\x83\xcaV", "uV"):
        return 1e-6
    if unit == "mV":
        return 1e-3
    return 1.0


def _normalise_request(channels: ChannelRequest, header: EdfHeader) -> dict[str, str | Sequence[str]]:
    if channels is None:
        return {label: [label] for label in header.signal_labels}
    if isinstance(channels, str):
        return {channels: channels}
    if isinstance(channels, Mapping):
        return dict(channels)
    return {name: name for name in channels}


def read_edf(
    path: str | os.PathLike[str],
    channels: ChannelRequest = None,
    *,
    subject: str | None = None,
    session: str = "",
    aliases: Mapping[str, Sequence[str]] | None = None,
    ecg_polarity: str | None = None,
) -> Recording:
    """Read channels of an EDF / EDF+ / BDF file into a :class:`~kdsleep.data.recording.Recording`.

    Parameters
    ----------
    path : path-like
        The file.
    channels : sequence of str, or dict of output name to spec, optional
        Channels to read, each resolved through aliases (``"C3-A2"`` finds ``EEG C3-A2``, ``EEG C3-M2`` or
        ``EEG C3-CLE`` minus ``EEG A2-CLE``); a dict names the outputs and may give explicit candidate
        lists. Default: every signal channel under its own name.
    subject : str, optional
        Subject identifier; default the file stem.
    session : str
        Session identifier.
    aliases : mapping, optional
        Candidate lists; default :data:`~kdsleep.data.readers.channels.CHANNEL_ALIASES`.
    ecg_polarity : {None, "auto", "invert"}
        Polarity correction applied to ECG outputs (see
        :func:`~kdsleep.data.readers.channels.correct_ecg_polarity`); default none.

    Returns
    -------
    Recording
        Voltage channels in volts (unit ``"V"``), other channels in their header unit.

    Raises
    ------
    EdfFormatError
        For a corrupt or truncated file.
    MissingChannelError
        When a requested channel is absent; the message lists the available channels.
    ValueError
        When the two channels of a re-referenced derivation have different sampling rates.
    """
    import mne

    path = Path(path)
    header = read_edf_header(path)
    request = _normalise_request(channels, header)
    available = header.signal_labels
    sources: dict[str, ChannelSource] = {
        out: resolve_channel(spec, available, aliases, source=path) for out, spec in request.items()
    }
    needed = sorted({name for src in sources.values() for name in src.names}, key=header.labels.index)
    for name in needed:
        if header.labels.count(name) > 1:
            raise EdfFormatError(
                f"{path}: channel label {name!r} appears {header.labels.count(name)} times in the header; "
                "cannot tell which one is meant"
            )
    for name in needed:
        i = header.labels.index(name)
        if header.samples_per_record[i] < 1:
            raise EdfFormatError(
                f"{path}: channel {name!r}: samples per data record is {header.samples_per_record[i]} in the "
                "header, expected at least 1"
            )
        for kind, low, high in (
            ("physical", header.physical_min, header.physical_max),
            ("digital", header.digital_min, header.digital_max),
        ):
            if low and low[i] == high[i]:
                raise EdfFormatError(
                    f"{path}: channel {name!r}: {kind} minimum = {kind} maximum = {low[i]:g} in the header; its "
                    "samples cannot be converted to physical values (a disconnected or misconfigured channel?)"
                )
        if header.digital_min and header.digital_min[i] > header.digital_max[i]:
            raise EdfFormatError(
                f"{path}: channel {name!r}: digital minimum {header.digital_min[i]:g} is above digital maximum "
                f"{header.digital_max[i]:g} in the header; expected digital minimum < digital maximum (EDF spec)"
            )
    if header.records_in_file is not None and header.records_in_file > header.n_records:
        logger.warning(
            "%s: the header declares %d data records but the file holds %d; reading the %d declared records "
            "(%g s) and ignoring the rest",
            path,
            header.n_records,
            header.records_in_file,
            header.n_records,
            header.duration,
        )
    for out, src in sources.items():
        if src.negative is not None and header.sfreq(src.positive) != header.sfreq(src.negative):
            raise ValueError(
                f"{path}: sampling-rate mismatch between paired channels of {out!r}: {src.positive} "
                f"{header.sfreq(src.positive):g} Hz, {src.negative} {header.sfreq(src.negative):g} Hz"
            )

    by_rate: dict[float, list[str]] = {}
    for name in needed:
        by_rate.setdefault(header.sfreq(name), []).append(name)
    raw_data: dict[str, np.ndarray] = {}
    units_out: dict[str, str] = {}
    reader = mne.io.read_raw_bdf if header.bdf else mne.io.read_raw_edf
    # mne picks the format from the extension: an EDF named .rec (or .bdf) is read through a link named .edf
    expected_suffix = ".bdf" if header.bdf else ".edf"
    link_dir = tempfile.TemporaryDirectory() if path.suffix.lower() != expected_suffix else None
    with link_dir if link_dir is not None else contextlib.nullcontext():
        mne_path = path
        if link_dir is not None:
            mne_path = Path(link_dir.name) / f"recording{expected_suffix}"
            os.symlink(path.resolve(), mne_path)
        for sfreq, names in by_rate.items():
            raw = reader(mne_path, include=names, preload=False, stim_channel=None, verbose="error")
            if abs(raw.info["sfreq"] - sfreq) > 1e-6 * sfreq:
                raise EdfFormatError(
                    f"{path}: mne read {names} at {raw.info['sfreq']} Hz, header says {sfreq} Hz"
                )
            data = raw.get_data(picks=list(range(len(raw.ch_names))))
            # mne reads every record in the file; the header's count is what the recording declares
            data = data[:, : int(round(header.n_records * header.record_duration * sfreq))]
            for row, name in zip(data, raw.ch_names, strict=True):
                unit = header.units[header.labels.index(name)]
                scale = unit_scale_to_volts(unit)
                if scale is None:
                    # not a voltage: mne left the physical values as they are (scale 1)
                    if unit.strip() and unit.strip().lower() not in _NON_VOLTAGE_UNITS:
                        logger.warning(
                            "%s: channel %r has unit %r in the header, expected a voltage (uV, mV, V); "
                            "its values are read as they are",
                            path,
                            name,
                            unit,
                        )
                    raw_data[name] = row / _mne_scale(unit)
                    units_out[name] = unit
                else:
                    raw_data[name] = row * (scale / _mne_scale(unit))
                    units_out[name] = "V"
                    if unit not in ("uV", "mV", "V", "\u00b5V", "\u03bcV"):
                        logger.debug("%s: channel %r has unit %r, read as %g V", path, name, unit, scale)

    signals: dict[str, Signal] = {}
    for out, src in sources.items():
        x = raw_data[src.positive]
        unit = units_out[src.positive]
        if src.negative is not None:
            if units_out[src.negative] != unit:
                raise ValueError(
                    f"{path}: cannot subtract {src.negative!r} ({units_out[src.negative]}) from {src.positive!r} ({unit})"
                )
            x = x - raw_data[src.negative]
        if ecg_polarity is not None and (is_ecg_name(out) or is_ecg_name(src.positive)):
            x, flipped = correct_ecg_polarity(x, header.sfreq(src.positive), ecg_polarity)
            if flipped:
                logger.info("%s: ECG channel %r inverted (%s polarity correction)", path, out, ecg_polarity)
        signals[out] = Signal(np.asarray(x, dtype=np.float64), header.sfreq(src.positive), unit)
        logger.debug("%s: %r read from %s", path, out, src)
    return Recording(
        subject=subject if subject is not None else path.stem,
        signals=signals,
        session=session,
        start=header.start,
        source=path,
    )
