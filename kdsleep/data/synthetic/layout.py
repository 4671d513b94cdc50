"""Synthetic nights written as files in the MASS SS3 layout.

``01-03-0001 PSG.edf`` holds ``EEG C3-CLE``, ``EEG A2-CLE`` (the ear reference, so that C3-A2 = C3-CLE -
A2-CLE as for real MASS files) and ``ECG ECGI``; ``01-03-0001 Base.edf`` holds ``Sleep stage W/1/2/3/R/?``
annotations of 30 s; by default at 256 Hz as MASS.
"""

from __future__ import annotations

import logging
import os
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kdsleep.data.edf_writer import write_edf
from kdsleep.data.stages import SleepStage
from kdsleep.data.synthetic.hypnogram_model import HypnogramModel
from kdsleep.data.synthetic.nights import SyntheticNight, synthesize_from_slpdb, synthesize_night
from kdsleep.data.synthetic.profile import EPOCH_LENGTH

__all__ = [
    "MASS_CHANNELS",
    "MASS_STAGE_LABELS",
    "generate_from_slpdb",
    "generate_synthetic_psg",
    "slpdb_subject_id",
    "write_mass_night",
]

logger = logging.getLogger(__name__)

#: Channel names of the PSG file, as in MASS: C3 and A2 against the linked-ear reference, lead-I ECG.
MASS_CHANNELS = ("EEG C3-CLE", "EEG A2-CLE", "ECG ECGI")
#: EDF+ annotation text of each SleepStage in MASS Base files; movement and unscored epochs are "?".
MASS_STAGE_LABELS = {
    SleepStage.W: "Sleep stage W",
    SleepStage.N1: "Sleep stage 1",
    SleepStage.N2: "Sleep stage 2",
    SleepStage.N3: "Sleep stage 3",
    SleepStage.R: "Sleep stage R",
    SleepStage.MOVEMENT: "Sleep stage ?",
    SleepStage.ARTEFACT: "Sleep stage ?",
    SleepStage.UNSCORED: "Sleep stage ?",
}


def _physical_range(x: np.ndarray, floor: float) -> tuple[float, float]:
    # Symmetric, a little wider than the data, so that no sample is clipped.
    bound = max(float(np.max(np.abs(x))) * 1.05, floor)
    return -bound, bound


def write_mass_night(
    night: SyntheticNight, out_dir: str | os.PathLike[str], start: datetime | None = None
) -> tuple[Path, Path]:
    """Write a night as ``<subject> PSG.edf`` and ``<subject> Base.edf`` (MASS layout), atomically.

    Returns
    -------
    (psg_path, base_path)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = start or datetime(2000, 1, 1, 22, 30, 0)
    c3_cle = night.eeg + night.eeg_reference
    signals = [c3_cle, night.eeg_reference, night.ecg]
    ranges = [
        _physical_range(c3_cle, 500.0),
        _physical_range(night.eeg_reference, 200.0),
        _physical_range(night.ecg, 5.0),
    ]
    psg = write_edf(
        out_dir / f"{night.subject} PSG.edf",
        signals,
        night.sfreq,
        list(MASS_CHANNELS),
        units=["uV", "uV", "mV"],
        start=start,
        physical_min=[r[0] for r in ranges],
        physical_max=[r[1] for r in ranges],
        transducers=["Ag-AgCl electrode", "Ag-AgCl electrode", "Ag-AgCl electrode"],
        prefiltering=["HP:0.1Hz LP:100Hz", "HP:0.1Hz LP:100Hz", "HP:0.1Hz LP:100Hz"],
        patient_id=f"{night.subject} X X X",
        plus=True,
    )
    annotations = [
        (night.epoch_onset + i * EPOCH_LENGTH, EPOCH_LENGTH, MASS_STAGE_LABELS[SleepStage(int(s))])
        for i, s in enumerate(night.stages)
    ]
    base = write_edf(
        out_dir / f"{night.subject} Base.edf",
        [],
        [],
        [],
        units=[],
        start=start,
        annotations=annotations,
        patient_id=f"{night.subject} X X X",
    )
    return psg, base


def generate_synthetic_psg(
    out_dir: str | os.PathLike[str],
    n_subjects: int = 10,
    hours: float = 8.0,
    seed: int = 0,
    sfreq: float = 256.0,
    *,
    hypnogram_model: HypnogramModel | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write a synthetic PSG dataset in the MASS SS3 layout.

    Parameters
    ----------
    out_dir : path-like
        Target folder (created if needed).
    n_subjects : int
        Number of subjects (one night each).
    hours : float
        Scored hours per night.
    seed : int
        Dataset seed; the same seed gives byte-identical files.
    sfreq : float
        Sampling rate of the PSG file in Hz (256 Hz as MASS, so that training at 200 Hz resamples).
    hypnogram_model : HypnogramModel, optional
        Default: the Markov model fitted on the real hypnograms.
    progress : bool
        Show a progress bar over subjects.

    Returns
    -------
    list of Path
        ``[psg_1, base_1, psg_2, base_2, ...]``.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    paths: list[Path] = []
    for index in tqdm(range(n_subjects), desc="synthetic PSG", unit="subject", disable=not progress):
        night = synthesize_night(index, hours=hours, seed=seed, sfreq=sfreq, hypnogram_model=hypnogram_model)
        start = datetime(2000, 1, 1, 22, 30, 0) + timedelta(days=index)
        paths.extend(write_mass_night(night, out_dir, start=start))
        logger.debug("wrote %s (%d epochs)", night.subject, night.stages.shape[0])
    return paths


def slpdb_subject_id(record_path: str | os.PathLike[str]) -> str:
    """MASS-style identifier for an slpdb record, so that the MASS adapter finds the written files.

    ``01-03-1NNN`` where NNN is the record's line in the ``RECORDS`` file beside it (1-based), or a
    checksum of the record name when there is no such file.
    """
    record_path = Path(record_path)
    records_file = record_path.parent / "RECORDS"
    number = None
    if records_file.is_file():
        records = records_file.read_text().split()
        if record_path.name in records:
            number = 1001 + records.index(record_path.name)
    if number is None:
        number = 2000 + zlib.crc32(record_path.name.encode()) % 8000
    return f"01-03-{number:04d}"


def generate_from_slpdb(
    record_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sfreq: float = 256.0,
    seed: int = 0,
    subject: str | None = None,
) -> list[Path]:
    """Write :func:`synthesize_from_slpdb` of one record in the MASS layout.

    Parameters
    ----------
    record_path : path-like
        The slpdb record without extension.
    out_dir : path-like
        Target folder.
    sfreq, seed : see :func:`synthesize_from_slpdb`.
    subject : str, optional
        Subject id of the files; default :func:`slpdb_subject_id` (a MASS-style id).

    Returns
    -------
    list of Path
        ``[psg, base]``.
    """
    subject = subject or slpdb_subject_id(record_path)
    night = synthesize_from_slpdb(record_path, sfreq=sfreq, seed=seed, subject=subject)
    logger.info("slpdb record %s written as subject %s", Path(record_path).name, subject)
    return list(write_mass_night(night, out_dir))
