"""WFDB records and annotations through wfdb: slpdb stages and beats, annotated ECG for detector scoring.

This is the only module of the package that imports :mod:`wfdb`.

slpdb quirks handled here (see the project's reference facts, section 5):

- ``.st`` annotations sit at the start of each 30-s epoch, the first at sample 1 rather than 0, so the
  epoch of an annotation is ``sample // (30 * fs)`` (7500 at 250 Hz);
- the stage is the first word of the aux note (``W 1 2 3 4 R MT``, some records ``M``); apnea codes
  follow; some notes end in a NUL character;
- some records start scoring late: epochs before the first annotation are unscored;
- scoring is R&K: S3 and S4 both become N3 (the original word is kept in ``Hypnogram.labels``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

from kdsleep.data.readers.channels import (
    MissingChannelError,
    correct_ecg_polarity,
    is_ecg_name,
    resolve_channel,
    unit_scale_to_volts,
)
from kdsleep.data.recording import Hypnogram, Recording, Signal
from kdsleep.data.stages import SleepStage, get_label_mapping, parse_stage_label

__all__ = [
    "BEAT_SYMBOLS",
    "AnnotatedECG",
    "BeatAnnotations",
    "SlpdbAnnotations",
    "WfdbHeader",
    "read_annotated_ecg",
    "read_slpdb_annotations",
    "read_wfdb_beats",
    "read_wfdb_header",
    "read_wfdb_record",
    "read_wfdb_stages",
]

logger = logging.getLogger(__name__)

#: Annotation codes of the WFDB standard that mark a heartbeat (PhysioNet's ``ann_labels`` beat classes,
#: MIT-BIH conventions); rhythm, noise and flutter marks are not beats. Only these count as reference beats.
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")


def _wfdb() -> ModuleType:
    """The wfdb package, imported on first use: it pulls in pandas, too slow for ``import kdsleep.data``."""
    import wfdb

    return wfdb


@dataclass(frozen=True)
class WfdbHeader:
    """What a WFDB header (``.hea``) says about its record.

    Attributes
    ----------
    n_samples : int
        Samples per signal (0 when the header does not say).
    sfreq : float
        Sampling rate in Hz.
    signal_names : tuple of str
        Signal (channel) names in file order.
    start : datetime or None
        Date and time of the first sample when the header gives both.
    source : Path
        The header file.
    """

    n_samples: int
    sfreq: float
    signal_names: tuple[str, ...]
    start: datetime | None
    source: Path

    @property
    def duration(self) -> float:
        """Record length in seconds."""
        return self.n_samples / self.sfreq


@dataclass(frozen=True)
class BeatAnnotations:
    """Beat positions of one record.

    Parameters
    ----------
    samples : np.ndarray of int64
        Sample index of each annotation.
    symbols : tuple of str
        Annotation code of each (``N`` normal, ``V`` ventricular, ...).
    sfreq : float
        Sampling rate the samples refer to, Hz.
    source : Path
        Annotation file.
    """

    samples: np.ndarray
    symbols: tuple[str, ...]
    sfreq: float
    source: Path

    @property
    def times(self) -> np.ndarray:
        """Seconds after the record start."""
        return self.samples / self.sfreq

    @property
    def n_beats(self) -> int:
        return int(self.samples.size)

    def beats_only(self) -> BeatAnnotations:
        """Keep only annotations whose code denotes a heartbeat (drops rhythm and noise marks)."""
        keep = np.array([s in BEAT_SYMBOLS for s in self.symbols], dtype=bool)
        return BeatAnnotations(
            self.samples[keep], tuple(np.asarray(self.symbols, dtype=object)[keep]), self.sfreq, self.source
        )


def _record_path(record: str | os.PathLike[str]) -> Path:
    path = Path(record)
    # Accept "slp01a", "slp01a.hea" or "slp01a.st": wfdb wants the record name without extension.
    if path.suffix in (".hea", ".st", ".ecg", ".dat", ".atr"):
        path = path.with_suffix("")
    return path


def read_wfdb_header(record: str | os.PathLike[str]) -> WfdbHeader:
    """Read the header (``.hea``) of a WFDB record.

    Parameters
    ----------
    record : path-like
        Record path, with or without extension (``.../slpdb/slp01a``).

    Raises
    ------
    FileNotFoundError
        When the header file does not exist.
    ValueError
        When the header gives no positive sampling rate.
    """
    record = _record_path(record)
    path = record.with_suffix(".hea")
    if not path.exists():
        raise FileNotFoundError(f"{path}: WFDB header not found")
    header = _wfdb().rdheader(str(record))
    sfreq = float(header.fs or 0.0)
    if not sfreq > 0:
        raise ValueError(f"{path}: sampling frequency: expected a positive number of Hz, got {header.fs!r}")
    start = None
    if header.base_date is not None and header.base_time is not None:
        start = datetime.combine(header.base_date, header.base_time)
    return WfdbHeader(int(header.sig_len or 0), sfreq, tuple(header.sig_name or ()), start, path)


def _header_if_any(record: Path) -> WfdbHeader | None:
    return read_wfdb_header(record) if record.with_suffix(".hea").exists() else None


def read_wfdb_stages(
    record: str | os.PathLike[str],
    extension: str = "st",
    *,
    epoch_length: float = 30.0,
    mapping: str | Mapping[str, SleepStage | int] = "slpdb",
) -> Hypnogram:
    """Read sleep stages from the aux notes of a WFDB annotation file (slpdb ``.st``).

    Parameters
    ----------
    record : path-like
        Record path without extension (``.../slpdb/slp01a``).
    extension : str
        Annotation file extension.
    epoch_length : float
        Scoring epoch in seconds (30 s in slpdb).
    mapping : str or dict
        Label mapping for the first word of each aux note.

    Returns
    -------
    Hypnogram
        Onset 0; epochs before the first annotation and after the last (up to the record length given by
        the header) are unscored.

    Raises
    ------
    UnknownStageLabelError
        For an aux note whose first word is not a stage.
    ValueError
        When two annotations fall into one epoch, or annotations lie past the end of the record.
    """
    record = _record_path(record)
    ann_path = record.with_suffix(f".{extension}")
    if not ann_path.exists():
        raise FileNotFoundError(f"{ann_path}: WFDB annotation file not found")
    ann = _wfdb().rdann(str(record), extension)
    header = _header_if_any(record)
    fs = _annotation_rate(ann, header, ann_path)
    samples_per_epoch = int(round(epoch_length * fs))
    _, table = get_label_mapping(mapping)
    lookup = mapping if isinstance(mapping, str) else table  # keeps the mapping's name for error messages
    samples = np.asarray(ann.sample, dtype=np.int64)
    notes = [str(n or "") for n in ann.aux_note]
    epochs: list[int] = []
    stages: list[int] = []
    words: list[str] = []
    for sample, note in zip(samples, notes, strict=True):
        word = note.replace("\x00", " ").strip().split(" ", 1)[0] if note.replace("\x00", "").strip() else ""
        if not word:
            logger.debug("%s: annotation at sample %d has no aux note; skipped", ann_path, sample)
            continue
        stages.append(int(parse_stage_label(word, lookup, source=ann_path)))
        epochs.append(int(sample // samples_per_epoch))
        words.append(word)
    if not epochs:
        raise ValueError(f"{ann_path}: no sleep-stage annotations")
    epochs_a = np.asarray(epochs)
    if len(set(epochs)) != len(epochs):
        dup = int(epochs_a[np.flatnonzero(np.diff(np.sort(epochs_a)) == 0)[0]])
        raise ValueError(
            f"{ann_path}: two stage annotations fall into epoch {dup} (sample // {samples_per_epoch})"
        )
    n_epochs = int(epochs_a.max()) + 1
    if header is not None and header.n_samples > 0:
        n_record_epochs = header.n_samples // samples_per_epoch
        if n_epochs > n_record_epochs:
            raise ValueError(
                f"{ann_path}: annotations past the end of the signal: stage annotation in epoch {n_epochs - 1} "
                f"but the record holds {n_record_epochs} whole epochs ({header.n_samples} samples)"
            )
        n_epochs = n_record_epochs
    out = np.full(n_epochs, int(SleepStage.UNSCORED), dtype=np.int8)
    out[epochs_a] = stages
    labels = [""] * n_epochs
    for e, w in zip(epochs, words, strict=True):
        labels[e] = w
    if epochs_a.min() > 0:
        logger.debug("%s: scoring starts late, at epoch %d", ann_path, int(epochs_a.min()))
    return Hypnogram(out, epoch_length, 0.0, ann_path, tuple(labels))


def read_wfdb_beats(record: str | os.PathLike[str], extension: str = "ecg") -> BeatAnnotations:
    """Read beat annotations (slpdb ``.ecg``, mitdb ``.atr``) of a WFDB record.

    All annotations are returned, beats and others (rhythm, noise); :meth:`BeatAnnotations.beats_only`
    keeps the beats.
    """
    record = _record_path(record)
    ann_path = record.with_suffix(f".{extension}")
    if not ann_path.exists():
        raise FileNotFoundError(f"{ann_path}: WFDB annotation file not found")
    ann = _wfdb().rdann(str(record), extension)
    fs = _annotation_rate(ann, _header_if_any(record) if not ann.fs else None, ann_path)
    return BeatAnnotations(np.asarray(ann.sample, dtype=np.int64), tuple(ann.symbol), fs, ann_path)


def _annotation_rate(ann: object, header: WfdbHeader | None, ann_path: Path) -> float:
    """Sampling rate of an annotation file: its own, else its record header's."""
    fs = getattr(ann, "fs", None)
    if fs:
        return float(fs)
    if header is None:
        raise ValueError(
            f"{ann_path}: no sampling rate in the annotation file and no header {ann_path.with_suffix('.hea')}"
        )
    return header.sfreq


def read_wfdb_record(
    record: str | os.PathLike[str],
    channels: Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    *,
    subject: str | None = None,
    session: str = "",
    aliases: Mapping[str, Sequence[str]] | None = None,
    ecg_polarity: str | None = None,
) -> Recording:
    """Read signals of a WFDB record (``.hea`` + ``.dat``) into a :class:`Recording`.

    Channel names are matched as in :func:`kdsleep.data.readers.edf.read_edf`; slpdb names its EEG
    ``"EEG (C4-A1)"``, which the lookup also finds for ``"C4-A1"``. Voltages are returned in volts.
    """
    record = _record_path(record)
    header = read_wfdb_header(record)
    available = list(header.signal_names)
    # slpdb writes "EEG (C4-A1)": offer the bare derivation too, so "C4-A1" resolves.
    bare = {
        name: name[name.index("(") + 1 : name.rindex(")")]
        for name in available
        if "(" in name and ")" in name
    }
    if channels is None:
        request: dict[str, str | Sequence[str]] = {n: [n] for n in available}
    elif isinstance(channels, str):
        request = {channels: channels}
    elif isinstance(channels, Mapping):
        request = dict(channels)
    else:
        request = {c: c for c in channels}
    lookup_names = available + [b for b in bare.values() if b not in available]
    to_file = {b: n for n, b in bare.items()}
    sources = {}
    for out, spec in request.items():
        try:
            src = resolve_channel(spec, lookup_names, aliases, source=f"{record}.hea")
        except MissingChannelError as err:
            raise MissingChannelError(err.wanted, err.candidates, available, f"{record}.hea") from None
        sources[out] = (
            to_file.get(src.positive, src.positive),
            None if src.negative is None else to_file.get(src.negative, src.negative),
        )
    needed = sorted({n for pair in sources.values() for n in pair if n is not None}, key=available.index)
    rec = _wfdb().rdrecord(str(record), channel_names=needed, physical=True)
    data = {name: rec.p_signal[:, i].astype(np.float64) for i, name in enumerate(rec.sig_name)}
    units = dict(zip(rec.sig_name, rec.units, strict=True))
    signals = {}
    for out, (pos, neg) in sources.items():
        x = data[pos]
        scale = unit_scale_to_volts(units[pos] or "")
        unit = units[pos] or ""
        if scale is not None:
            x, unit = x * scale, "V"
        if neg is not None:
            y = data[neg]
            scale_n = unit_scale_to_volts(units[neg] or "")
            x = x - (y * scale_n if scale_n is not None else y)
        if ecg_polarity is not None and (is_ecg_name(out) or is_ecg_name(pos)):
            x, _ = correct_ecg_polarity(x, float(rec.fs), ecg_polarity)
        signals[out] = Signal(x, float(rec.fs), unit)
    return Recording(
        subject if subject is not None else record.name, signals, session, header.start, Path(f"{record}.hea")
    )


class SlpdbAnnotations(NamedTuple):
    """Stages and beats of one slpdb record, as :func:`read_slpdb_annotations` returns them.

    Attributes
    ----------
    stages : np.ndarray of int8
        :class:`~kdsleep.data.stages.SleepStage` per 30-s epoch from the first sample, over the record's
        whole epochs; epochs without an annotation are unscored.
    duration : float
        Record length in seconds.
    beat_times : np.ndarray of float64
        Annotated heartbeats (:data:`BEAT_SYMBOLS`), seconds after the record start.
    ventricular : np.ndarray of bool
        Which of those beats are ventricular (``V``).
    """

    stages: np.ndarray
    duration: float
    beat_times: np.ndarray
    ventricular: np.ndarray


def read_slpdb_annotations(record: str | os.PathLike[str]) -> SlpdbAnnotations:
    """Read the sleep stages (``.st``), the beats (``.ecg``) and the length (``.hea``) of an slpdb record.

    Parameters
    ----------
    record : path-like
        Record path, with or without extension (``.../slpdb/slp01a``).

    Returns
    -------
    SlpdbAnnotations
        Stages validated as by :func:`read_wfdb_stages` (an annotation past the end of the signal or two
        in one epoch are errors), beat times and ventricular flags.

    Raises
    ------
    FileNotFoundError
        When the ``.hea``, ``.st`` or ``.ecg`` file is missing.
    """
    record = _record_path(record)
    missing = [record.with_suffix(s) for s in (".hea", ".st", ".ecg") if not record.with_suffix(s).exists()]
    if missing:
        names = ", ".join(str(m) for m in missing)
        raise FileNotFoundError(
            f"{record}: an slpdb record needs its .hea, .st and .ecg files; missing {names}"
        )
    header = read_wfdb_header(record)
    hypnogram = read_wfdb_stages(record, "st")
    beats = read_wfdb_beats(record, "ecg").beats_only()
    return SlpdbAnnotations(
        stages=np.asarray(hypnogram.stages, dtype=np.int8),
        duration=header.duration,
        beat_times=np.asarray(beats.times, dtype=np.float64),
        ventricular=np.asarray(beats.symbols, dtype=object) == "V",
    )


@dataclass(frozen=True)
class AnnotatedECG:
    """One ECG lead with expert beat annotations, as read by :func:`read_annotated_ecg`.

    Attributes
    ----------
    name : str
        Record name.
    ecg : np.ndarray
        The lead, float64, in the record's physical unit.
    sfreq : float
        Sampling frequency in Hz.
    beats : np.ndarray
        Sample indices of the annotated beats (symbols in :data:`BEAT_SYMBOLS`).
    exclude : np.ndarray
        ``(n, 2)`` sample ranges that standard evaluations leave out (ventricular flutter, between the
        ``[`` and ``]`` annotations).
    lead : str
        Name of the lead that was read.
    """

    name: str
    ecg: np.ndarray
    sfreq: float
    beats: np.ndarray
    exclude: np.ndarray
    lead: str


def read_annotated_ecg(
    record: str | os.PathLike[str],
    *,
    extension: str = "atr",
    lead: str | int | None = None,
    annotated_span_only: bool = False,
) -> AnnotatedECG:
    """Read one lead and the beat annotations of a WFDB record (MIT-BIH arrhythmia, nstdb, svdb, LUDB).

    Parameters
    ----------
    record : str or os.PathLike
        Path of the record without extension (``.../mitdb/100``).
    extension : str
        Annotation file extension (``atr`` for MIT-BIH; ``ii`` etc. for LUDB's per-lead files).
    lead : str, int or None
        Lead name (case-insensitive) or channel index; None takes ``MLII`` when present (the second
        channel in mitdb 114), otherwise the first channel.
    annotated_span_only : bool
        Exclude everything before the first and after the last annotation from scoring (LUDB annotates
        only the middle part of each record).

    Returns
    -------
    AnnotatedECG
        The lead, its sampling frequency, the annotated beats and the excluded ranges.
    """
    path = _record_path(record)
    header_path = path.with_suffix(".hea")
    try:
        header = read_wfdb_header(path)
        annotations = read_wfdb_beats(path, extension)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{path}: WFDB record or .{extension} annotations not found ({err})"
        ) from None
    names = list(header.signal_names)
    if lead is None:
        channel = names.index("MLII") if "MLII" in names else 0
    elif isinstance(lead, str):
        lowered = [n.lower() for n in names]
        if lead.lower() not in lowered:
            raise ValueError(f"{header_path}: lead {lead!r} not found; leads are {names}")
        channel = lowered.index(lead.lower())
    else:
        channel = int(lead)
        if not 0 <= channel < len(names):
            raise ValueError(f"{header_path}: channel {channel} out of range 0..{len(names) - 1}")
    try:
        signals = _wfdb().rdrecord(str(path), channels=[channel], physical=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: WFDB signal file not found ({err})") from None
    ecg = np.asarray(signals.p_signal[:, 0], dtype=np.float64)
    symbols = np.asarray(annotations.symbols)
    samples = annotations.samples
    is_beat = np.isin(symbols, sorted(BEAT_SYMBOLS))
    starts = samples[symbols == "["]
    stops = samples[symbols == "]"]
    exclude = []
    for start in starts:
        later = stops[stops >= start]
        exclude.append((start, later[0] if later.size else ecg.shape[0]))
    if annotated_span_only and samples.size:
        exclude.append((0, int(samples.min()) - 1))
        exclude.append((int(samples.max()) + 1, ecg.shape[0]))
    return AnnotatedECG(
        name=path.name,
        ecg=ecg,
        sfreq=header.sfreq,
        beats=samples[is_beat],
        exclude=np.asarray(exclude, dtype=np.int64).reshape(-1, 2),
        lead=names[channel],
    )
