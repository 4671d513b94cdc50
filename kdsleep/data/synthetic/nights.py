"""Whole synthetic nights: a hypnogram (drawn, or a real slpdb scoring) rendered into EEG and ECG.

Every subject has its own :class:`~kdsleep.data.synthetic.profile.SubjectProfile`. Everything is
deterministic given the seed, and subject ``i`` is the same whatever the number of subjects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdsleep.data.readers.wfdb_io import read_slpdb_annotations
from kdsleep.data.synthetic.ecg import simulate_beat_times, simulate_ecg
from kdsleep.data.synthetic.eeg import simulate_eeg
from kdsleep.data.synthetic.hypnogram_model import FITTED_HYPNOGRAM_MODEL, HypnogramModel
from kdsleep.data.synthetic.profile import EPOCH_LENGTH, SubjectProfile
from kdsleep.data.synthetic.shaping import pink_gain, shaped_noise

__all__ = ["SyntheticNight", "mass_subject_id", "synthesize_from_slpdb", "synthesize_night"]


@dataclass
class SyntheticNight:
    """One synthetic recording with its ground truth.

    Attributes
    ----------
    subject : str
        Subject identifier (MASS style, ``"01-03-0001"``).
    sfreq : float
        Sampling rate of all signals in Hz.
    stages : np.ndarray of int8
        :class:`SleepStage` value per 30-s epoch.
    epoch_onset : float
        Start of the first epoch, in seconds after the first sample.
    eeg : np.ndarray
        C3-A2 in µV.
    eeg_reference : np.ndarray
        A2 against the linked-ear reference in µV (so that C3-CLE = ``eeg + eeg_reference``).
    ecg : np.ndarray
        Lead I in mV.
    beat_times : np.ndarray
        R-peak times in seconds after the first sample.
    profile : SubjectProfile
        The subject's constants.
    """

    subject: str
    sfreq: float
    stages: np.ndarray
    epoch_onset: float
    eeg: np.ndarray
    eeg_reference: np.ndarray
    ecg: np.ndarray
    beat_times: np.ndarray
    profile: SubjectProfile = field(default_factory=SubjectProfile)

    @property
    def n_samples(self) -> int:
        """Number of samples of each signal."""
        return int(self.eeg.shape[0])

    def epoch_slice(self, epoch: int) -> slice:
        """Sample range of epoch ``epoch``."""
        start = int(round((self.epoch_onset + epoch * EPOCH_LENGTH) * self.sfreq))
        return slice(start, start + int(round(EPOCH_LENGTH * self.sfreq)))


def mass_subject_id(index: int, cohort: int = 3) -> str:
    """MASS-style identifier of subject ``index`` (0-based): ``01-03-0001`` for cohort SS3."""
    return f"01-{cohort:02d}-{index + 1:04d}"


def _subject_rng(seed: int, index: int) -> np.random.Generator:
    # Subject i gets the same stream whatever the number of subjects generated.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _render_night(
    subject: str,
    stages: np.ndarray,
    sfreq: float,
    rng: np.random.Generator,
    profile: SubjectProfile,
    epoch_onset: float,
    trailing: float,
    beat_times: np.ndarray | None = None,
    ventricular: np.ndarray | None = None,
) -> SyntheticNight:
    """Signals for a given hypnogram; the first epoch starts ``epoch_onset`` s after the first sample."""
    stages = np.asarray(stages, dtype=np.int8)
    n_epochs = stages.shape[0]
    # Signals are built on an epoch grid that starts one epoch before the recording (padding with the
    # first / last stage) and then cut so that the scoring starts at epoch_onset.
    padded = np.concatenate([stages[:1], stages, stages[-1:], stages[-1:]])
    lead = EPOCH_LENGTH - epoch_onset
    duration = epoch_onset + n_epochs * EPOCH_LENGTH + trailing
    n_samples = int(round(duration * sfreq))
    start = int(round(lead * sfreq))
    n_grid = start + n_samples
    eeg = simulate_eeg(padded, sfreq, rng, profile, n_samples=n_grid)[start:]
    if beat_times is None:
        beats_grid, breathing = simulate_beat_times(padded, n_grid / sfreq, rng, profile)
        beat_times = beats_grid - lead
        beat_times = beat_times[(beat_times >= 0) & (beat_times < duration)]
    else:
        breathing = None  # real beats: a regular 0.25-Hz breathing drives the baseline wander
    ecg_full = simulate_ecg(
        beat_times + lead,
        n_grid,
        sfreq,
        rng,
        profile,
        stages=padded,
        breathing_phase=breathing,
        ventricular=ventricular,
    )
    ecg = ecg_full[start:]
    # The ear reference picks up some ECG, as real mastoid / ear electrodes do; C3-A2 keeps a trace of it.
    reference = 4.0 * shaped_noise(n_samples, sfreq, pink_gain(0.3), rng) + 12.0 * ecg
    eeg = eeg + 1.5 * ecg
    return SyntheticNight(
        subject=subject,
        sfreq=float(sfreq),
        stages=stages,
        epoch_onset=float(epoch_onset),
        eeg=eeg,
        eeg_reference=reference,
        ecg=ecg,
        beat_times=np.asarray(beat_times, dtype=np.float64),
        profile=profile,
    )


def synthesize_night(
    index: int = 0,
    hours: float = 8.0,
    seed: int = 0,
    sfreq: float = 256.0,
    hypnogram_model: HypnogramModel | None = None,
    subject_concentration: float | None = 300.0,
) -> SyntheticNight:
    """Synthesise subject ``index`` of the synthetic dataset with seed ``seed``.

    Parameters
    ----------
    index : int
        0-based subject number; the subject id is :func:`mass_subject_id` of it.
    hours : float
        Scored duration (rounded down to whole 30-s epochs).
    seed : int
        Dataset seed.
    sfreq : float
        Sampling rate in Hz (256 Hz as MASS).
    hypnogram_model : HypnogramModel, optional
        Default: the model fitted on the real hypnograms.
    subject_concentration : float, optional
        Per-subject variation of the transition probabilities (see :meth:`HypnogramModel.sample`).

    Returns
    -------
    SyntheticNight
    """
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if sfreq < 64:
        raise ValueError(f"sfreq must be >= 64 Hz so that spindles and beta fit below Nyquist, got {sfreq}")
    n_epochs = int(hours * 3600 // EPOCH_LENGTH)
    if n_epochs < 1:
        raise ValueError(f"hours={hours} is shorter than one 30-s epoch")
    rng = _subject_rng(seed, index)
    model = hypnogram_model or FITTED_HYPNOGRAM_MODEL
    profile = SubjectProfile.draw(rng)
    stages = model.sample(n_epochs, rng, subject_concentration=subject_concentration)
    # MASS scorings do not start exactly at the first sample; a sub-epoch offset exercises the alignment.
    epoch_onset = float(np.round(rng.uniform(0.0, 10.0), 2))
    trailing = float(rng.uniform(5.0, 25.0))
    duration = epoch_onset + n_epochs * EPOCH_LENGTH + trailing
    trailing += np.ceil(duration) - duration  # whole seconds, so the EDF data records are all full
    return _render_night(mass_subject_id(index), stages, sfreq, rng, profile, epoch_onset, trailing)


def synthesize_from_slpdb(
    record_path: str | os.PathLike[str],
    sfreq: float = 256.0,
    seed: int = 0,
    subject: str | None = None,
) -> SyntheticNight:
    """A synthetic night on the real hypnogram and the real beat times of an slpdb record.

    The EEG is synthesised from the record's R&K scoring (S3 and S4 -> N3; movement and unscored epochs
    stay unscored); the ECG places a PQRST complex at every annotated beat, so its RR series is the real
    one (ventricular beats get a ventricular shape). The scoring starts at the first sample, as in slpdb.

    Parameters
    ----------
    record_path : path-like
        The record without extension (``.../slpdb/slp01a``); its ``.hea``, ``.st`` and ``.ecg`` files are read.
    sfreq : float
        Sampling rate of the synthetic signals in Hz.
    seed : int
        Seed of the synthetic EEG and ECG noise.
    subject : str, optional
        Subject id; default the record name.

    Returns
    -------
    SyntheticNight
    """
    record_path = Path(record_path)
    stages, duration, beat_times, ventricular = read_slpdb_annotations(record_path)
    # Seeded by the record name too (not Python's salted hash), so each record gets its own subject.
    rng = np.random.default_rng([seed, *record_path.stem.encode("ascii", "replace")])
    profile = SubjectProfile.draw(rng)
    trailing = duration - stages.shape[0] * EPOCH_LENGTH
    trailing = max(trailing, 0.0) + (np.ceil(duration) - duration)
    keep = beat_times < stages.shape[0] * EPOCH_LENGTH + trailing
    return _render_night(
        subject or record_path.stem,
        stages,
        sfreq,
        rng,
        profile,
        0.0,
        trailing,
        beat_times=beat_times[keep],
        ventricular=ventricular[keep],
    )
