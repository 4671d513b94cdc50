"""WFDB records and annotations through wfdb: MIT-BIH Polysomnographic Database (slpdb) stages and beats.

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

__all__ = ["BeatAnnotations", "read_wfdb_beats", "read_wfdb_record", "read_wfdb_stages"]

logger = logging.getLogger(__name__)

#: WFDB beat annotation codes (MIT-BIH conventions) counted as heartbeats.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


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


def _signal_length(record: Path) -> tuple[int, float] | None:
    import wfdb

    if not record.with_suffix(".hea").exists():
        return None
    header = wfdb.rdheader(str(record))
    return int(header.sig_len or 0), float(header.fs)


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
    import wfdb

    record = _record_path(record)
    ann_path = record.with_suffix(f".{extension}")
    if not ann_path.exists():
        raise FileNotFoundError(f"{ann_path}: WFDB annotation file not found")
    ann = wfdb.rdann(str(record), extension)
    fs = float(ann.fs) if ann.fs else None
    length = _signal_length(record)
    if fs is None:
        if length is None:
            raise ValueError(
                f"{ann_path}: no sampling rate in the annotation file and no header {record}.hea"
            )
        fs = length[1]
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
    if length is not None and length[0] > 0:
        n_record_epochs = length[0] // samples_per_epoch
        if n_epochs > n_record_epochs:
            raise ValueError(
                f"{ann_path}: annotations past the end of the signal: stage annotation in epoch {n_epochs - 1} "
                f"but the record holds {n_record_epochs} whole epochs ({length[0]} samples)"
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
    """Read beat annotations (slpdb ``.ecg``, mitdb ``.atr``) of a WFDB record."""
    import wfdb

    record = _record_path(record)
    ann_path = record.with_suffix(f".{extension}")
    if not ann_path.exists():
        raise FileNotFoundError(f"{ann_path}: WFDB annotation file not found")
    ann = wfdb.rdann(str(record), extension)
    fs = ann.fs
    if not fs:
        length = _signal_length(record)
        if length is None:
            raise ValueError(
                f"{ann_path}: no sampling rate in the annotation file and no header {record}.hea"
            )
        fs = length[1]
    return BeatAnnotations(np.asarray(ann.sample, dtype=np.int64), tuple(ann.symbol), float(fs), ann_path)


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
    import wfdb

    record = _record_path(record)
    if not record.with_suffix(".hea").exists():
        raise FileNotFoundError(f"{record}.hea: WFDB header not found")
    header = wfdb.rdheader(str(record))
    available = list(header.sig_name)
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
    rec = wfdb.rdrecord(str(record), channel_names=needed, physical=True)
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
    start = None
    if header.base_date is not None and header.base_time is not None:
        start = datetime.combine(header.base_date, header.base_time)
    return Recording(
        subject if subject is not None else record.name, signals, session, start, Path(f"{record}.hea")
    )
