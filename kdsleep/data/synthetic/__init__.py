"""Synthetic polysomnography: paired EEG and ECG nights with known sleep stages, written as MASS files.

The embedded default dataset of the package. Each synthetic subject gets

- a hypnogram drawn from a time-of-night Markov model fitted on real scorings
  (:mod:`~kdsleep.data.synthetic.hypnogram_model`), or a real slpdb hypnogram (:func:`generate_from_slpdb`);
- a central EEG derivation (C3-A2, µV) whose content follows the stage: alpha rhythm in W, theta in N1,
  sleep spindles (11-16 Hz, 0.5-2 s) and K-complexes in N2, high-amplitude delta (0.5-2 Hz) in N3,
  low-amplitude theta with sawtooth bursts in R, over a 1/f background;
- a lead-I ECG (mV) built beat by beat from a sum of Gaussian waves (P, Q, R, S, T; the morphology model of
  McSharry et al. 2003, ECGSYN, written in time rather than phase), whose beat times come from an
  instantaneous heart rate with a subject baseline, stage-dependent offsets (lower and steadier in N3, more
  variable in W and REM), low-frequency fluctuations, respiratory sinus arrhythmia and heart-rate surges at
  awakenings; plus respiratory baseline wander, muscle noise and mains hum.

The EEG carries the stage clearly, the ECG weakly but genuinely (through heart rate and its variability),
which is the situation that EEG-to-ECG distillation addresses. Every subject has its own profile (baseline
heart rate, amplitudes, rhythm frequencies). Everything is deterministic given the seed, and subject ``i`` is
the same whatever the number of subjects.

Modules: :mod:`~.profile` (the subject), :mod:`~.shaping` (noise and envelopes), :mod:`~.eeg`, :mod:`~.ecg`,
:mod:`~.nights` (whole nights), :mod:`~.hypnogram_model` (the fitted Markov model) and :mod:`~.layout` (the
files). How well the signals separate the stages is measured in :mod:`kdsleep.evaluation.synthetic_checks`.

Files follow the MASS SS3 layout: ``01-03-0001 PSG.edf`` with ``EEG C3-CLE``, ``EEG A2-CLE`` (the ear
reference, so that C3-A2 = C3-CLE - A2-CLE as for real MASS files) and ``ECG ECGI``, and
``01-03-0001 Base.edf`` with ``Sleep stage W/1/2/3/R/?`` annotations of 30 s, by default at 256 Hz as MASS.
"""

from __future__ import annotations

from kdsleep.data.synthetic.ecg import simulate_beat_times, simulate_ecg
from kdsleep.data.synthetic.eeg import simulate_eeg
from kdsleep.data.synthetic.hypnogram_model import (
    FITTED_HYPNOGRAM_MODEL,
    HypnogramModel,
    fit_hypnogram_model,
    read_reference_hypnograms,
)
from kdsleep.data.synthetic.layout import (
    MASS_CHANNELS,
    MASS_STAGE_LABELS,
    generate_from_slpdb,
    generate_synthetic_psg,
    slpdb_subject_id,
    write_mass_night,
)
from kdsleep.data.synthetic.nights import (
    SyntheticNight,
    mass_subject_id,
    synthesize_from_slpdb,
    synthesize_night,
)
from kdsleep.data.synthetic.profile import EPOCH_LENGTH, SubjectProfile

__all__ = [
    "EPOCH_LENGTH",
    "FITTED_HYPNOGRAM_MODEL",
    "MASS_CHANNELS",
    "MASS_STAGE_LABELS",
    "HypnogramModel",
    "SubjectProfile",
    "SyntheticNight",
    "fit_hypnogram_model",
    "generate_from_slpdb",
    "generate_synthetic_psg",
    "mass_subject_id",
    "read_reference_hypnograms",
    "simulate_beat_times",
    "simulate_ecg",
    "simulate_eeg",
    "slpdb_subject_id",
    "synthesize_from_slpdb",
    "synthesize_night",
    "write_mass_night",
]
