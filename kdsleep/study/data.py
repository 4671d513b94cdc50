"""The slpdb records of the study: real stages and heart rate, semi-synthetic EEG, held in a window store.

Each record is read once (:func:`prepare_record`) into a :class:`StudyRecord`:

* ``stages``: the real R&K scoring per 30-s epoch (S3 and S4 -> N3; movement and unscored epochs are
  ignored by every grouping);
* ``hr``: the real heart rate from the expert-corrected ``.ecg`` beat annotations, as the model-ready channel
  of :func:`kdsleep.data.heart_rate.heart_rate_channel` at the model rate (the representation of the main
  pipeline's ``--ecg-input ihr``);
* ``eeg``: a SEMI-SYNTHETIC EEG driven by the record's real hypnogram
  (:func:`kdsleep.data.synthetic.synthesize_from_slpdb`), resampled, band-passed and robust-scaled as
  :func:`kdsleep.data.preprocess.preprocess_recording` does. It only serves the EEG teacher of the
  distillation rows; slpdb's real EEG signals are not available here.

:func:`record_store` puts the records behind the window-store interface of :mod:`kdsleep.data.windows`, so
the study windows, trains and tests through :class:`kdsleep.distill.runner.Runner` like the main pipeline.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep._io import write_bytes_atomic
from kdsleep.data.datasets.slpdb import SlpdbAdapter
from kdsleep.data.filters import bandpass_filter
from kdsleep.data.heart_rate import heart_rate_channel
from kdsleep.data.readers.wfdb_io import read_slpdb_annotations
from kdsleep.data.resample import resample
from kdsleep.data.scaling import robust_scale
from kdsleep.data.stages import StageGrouping, get_grouping
from kdsleep.data.synthetic import synthesize_from_slpdb
from kdsleep.data.windows import MemoryStore

__all__ = [
    "STUDY_CHANNELS",
    "StudyRecord",
    "find_slpdb_records",
    "load_record",
    "prepare_record",
    "record_store",
    "save_record",
]

logger = logging.getLogger(__name__)

EPOCH_LENGTH = 30.0
#: Channels of a study record in its store: the semi-synthetic EEG and the real heart rate (stored under the
#: main pipeline's name for the heart-rate channel, ``ihr``).
STUDY_CHANNELS = ("eeg", "ihr")


@dataclass
class StudyRecord:
    """One slpdb record, ready for the study.

    Attributes
    ----------
    name : str
        Record name (``slp01a``).
    subject : str
        Subject (``slp01`` for both ``slp01a`` and ``slp01b``).
    sfreq : float
        Model sampling rate of ``hr`` and ``eeg`` in Hz.
    stages : np.ndarray
        int8 :class:`~kdsleep.data.stages.SleepStage` value of every 30-s epoch (real scoring).
    beat_times : np.ndarray
        Real beat times in seconds from the record start.
    hr : np.ndarray
        float32, ``n_epochs * samples_per_epoch``: the scaled heart-rate channel (real).
    hr_mask : np.ndarray
        bool, same length: True where the heart rate comes from a valid RR interval.
    eeg : np.ndarray or None
        float32, same length: preprocessed semi-synthetic EEG, or None when not prepared.
    """

    name: str
    subject: str
    sfreq: float
    stages: np.ndarray
    beat_times: np.ndarray
    hr: np.ndarray
    hr_mask: np.ndarray
    eeg: np.ndarray | None = None

    @property
    def n_epochs(self) -> int:
        """Number of 30-s epochs."""
        return int(self.stages.shape[0])

    @property
    def samples_per_epoch(self) -> int:
        """Samples of one epoch at ``sfreq``."""
        return int(round(EPOCH_LENGTH * self.sfreq))

    def labels(self, grouping: str | StageGrouping) -> np.ndarray:
        """Class index of every epoch in ``grouping`` (-1 for epochs without a sleep stage)."""
        return get_grouping(grouping)(self.stages)

    def n_scored(self) -> int:
        """Epochs that carry a sleep stage."""
        return int((self.stages <= 4).sum())


def find_slpdb_records(data_dir: str | os.PathLike[str]) -> list[tuple[str, str, Path]]:
    """``(record, subject, path without extension)`` of every slpdb record with ``.hea``, ``.st`` and ``.ecg``.

    Raises
    ------
    FileNotFoundError
        When ``data_dir`` is not a folder or holds no record with all three files (naming what is missing).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: slpdb folder not found")
    entries = SlpdbAdapter().find(root, require_signals=False)
    records = []
    incomplete = []
    for entry in entries:
        path = Path(entry.extra["record"])
        missing = [s for s in (".hea", ".st", ".ecg") if not path.with_suffix(s).is_file()]
        if missing:
            incomplete.append(f"{path.name} (no {', '.join(missing)})")
            continue
        records.append((path.name, entry.subject, path))
    if incomplete:
        logger.warning("%s: skipping incomplete records: %s", root, "; ".join(incomplete))
    if not records:
        found = sorted(p.name for p in root.iterdir())[:8]
        raise FileNotFoundError(
            f"{root}: no slpdb record with its .hea header, .st stage and .ecg beat annotation files "
            f"(the study reads slp01a.hea / slp01a.st / slp01a.ecg, ...); found {found or 'an empty folder'}"
            + (f"; incomplete: {'; '.join(incomplete[:5])}" if incomplete else "")
        )
    return sorted(records, key=lambda r: r[0])


def prepare_record(
    path: str | os.PathLike[str],
    subject: str,
    sfreq: float,
    *,
    with_eeg: bool = True,
    synthetic_sfreq: float = 64.0,
    eeg_band: tuple[float, float] = (0.3, 15.0),
    seed: int = 0,
) -> StudyRecord:
    """Read one record's stages and beats and build its heart-rate (and semi-synthetic EEG) channel.

    Parameters
    ----------
    path : path-like
        Record without extension (``.../slpdb/slp01a``).
    subject : str
        Subject identifier.
    sfreq : float
        Model rate in Hz (both channels).
    with_eeg : bool
        Also synthesise the EEG driven by the real hypnogram (for the teacher).
    synthetic_sfreq : float
        Rate at which the EEG is synthesised before resampling to ``sfreq`` (64 Hz, the generator's minimum
        for its beta band).
    eeg_band : tuple of float
        Band-pass of the EEG in Hz; must lie below ``sfreq / 2``.
    seed : int
        Seed of the synthetic EEG.
    """
    path = Path(path)
    # the validating reader: an annotation past the end of the signal is an error, not silently dropped
    stages, _duration, beat_times, _ventricular = read_slpdb_annotations(path)
    samples_per_epoch = int(round(EPOCH_LENGTH * sfreq))
    n_times = stages.shape[0] * samples_per_epoch
    hr, mask = heart_rate_channel(beat_times, sfreq, n_times, source=f"{path}.ecg")
    eeg = None
    if with_eeg:
        eeg = _semi_synthetic_eeg(path, sfreq, n_times, synthetic_sfreq, eeg_band, seed)
    return StudyRecord(
        name=path.name,
        subject=subject,
        sfreq=float(sfreq),
        stages=stages.astype(np.int8),
        beat_times=np.asarray(beat_times, dtype=np.float64),
        hr=hr,
        hr_mask=mask,
        eeg=eeg,
    )


def _semi_synthetic_eeg(
    path: Path, sfreq: float, n_times: int, synthetic_sfreq: float, band: tuple[float, float], seed: int
) -> np.ndarray:
    """Synthetic EEG on the record's real hypnogram, preprocessed like a real channel (resample, band, scale)."""
    if band[1] >= sfreq / 2:
        raise ValueError(
            f"eeg_band: upper edge {band[1]:g} Hz must lie below half the model rate {sfreq:g} Hz"
        )
    night = synthesize_from_slpdb(path, sfreq=synthetic_sfreq, seed=seed)
    x = resample(np.asarray(night.eeg, dtype=np.float64), synthetic_sfreq, sfreq)
    x = bandpass_filter(x, sfreq, band[0], band[1])
    x = robust_scale(x, clip=20.0)
    if x.size < n_times:  # the synthetic night ends with the last whole second; pad the tail
        x = np.concatenate([x, np.zeros(n_times - x.size)])
    return x[:n_times].astype(np.float32)


def save_record(record: StudyRecord, path: str | os.PathLike[str]) -> Path:
    """Write a record to ``path`` (``.npz``) atomically."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        "stages": record.stages,
        "beat_times": record.beat_times,
        "hr": record.hr,
        "hr_mask": record.hr_mask,
        "meta": np.array([record.name, record.subject, repr(float(record.sfreq))]),
    }
    if record.eeg is not None:
        arrays["eeg"] = record.eeg
    np.savez(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def load_record(path: str | os.PathLike[str]) -> StudyRecord:
    """Read a record written by :func:`save_record`."""
    with np.load(path) as data:
        name, subject, sfreq = (str(v) for v in data["meta"])
        return StudyRecord(
            name=name,
            subject=subject,
            sfreq=float(sfreq),
            stages=data["stages"],
            beat_times=data["beat_times"],
            hr=data["hr"],
            hr_mask=data["hr_mask"],
            eeg=data["eeg"] if "eeg" in data.files else None,
        )


def record_store(records: Sequence[StudyRecord]) -> MemoryStore:
    """The records as a :class:`~kdsleep.data.windows.MemoryStore` of :data:`STUDY_CHANNELS`, keyed by name.

    Each record becomes an epoch array ``(n_epochs, 2, samples_per_epoch)``: the semi-synthetic EEG (zeros
    when the record has none) and the heart rate, so the window dataset and the runner read the study
    exactly as they read the preprocessed cache.
    """
    store = MemoryStore()
    for record in records:
        spe = record.samples_per_epoch
        n_times = record.n_epochs * spe
        hr = np.asarray(record.hr[:n_times], dtype=np.float32).reshape(record.n_epochs, spe)
        eeg = (
            np.asarray(record.eeg[:n_times], dtype=np.float32).reshape(record.n_epochs, spe)
            if record.eeg is not None
            else np.zeros_like(hr)
        )
        store.add(
            record.name, np.stack([eeg, hr], axis=1), record.stages, STUDY_CHANNELS, subject=record.subject
        )
    return store
