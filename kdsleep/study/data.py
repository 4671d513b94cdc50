"""The slpdb records of the study: real stages and heart rate, semi-synthetic EEG, and their windows.

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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from kdsleep.data.stages import get_grouping
from kdsleep.inference import covering_window_starts

__all__ = [
    "StudyRecord",
    "StudyWindows",
    "assemble_epoch_predictions",
    "covering_starts",
    "find_slpdb_records",
    "load_record",
    "prepare_record",
    "save_record",
]

logger = logging.getLogger(__name__)

EPOCH_LENGTH = 30.0


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

    def labels(self, grouping: str) -> np.ndarray:
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
    from kdsleep.data.datasets.slpdb import SlpdbAdapter

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
    from kdsleep.data.heart_rate import heart_rate_channel
    from kdsleep.data.readers.wfdb_io import read_slpdb_annotations

    path = Path(path)
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
    from kdsleep.data.filters import bandpass_filter
    from kdsleep.data.resample import resample
    from kdsleep.data.scaling import robust_scale
    from kdsleep.data.synthetic import synthesize_from_slpdb

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
    import io

    from kdsleep._io import write_bytes_atomic

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


def covering_starts(n_epochs: int, window_epochs: int, stride: int | None = None) -> np.ndarray:
    """First epochs of windows that cover every epoch of a recording.

    Windows start every ``stride`` epochs (default ``window_epochs``, no overlap); when the last one stops
    short of the end, one more window ends exactly at the last epoch.

    Raises
    ------
    ValueError
        When the recording is shorter than one window.
    """
    return covering_window_starts(n_epochs, window_epochs, stride)


def assemble_epoch_predictions(
    n_epochs: int, starts: Sequence[int], window_predictions: np.ndarray
) -> np.ndarray:
    """One predicted class per epoch from window predictions ``(n_windows, window_epochs)``.

    An epoch covered by several windows takes the prediction of the first; an epoch covered by none is -1.
    """
    out = np.full(n_epochs, -1, dtype=np.int64)
    window_predictions = np.asarray(window_predictions)
    for start, prediction in zip(starts, window_predictions, strict=True):
        span = slice(int(start), int(start) + prediction.shape[0])
        free = out[span] < 0
        out[span][free] = prediction[free]
    return out


class StudyWindows(Dataset):
    """Epoch-aligned windows ``(eeg, hr, labels)`` of study records, for :func:`train_stage`.

    Parameters
    ----------
    records : sequence of StudyRecord
        The records (all at the same model rate).
    grouping : str
        Stage grouping of the labels.
    window_epochs : int
        Epochs per window.
    stride : int, optional
        Epochs between window starts (default ``window_epochs``); the last window of a record ends at
        its last epoch (:func:`covering_starts`).
    skip_unlabelled : bool
        Leave out windows without any scored epoch (training); keep them for prediction.

    Items are ``(eeg, hr, labels)``: float32 tensors ``(1, window_epochs * samples_per_epoch)`` (the EEG
    is zeros when the record has none) and int64 ``(window_epochs,)`` with -1 for ignored epochs. Sample
    ``j * samples_per_epoch`` of a window is the first sample of its epoch ``j``.
    """

    def __init__(
        self,
        records: Sequence[StudyRecord],
        grouping: str,
        window_epochs: int,
        stride: int | None = None,
        skip_unlabelled: bool = True,
    ) -> None:
        self.records = list(records)
        self.grouping = get_grouping(grouping)
        self.window_epochs = int(window_epochs)
        self._labels = [r.labels(self.grouping.name) for r in self.records]
        index: list[tuple[int, int]] = []
        for r, record in enumerate(self.records):
            if record.n_epochs < self.window_epochs:
                logger.info("skipping %s: %d epochs, shorter than one window", record.name, record.n_epochs)
                continue
            for start in covering_starts(record.n_epochs, self.window_epochs, stride):
                labels = self._labels[r][start : start + self.window_epochs]
                if skip_unlabelled and not (labels >= 0).any():
                    continue
                index.append((r, int(start)))
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def window_key(self, i: int) -> tuple[int, int]:
        """``(record index, first epoch)`` of window ``i``."""
        return self._index[i]

    def __getitem__(self, i: int):

        r, start = self._index[i]
        record = self.records[r]
        spe = record.samples_per_epoch
        span = slice(start * spe, (start + self.window_epochs) * spe)
        hr = torch.from_numpy(np.ascontiguousarray(record.hr[span], dtype=np.float32))[None]
        if record.eeg is not None:
            eeg = torch.from_numpy(np.ascontiguousarray(record.eeg[span], dtype=np.float32))[None]
        else:
            eeg = torch.zeros_like(hr)
        labels = torch.from_numpy(self._labels[r][start : start + self.window_epochs].astype(np.int64))
        return eeg, hr, labels
