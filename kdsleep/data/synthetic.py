"""Synthetic polysomnography: paired EEG and ECG nights with known sleep stages, written as MASS files.

The embedded default dataset of the package. Each synthetic subject gets

- a hypnogram drawn from a time-of-night Markov model fitted on real scorings
  (:mod:`kdsleep.data._hypnogram_model`), or a real slpdb hypnogram (:func:`generate_from_slpdb`);
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

Files follow the MASS SS3 layout: ``01-03-0001 PSG.edf`` with ``EEG C3-CLE``, ``EEG A2-CLE`` (the ear
reference, so that C3-A2 = C3-CLE - A2-CLE as for real MASS files) and ``ECG ECGI``, and
``01-03-0001 Base.edf`` with ``Sleep stage W/1/2/3/R/?`` annotations of 30 s, by default at 256 Hz as MASS.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep._io import save_figure_atomic
from kdsleep.data._hypnogram_model import FITTED_HYPNOGRAM_MODEL, HypnogramModel
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.readers.wfdb_io import read_slpdb_annotations
from kdsleep.data.stages import SleepStage

__all__ = [
    "EPOCH_LENGTH",
    "MASS_CHANNELS",
    "SubjectProfile",
    "SyntheticNight",
    "generate_from_slpdb",
    "generate_synthetic_psg",
    "epoch_features",
    "mass_subject_id",
    "plot_stage_epochs",
    "proxy_separability",
    "separability_of_nights",
    "simulate_beat_times",
    "slpdb_subject_id",
    "simulate_ecg",
    "simulate_eeg",
    "synthesize_from_slpdb",
    "synthesize_night",
    "write_mass_night",
]

logger = logging.getLogger(__name__)

EPOCH_LENGTH = 30.0
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

# --------------------------------------------------------------------------------------------------
# Stage tables, indexed by SleepStage value: W, N1, N2, N3, R, movement, artefact, unscored.
# Epochs without a stage look like wake (they mostly are lights-on time or movement).
# --------------------------------------------------------------------------------------------------

# RMS amplitude (µV) of each EEG rhythm before the subject gain. N3 delta reaches the > 75 µV peak-to-peak
# of the AASM definition; alpha dominates relaxed wake; N1 and R share low-amplitude theta.
_EEG_RMS = {
    "background": np.array([9.0, 9.0, 10.0, 11.0, 8.0, 12.0, 12.0, 9.0]),
    "delta": np.array([3.0, 7.0, 16.0, 42.0, 5.0, 20.0, 20.0, 3.0]),
    "theta": np.array([3.5, 9.0, 6.5, 5.0, 7.5, 6.0, 6.0, 3.5]),
    "alpha": np.array([15.0, 4.5, 2.5, 1.5, 3.0, 6.0, 6.0, 15.0]),
    "beta": np.array([5.0, 2.0, 1.8, 1.2, 3.5, 12.0, 12.0, 5.0]),
}
# Event rates per minute.
_SPINDLES_PER_MIN = np.array([0.0, 0.3, 5.0, 1.5, 0.0, 0.0, 0.0, 0.0])
_K_COMPLEXES_PER_MIN = np.array([0.0, 0.2, 1.5, 0.5, 0.0, 0.0, 0.0, 0.0])
_SAWTOOTH_BURSTS_PER_MIN = np.array([0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0])
# Neighbouring states whose content an epoch may partly carry (two choices per stage).
_BLEND_PARTNERS = np.array(
    [
        [SleepStage.N1, SleepStage.N1],  # W
        [SleepStage.W, SleepStage.N2],  # N1
        [SleepStage.N1, SleepStage.N3],  # N2
        [SleepStage.N2, SleepStage.N2],  # N3
        [SleepStage.N1, SleepStage.W],  # R
        [SleepStage.W, SleepStage.W],  # movement
        [SleepStage.W, SleepStage.W],  # artefact
        [SleepStage.W, SleepStage.N1],  # unscored
    ],
    dtype=np.int64,
)
# Probability that a wake epoch is "eyes open": little alpha, more beta (the hard wake epochs of real PSG).
_P_EYES_OPEN = 0.3

# Heart rate: offset from the subject's N2 rate (bpm), SD of low-frequency fluctuations (bpm), breathing
# irregularity (relative SD of the breathing rate) and RSA amplitude (bpm) per stage. Sleep lowers the rate
# and its variability, N3 most (vagal dominance, regular breathing); REM and wake are faster and less
# regular (e.g. Trinder et al. 2001; Bonnet & Arand 1997 give heart-rate changes of a few bpm).
_HR_OFFSET = np.array([4.0, 1.0, 0.0, -1.0, 2.0, 5.0, 5.0, 4.0])
_HR_LF_SD = np.array([3.0, 2.2, 1.6, 0.9, 3.0, 3.5, 3.5, 3.0])
_BREATH_IRREGULARITY = np.array([0.25, 0.15, 0.08, 0.04, 0.25, 0.3, 0.3, 0.25])
_RSA_BPM = np.array([1.5, 2.0, 2.5, 3.0, 1.5, 1.5, 1.5, 1.5])
# Muscle-noise RMS on the ECG (mV): movement in wake.
_ECG_EMG_RMS = np.array([0.020, 0.010, 0.006, 0.005, 0.005, 0.060, 0.060, 0.020])
_HR_GRID_SFREQ = 4.0  # Hz: the instantaneous heart rate is built on this grid


@dataclass(frozen=True)
class SubjectProfile:
    """Physiological constants of one synthetic subject.

    Drawn by :meth:`draw`; every field is a factor or value that differs between real people.
    """

    eeg_gain: float = 1.0
    alpha_freq: float = 10.0  # Hz, posterior dominant rhythm
    spindle_freq: float = 13.0  # Hz
    hr_baseline: float = 62.0  # bpm in N2 at the start of the night
    hr_drift: float = 1.0  # bpm lost per hour over the night
    hr_stage_gain: float = 1.0
    hrv_gain: float = 1.0
    rsa_gain: float = 1.0
    breathing_rate: float = 0.25  # Hz
    r_amplitude: float = 1.0  # mV, lead I
    t_ratio: float = 0.3
    p_ratio: float = 0.12
    ecg_noise: float = 0.01  # mV, white
    ecg_polarity: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> SubjectProfile:
        """Draw a random subject (adult population ranges)."""
        return cls(
            eeg_gain=float(np.exp(rng.normal(0.0, 0.2))),
            alpha_freq=float(np.clip(rng.normal(10.0, 0.7), 8.5, 11.8)),
            spindle_freq=float(np.clip(rng.normal(13.0, 0.7), 11.5, 15.0)),
            hr_baseline=float(np.clip(rng.normal(62.0, 7.0), 45.0, 85.0)),
            hr_drift=float(rng.uniform(0.0, 2.0)),
            hr_stage_gain=float(np.exp(rng.normal(0.0, 0.35))),
            hrv_gain=float(np.exp(rng.normal(0.0, 0.3))),
            rsa_gain=float(np.exp(rng.normal(0.0, 0.35))),
            breathing_rate=float(np.clip(rng.normal(0.25, 0.03), 0.17, 0.35)),
            r_amplitude=float(np.clip(rng.normal(0.9, 0.25), 0.35, 1.8)),
            t_ratio=float(np.clip(rng.normal(0.3, 0.07), 0.12, 0.5)),
            p_ratio=float(np.clip(rng.normal(0.12, 0.03), 0.05, 0.2)),
            ecg_noise=float(rng.uniform(0.005, 0.02)),
        )


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


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _shaped_noises(n: int, sfreq: float, gains: list, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Filter one white Gaussian noise in the frequency domain by each ``gain(f)``; unit-RMS outputs.

    Outputs whose gains do not overlap in frequency are independent, so one forward transform serves all.
    They are yielded one at a time so that a long night never holds them all in memory.
    """
    from scipy import fft

    # A length with small prime factors keeps the transform fast; the surplus is cut off. Single precision
    # halves the cost and is ample for noise.
    n_fft = fft.next_fast_len(int(n), real=True)
    spectrum = fft.rfft(rng.standard_normal(n_fft, dtype=np.float32))
    freqs = fft.rfftfreq(n_fft, 1.0 / sfreq)
    for gain in gains:
        x = fft.irfft(spectrum * gain(freqs).astype(np.float32), n_fft)[:n].astype(np.float64)
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        if rms > 0:
            x /= rms
        yield x


def _shaped_noise(n: int, sfreq: float, gain_of_freq, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise filtered in the frequency domain by ``gain_of_freq(f)``, unit RMS."""
    return next(_shaped_noises(n, sfreq, [gain_of_freq], rng))


def _band(lo: float, hi: float, edge: float):
    """Band-pass gain with raised-cosine edges of width ``edge`` Hz."""

    def gain(f: np.ndarray) -> np.ndarray:
        # Frequencies are sorted: evaluate only inside the pass band and its edges.
        g = np.zeros_like(f)
        i0, i1 = np.searchsorted(f, [lo - edge / 2, hi + edge / 2])
        band = f[i0:i1]
        rise = np.clip((band - (lo - edge / 2)) / edge, 0.0, 1.0)
        fall = np.clip(((hi + edge / 2) - band) / edge, 0.0, 1.0)
        g[i0:i1] = np.sin(0.5 * np.pi * rise) ** 2 * np.sin(0.5 * np.pi * fall) ** 2
        return g

    return gain


def _peak(f0: float, width: float):
    """Gaussian spectral peak at ``f0`` Hz (SD ``width`` Hz), zero beyond 5 SD."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        i0, i1 = np.searchsorted(f, [f0 - 5 * width, f0 + 5 * width])
        g[i0:i1] = np.exp(-0.5 * ((f[i0:i1] - f0) / width) ** 2)
        return g

    return gain


def _pink(high_pass: float, exponent: float = 1.0):
    # Amplitude ~ f^(-exponent/2) gives power ~ 1/f^exponent; a smooth high-pass removes the DC drift.
    def gain(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        g[1:] = f[1:] ** (-exponent / 2)
        return g * (1.0 - np.exp(-((f / high_pass) ** 2)))

    return gain


def _envelope(per_epoch: np.ndarray, epoch_samples: int, n: int, smooth_samples: int) -> np.ndarray:
    """Per-sample amplitude from per-epoch values, with linear ramps of ``smooth_samples`` between epochs.

    This is the moving average (over ``smooth_samples``) of the step function, built directly by
    interpolation between knots so that no step-function array of the full length is needed.
    """
    values = np.asarray(per_epoch, dtype=np.float64)
    half = min(max(smooth_samples, 1) / 2.0, epoch_samples / 2.0 - 0.25)
    starts = np.arange(values.shape[0]) * float(epoch_samples)
    knots_x = np.stack([starts + half, starts + epoch_samples - half], axis=1).ravel()
    knots_y = np.repeat(values, 2)
    return np.interp(np.arange(n, dtype=np.float64), knots_x, knots_y)


def _event_onsets(rate_per_min: np.ndarray, n_seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Event times (s) of a Poisson process with a rate (per minute) for each epoch."""
    counts = rng.poisson(rate_per_min * EPOCH_LENGTH / 60.0)
    epoch_of_event = np.repeat(np.arange(len(rate_per_min)), counts)
    times = (epoch_of_event + rng.random(epoch_of_event.shape[0])) * EPOCH_LENGTH
    return np.sort(times[times < n_seconds])


def _add_events(x: np.ndarray, onsets: np.ndarray, sfreq: float, waveform) -> None:
    """Add the samples ``waveform(i)`` of event ``i`` starting at each onset (s), in place."""
    for i, onset in enumerate(onsets):
        values = waveform(i)
        start = int(round(onset * sfreq))
        stop = min(start + values.shape[0], x.shape[0])
        if stop > start:
            x[start:stop] += values[: stop - start]


def _stage_grid(stages: np.ndarray) -> np.ndarray:
    """Stage values as int64 indices into the stage tables (unknown codes become UNSCORED)."""
    s = np.asarray(stages, dtype=np.int64)
    return np.where((s >= 0) & (s < len(SleepStage)), s, int(SleepStage.UNSCORED))


# --------------------------------------------------------------------------------------------------
# EEG
# --------------------------------------------------------------------------------------------------


def simulate_eeg(
    stages: np.ndarray,
    sfreq: float,
    rng: np.random.Generator,
    profile: SubjectProfile | None = None,
    n_samples: int | None = None,
) -> np.ndarray:
    """Synthesise a central EEG derivation (C3-A2, µV) that follows a hypnogram.

    Parameters
    ----------
    stages : np.ndarray of int
        :class:`SleepStage` value of each 30-s epoch; epoch 0 starts at sample 0.
    sfreq : float
        Sampling rate in Hz (> 64 Hz so the beta band fits).
    rng : numpy.random.Generator
        Source of randomness.
    profile : SubjectProfile, optional
        The subject; default a typical one.
    n_samples : int, optional
        Length of the output; default ``len(stages) * 30 * sfreq``.

    Returns
    -------
    np.ndarray of float64
        EEG in µV.
    """
    profile = profile or SubjectProfile()
    stage_idx = _stage_grid(stages)
    n_epochs = stage_idx.shape[0]
    epoch_samples = int(round(EPOCH_LENGTH * sfreq))
    n = int(n_samples if n_samples is not None else n_epochs * epoch_samples)
    nyquist = sfreq / 2
    smooth = int(2.0 * sfreq)  # transitions between epochs spread over about 2 s

    # Real epochs are rarely pure: each one borrows part of its content from a neighbouring state on the
    # W - N1 - N2 - N3 continuum (R next to N1 and W), which is what makes scorers disagree near
    # transitions. The borrowed fraction is Beta(1, 6) distributed (mean 0.14).
    choice = rng.integers(0, 2, n_epochs)
    partner = _BLEND_PARTNERS[stage_idx, choice]
    borrowed = rng.beta(1.0, 6.0, n_epochs)

    def blend(table: np.ndarray) -> np.ndarray:
        return (1.0 - borrowed) * table[stage_idx] + borrowed * table[partner]

    # Epoch-to-epoch variability of each rhythm, and eyes-open wake epochs with little alpha.
    jitter = {name: np.exp(rng.normal(0.0, 0.25, n_epochs)) for name in _EEG_RMS}
    eyes_open = (stage_idx == SleepStage.W) & (rng.random(n_epochs) < _P_EYES_OPEN)
    jitter["alpha"][eyes_open] *= 0.25
    jitter["beta"][eyes_open] *= 1.6

    gains = {
        "background": _pink(0.3),
        "delta": _band(0.5, 2.0, 0.4),
        "theta": _band(4.0, 7.5, 1.0),
        "alpha": _peak(profile.alpha_freq, 0.6),
        "beta": _band(16.0, min(30.0, 0.9 * nyquist), 4.0),
    }
    # The rhythms occupy separate bands, so they share one white noise; the 1/f background gets its own.
    rhythms = ["delta", "theta", "alpha", "beta"]
    eeg = np.zeros(n)
    for name, noise in zip(
        rhythms, _shaped_noises(n, sfreq, [gains[name] for name in rhythms], rng), strict=True
    ):
        eeg += _envelope(blend(_EEG_RMS[name]) * jitter[name], epoch_samples, n, smooth) * noise
    background = _shaped_noise(n, sfreq, gains["background"], rng)
    eeg += (
        _envelope(blend(_EEG_RMS["background"]) * jitter["background"], epoch_samples, n, smooth) * background
    )
    n_seconds = n / sfreq

    # Sleep spindles: waxing-waning 11-16 Hz bursts of 0.5-2 s.
    onsets = _event_onsets(blend(_SPINDLES_PER_MIN), n_seconds, rng)
    durations = np.asarray(rng.uniform(0.5, 2.0, onsets.shape[0]))
    freqs = np.clip(profile.spindle_freq + rng.normal(0.0, 0.5, onsets.shape[0]), 11.0, 16.0)
    amplitudes = 22.0 * profile.eeg_gain * np.exp(rng.normal(0.0, 0.25, onsets.shape[0]))
    phases = np.asarray(rng.uniform(0, 2 * np.pi, onsets.shape[0]))

    def spindle(i: int):
        t = np.arange(int(durations[i] * sfreq)) / sfreq
        return (
            amplitudes[i]
            * np.sin(np.pi * t / durations[i]) ** 2
            * np.sin(2 * np.pi * freqs[i] * t + phases[i])
        )

    _add_events(eeg, onsets, sfreq, spindle)

    # K-complexes: a sharp negative wave followed by a slower positive one, > 0.5 s, 60-150 µV.
    onsets = _event_onsets(blend(_K_COMPLEXES_PER_MIN), n_seconds, rng)
    kc_amp = 90.0 * profile.eeg_gain * np.exp(rng.normal(0.0, 0.25, onsets.shape[0]))

    def k_complex(i: int):
        t = np.arange(int(1.2 * sfreq)) / sfreq
        wave = -np.exp(-0.5 * ((t - 0.2) / 0.08) ** 2) + 0.55 * np.exp(-0.5 * ((t - 0.55) / 0.16) ** 2)
        return kc_amp[i] * wave

    _add_events(eeg, onsets, sfreq, k_complex)

    # REM sawtooth waves: bursts of 2-5 s of 2-3.5 Hz triangular waves.
    onsets = _event_onsets(blend(_SAWTOOTH_BURSTS_PER_MIN), n_seconds, rng)
    saw_dur = np.asarray(rng.uniform(2.0, 5.0, onsets.shape[0]))
    saw_freq = np.asarray(rng.uniform(2.0, 3.5, onsets.shape[0]))
    saw_amp = 15.0 * profile.eeg_gain * np.exp(rng.normal(0.0, 0.2, onsets.shape[0]))

    def sawtooth(i: int):
        t = np.arange(int(saw_dur[i] * sfreq)) / sfreq
        phase = np.mod(saw_freq[i] * t, 1.0)
        # Slow rise over 80 % of the cycle, quick fall: the shape that gives the waves their name.
        tooth = np.where(phase < 0.8, phase / 0.8, (1.0 - phase) / 0.2) * 2.0 - 1.0
        return saw_amp[i] * np.sin(np.pi * t / saw_dur[i]) * tooth

    _add_events(eeg, onsets, sfreq, sawtooth)
    return eeg * profile.eeg_gain


# --------------------------------------------------------------------------------------------------
# Heart rate and ECG
# --------------------------------------------------------------------------------------------------


def _breathing_phase(
    stage_idx: np.ndarray, profile: SubjectProfile, n_grid: int, rng: np.random.Generator
) -> np.ndarray:
    """Respiratory phase (rad) on the heart-rate grid, less regular in W and REM than in NREM."""
    per_grid = int(EPOCH_LENGTH * _HR_GRID_SFREQ)
    irregularity = _envelope(_BREATH_IRREGULARITY[stage_idx], per_grid, n_grid, int(10 * _HR_GRID_SFREQ))
    wander = _shaped_noise(n_grid, _HR_GRID_SFREQ, _band(0.005, 0.1, 0.01), rng)
    rate = profile.breathing_rate * np.clip(1.0 + irregularity * wander, 0.4, 2.0)
    return 2 * np.pi * np.cumsum(rate) / _HR_GRID_SFREQ


def simulate_beat_times(
    stages: np.ndarray,
    duration: float,
    rng: np.random.Generator,
    profile: SubjectProfile | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times of a synthetic night.

    The instantaneous heart rate (bpm) is the subject's baseline, minus a slow drift over the night, plus a
    stage offset (smoothed with a 20-s time constant, since the heart rate follows a stage change within
    tens of seconds), low-frequency fluctuations whose size depends on the stage, respiratory sinus
    arrhythmia and a surge of about 8 bpm at each awakening from sleep. Beats are placed where the integral
    of the rate crosses whole numbers.

    Parameters
    ----------
    stages : np.ndarray of int
        :class:`SleepStage` value of each 30-s epoch, epoch 0 starting at time 0.
    duration : float
        Seconds to cover.
    rng : numpy.random.Generator
    profile : SubjectProfile, optional

    Returns
    -------
    beat_times : np.ndarray
        R-peak times in seconds.
    breathing_phase : np.ndarray
        Respiratory phase (rad) on a 4-Hz grid from time 0 (drives the ECG baseline wander).
    """
    from scipy.signal import lfilter

    profile = profile or SubjectProfile()
    stage_idx = _stage_grid(stages)
    n_grid = int(np.ceil(duration * _HR_GRID_SFREQ)) + 1
    per_epoch = int(EPOCH_LENGTH * _HR_GRID_SFREQ)
    t = np.arange(n_grid) / _HR_GRID_SFREQ

    offset_per_epoch = profile.hr_stage_gain * _HR_OFFSET[stage_idx] + rng.normal(
        0.0, 1.5, stage_idx.shape[0]
    )
    offset = _envelope(offset_per_epoch, per_epoch, n_grid, 1)
    decay = np.exp(-1.0 / (20.0 * _HR_GRID_SFREQ))
    offset = lfilter([1 - decay], [1, -decay], offset, zi=[offset[0] * decay])[0]

    lf_sd = _envelope(profile.hrv_gain * _HR_LF_SD[stage_idx], per_epoch, n_grid, int(30 * _HR_GRID_SFREQ))
    lf = lf_sd * _shaped_noise(n_grid, _HR_GRID_SFREQ, _band(0.01, 0.15, 0.02), rng)

    breathing = _breathing_phase(stage_idx, profile, n_grid, rng)
    rsa_amp = _envelope(profile.rsa_gain * _RSA_BPM[stage_idx], per_epoch, n_grid, int(30 * _HR_GRID_SFREQ))
    rsa = rsa_amp * np.sin(breathing)

    # Cardiac activation at awakenings: a bump of ~8 bpm over ~15 s at each sleep -> wake transition.
    asleep = (stage_idx >= SleepStage.N1) & (stage_idx <= SleepStage.R)
    awakenings = np.nonzero(asleep[:-1] & ~asleep[1:])[0] + 1
    surge = np.zeros(n_grid)
    for epoch in awakenings:
        centre = epoch * EPOCH_LENGTH + 8.0
        surge += 8.0 * profile.hr_stage_gain * np.exp(-0.5 * ((t - centre) / 6.0) ** 2)

    hr = profile.hr_baseline - profile.hr_drift * t / 3600.0 + offset + lf + rsa + surge
    hr = np.clip(hr, 35.0, 160.0)
    cycles = np.concatenate([[0.0], np.cumsum(hr[:-1] / 60.0 / _HR_GRID_SFREQ)])
    start_phase = rng.random()
    beat_phases = np.arange(np.ceil(start_phase), cycles[-1] + start_phase) - start_phase
    beats = np.interp(beat_phases, cycles, t)
    beats = beats + rng.normal(0.0, 0.003, beats.shape[0])  # beat-to-beat jitter of a few ms
    beats = np.sort(beats[(beats >= 0) & (beats < duration)])
    return beats, breathing


# Gaussian waves of one beat at RR = 1 s: centre (s from the R peak), width (s) and amplitude (x R).
# The angles and widths of McSharry et al.'s ECGSYN (P -70 deg, Q -15, R 0, S 15, T 100) expressed in time.
_WAVES = {
    "P": (-0.20, 0.025, 1.0),
    "Q": (-0.035, 0.010, -0.10),
    "R": (0.0, 0.011, 1.0),
    "S": (0.035, 0.011, -0.25),
    "T": (0.27, 0.055, 1.0),
}


_GAUSSIAN_WAVES_KERNEL = None


def _gaussian_waves_kernel():
    """Compile (once) the numba kernel that adds Gaussian waves to a signal; deferred to keep imports cheap."""
    global _GAUSSIAN_WAVES_KERNEL
    if _GAUSSIAN_WAVES_KERNEL is not None:
        return _GAUSSIAN_WAVES_KERNEL
    import numba

    @numba.njit(cache=True, nogil=True)
    def add_waves(out, sfreq, centres, widths, amps):
        # Each wave touches only the samples within 5 widths of its centre (the rest is < 4e-6 of its peak).
        n = out.shape[0]
        for j in range(centres.shape[0]):
            a = amps[j]
            if a == 0.0:
                continue
            c = centres[j]
            s = widths[j]
            i0 = max(int(np.ceil((c - 5.0 * s) * sfreq)), 0)
            i1 = min(int(np.floor((c + 5.0 * s) * sfreq)) + 1, n)
            for i in range(i0, i1):
                z = (i / sfreq - c) / s
                out[i] += a * np.exp(-0.5 * z * z)

    _GAUSSIAN_WAVES_KERNEL = add_waves
    return add_waves


def simulate_ecg(
    beat_times: np.ndarray,
    n_samples: int,
    sfreq: float,
    rng: np.random.Generator,
    profile: SubjectProfile | None = None,
    stages: np.ndarray | None = None,
    breathing_phase: np.ndarray | None = None,
    ventricular: np.ndarray | None = None,
) -> np.ndarray:
    """Synthesise lead-I ECG (mV) with a PQRST complex at each beat.

    The P and T waves move with the preceding RR interval (Bazett's square-root law) while the QRS keeps
    its width. Respiration modulates the amplitude and the baseline; muscle noise follows the stage.

    Parameters
    ----------
    beat_times : np.ndarray
        R-peak times in seconds from the first sample.
    n_samples : int
        Output length.
    sfreq : float
        Sampling rate in Hz.
    rng : numpy.random.Generator
    profile : SubjectProfile, optional
    stages : np.ndarray of int, optional
        Stage per 30-s epoch from sample 0, for the stage-dependent muscle noise (default: sleep-level noise).
    breathing_phase : np.ndarray, optional
        Respiratory phase on the 4-Hz grid (from :func:`simulate_beat_times`); default a regular 0.25 Hz.
    ventricular : np.ndarray of bool, optional
        Per beat: a premature ventricular beat (no P wave, wide QRS, inverted T), as labelled in real beat
        annotations.

    Returns
    -------
    np.ndarray of float64
        ECG in mV.
    """
    profile = profile or SubjectProfile()
    beats = np.asarray(beat_times, dtype=np.float64)
    t = np.arange(n_samples) / sfreq
    ecg = np.zeros(n_samples)
    if beats.shape[0] >= 2:
        rr_before = np.diff(beats, prepend=beats[0] - (beats[1] - beats[0]))
        scale = np.sqrt(np.clip(rr_before, 0.3, 2.0))
        is_v = np.zeros(beats.shape[0], bool) if ventricular is None else np.asarray(ventricular, bool)
        beat_amp = profile.r_amplitude * np.exp(rng.normal(0.0, 0.03, beats.shape[0]))
        n_beats = beats.shape[0]
        centres = np.empty((n_beats, len(_WAVES)))
        widths = np.empty((n_beats, len(_WAVES)))
        amps = np.empty((n_beats, len(_WAVES)))
        for w, (name, (centre, width, a)) in enumerate(_WAVES.items()):
            c, s, amp = np.full(n_beats, centre), np.full(n_beats, width), np.full(n_beats, a)
            if name == "P":
                c, amp = centre * np.sqrt(scale), np.where(is_v, 0.0, a * profile.p_ratio)
            elif name == "T":
                c, s = centre * scale, width * scale
                amp = np.where(is_v, -1.5, 1.0) * a * profile.t_ratio
            else:  # Q, R, S: a ventricular beat has a wide, tall QRS
                s = np.where(is_v, 3.5 * width, width)
                amp = np.where(is_v, 1.4 * a, a)
            centres[:, w] = beats + c
            widths[:, w] = s
            amps[:, w] = amp * beat_amp
        _gaussian_waves_kernel()(ecg, float(sfreq), centres.ravel(), widths.ravel(), amps.ravel())
    ecg *= profile.ecg_polarity

    # Respiration: amplitude modulation (heart axis moves with the diaphragm) and baseline wander. In-place
    # operations keep an 8-hour night at 256 Hz to a few full-length arrays.
    if breathing_phase is not None:
        phase = np.interp(t, np.arange(breathing_phase.shape[0]) / _HR_GRID_SFREQ, breathing_phase)
    else:
        phase = 2 * np.pi * 0.25 * t
    work = np.sin(phase)
    work *= 0.05
    work += 1.0
    ecg *= work
    np.add(phase, 1.0, out=work)
    np.sin(work, out=work)
    work *= 0.06
    ecg += work
    del phase
    # Muscle noise, louder in wake and movement.
    if stages is not None:
        stage_idx = _stage_grid(stages)
        epoch_samples = int(round(EPOCH_LENGTH * sfreq))
        emg_rms = _envelope(_ECG_EMG_RMS[stage_idx], epoch_samples, n_samples, int(2 * sfreq))
    else:
        emg_rms = np.full(n_samples, _ECG_EMG_RMS[SleepStage.N2])
    wander_band, emg_band = _band(0.02, 0.3, 0.05), _band(20.0, min(100.0, 0.9 * sfreq / 2), 5.0)
    scales: tuple[Any, ...] = (0.05, emg_rms)
    for scale, noise in zip(
        scales, _shaped_noises(n_samples, sfreq, [wander_band, emg_band], rng), strict=True
    ):
        noise *= scale
        ecg += noise
    del emg_rms
    work[:] = rng.standard_normal(n_samples)
    work *= profile.ecg_noise
    ecg += work
    if sfreq > 2 * 65.0:
        # Mains hum (MASS: 60 Hz).
        np.multiply(t, 2 * np.pi * 60.0, out=work)
        work += rng.uniform(0, 2 * np.pi)
        np.sin(work, out=work)
        work *= 0.004
        ecg += work
    return ecg


# --------------------------------------------------------------------------------------------------
# Whole nights
# --------------------------------------------------------------------------------------------------


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
    reference = 4.0 * _shaped_noise(n_samples, sfreq, _pink(0.3), rng) + 12.0 * ecg
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


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


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
    from tqdm.auto import tqdm

    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    paths: list[Path] = []
    for index in tqdm(range(n_subjects), desc="synthetic PSG", unit="subject", disable=not progress):
        night = synthesize_night(index, hours=hours, seed=seed, sfreq=sfreq, hypnogram_model=hypnogram_model)
        start = datetime(2000, 1, 1, 22, 30, 0) + timedelta(days=index)
        paths.extend(write_mass_night(night, out_dir, start=start))
        logger.debug("wrote %s (%d epochs)", night.subject, night.stages.shape[0])
    return paths


# --------------------------------------------------------------------------------------------------
# Nights driven by real slpdb annotations
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# How much of the stage each signal carries: a cheap proxy of the teacher / student gap
# --------------------------------------------------------------------------------------------------

#: EEG bands (Hz) of the proxy features.
_PROXY_BANDS = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 11.0), (11.0, 16.0), (16.0, 30.0))


def epoch_features(night: SyntheticNight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch features of a night: EEG log band powers, and RR mean / SD of R peaks detected in the ECG.

    Returns
    -------
    eeg_features : np.ndarray, shape (n_epochs, 7)
        Log power in 0.5-2, 2-4, 4-8, 8-11, 11-16, 16-30 Hz, and log total power (Welch, 4-s segments).
    ecg_features : np.ndarray, shape (n_epochs, 4)
        RR mean and SD within the epoch (s) and the same two z-scored over the night.
    stages : np.ndarray
        The stage of each epoch.
    """
    from scipy.signal import find_peaks, welch

    sfreq = night.sfreq
    n_epochs = night.stages.shape[0]
    first = night.epoch_slice(0).start
    epoch_samples = int(round(EPOCH_LENGTH * sfreq))
    eeg = night.eeg[first : first + n_epochs * epoch_samples].reshape(n_epochs, epoch_samples)
    freqs, psd = welch(eeg, fs=sfreq, nperseg=int(4 * sfreq), axis=-1)
    bands = [psd[:, (freqs >= lo) & (freqs < hi)].sum(-1) for lo, hi in _PROXY_BANDS]
    eeg_features = np.log(np.stack(bands + [psd[:, (freqs >= 0.5) & (freqs < 30)].sum(-1)], axis=1) + 1e-12)

    # R peaks: a band-passed ECG, its square, peaks at least 0.33 s apart above a robust threshold.
    from scipy.signal import butter, sosfiltfilt

    sos = butter(3, [5.0, 25.0], btype="bandpass", fs=sfreq, output="sos")
    energy = sosfiltfilt(sos, night.ecg) ** 2
    threshold = 0.3 * np.percentile(energy, 99.5)
    peaks, _ = find_peaks(energy, height=threshold, distance=int(0.33 * sfreq))
    times = peaks / sfreq
    rr = np.diff(times)
    rr_time = times[1:]
    epoch_of_rr = np.floor((rr_time - night.epoch_onset) / EPOCH_LENGTH).astype(np.int64)
    ok = (epoch_of_rr >= 0) & (epoch_of_rr < n_epochs) & (rr > 0.3) & (rr < 2.0)
    counts = np.bincount(epoch_of_rr[ok], minlength=n_epochs)
    sums = np.bincount(epoch_of_rr[ok], rr[ok], minlength=n_epochs)
    squares = np.bincount(epoch_of_rr[ok], rr[ok] ** 2, minlength=n_epochs)
    mean = np.divide(sums, counts, out=np.full(n_epochs, np.nan), where=counts > 0)
    var = np.divide(squares, counts, out=np.full(n_epochs, np.nan), where=counts > 0) - mean**2
    sd = np.sqrt(np.clip(var, 0.0, None))
    mean = np.where(np.isfinite(mean), mean, np.nanmedian(mean))
    sd = np.where(np.isfinite(sd), sd, np.nanmedian(sd))
    z = lambda v: (v - v.mean()) / (v.std() + 1e-12)  # noqa: E731
    ecg_features = np.stack([mean, sd, z(mean), z(sd)], axis=1)
    return eeg_features, ecg_features, night.stages


def proxy_separability(
    n_subjects: int = 12,
    hours: float = 8.0,
    seed: int = 0,
    sfreq: float = 128.0,
    n_test_subjects: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Weighted F1 of a logistic regression on per-epoch EEG and ECG features of synthetic subjects.

    A cheap stand-in for the teacher (EEG) and student (ECG) models: the EEG should carry the stage well
    (weighted F1 >= 0.8), the ECG weakly but above chance. See :func:`separability_of_nights`.

    Parameters
    ----------
    n_subjects : int
        Subjects synthesised; the last ``n_test_subjects`` (default a third) are held out.
    hours, seed, sfreq : see :func:`synthesize_night`.
    progress : bool
        Show a progress bar.
    """
    from tqdm.auto import tqdm

    n_test = n_test_subjects if n_test_subjects is not None else max(1, n_subjects // 3)
    if not 0 < n_test < n_subjects:
        raise ValueError(f"need 0 < n_test_subjects < n_subjects, got {n_test} of {n_subjects}")
    features = []
    for index in tqdm(range(n_subjects), desc="proxy", disable=not progress):
        features.append(epoch_features(synthesize_night(index, hours=hours, seed=seed, sfreq=sfreq)))
    return separability_of_nights(features, [i >= n_subjects - n_test for i in range(n_subjects)])


def separability_of_nights(
    features: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], is_test: Sequence[bool]
) -> dict[str, float]:
    """Weighted F1 of a logistic regression on per-epoch features, trained and tested on different nights.

    Parameters
    ----------
    features : sequence of (eeg_features, ecg_features, stages)
        :func:`epoch_features` of each night; unscored epochs are left out.
    is_test : sequence of bool
        Which nights are held out (put all nights of one subject on the same side).

    Returns
    -------
    dict
        ``eeg_f1``, ``ecg_f1`` (5-class weighted F1 on the held-out nights), ``eeg_f1_wldr``, ``ecg_f1_wldr``
        (4-class W-L-D-R), per-class F1 as ``eeg_f1_N2``, ``ecg_f1_wldr_D``, ..., ``chance_f1`` and
        ``chance_f1_wldr`` (weighted F1 of guessing by the training class frequencies, in expectation),
        ``n_train_epochs``, ``n_test_epochs``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kdsleep.data.stages import AASM_5, W_L_D_R

    if len(features) != len(is_test) or all(is_test) or not any(is_test):
        raise ValueError("need one is_test flag per night, with nights on both sides of the split")
    eeg_all = np.concatenate([f[0] for f in features])
    ecg_all = np.concatenate([f[1] for f in features])
    y_all = np.concatenate([f[2] for f in features]).astype(np.int64)
    test = np.concatenate([np.full(f[2].shape[0], flag) for f, flag in zip(features, is_test, strict=True)])
    scored = y_all <= int(SleepStage.R)
    eeg_all, ecg_all, y_all, test = eeg_all[scored], ecg_all[scored], y_all[scored], test[scored]
    train = ~test
    result: dict[str, float] = {"n_train_epochs": float(train.sum()), "n_test_epochs": float(test.sum())}
    for suffix, labels, class_names in (
        ("", y_all, AASM_5.class_names),
        ("_wldr", W_L_D_R(y_all), W_L_D_R.class_names),
    ):
        n_classes = len(class_names)
        freq = np.bincount(labels[train], minlength=n_classes) / train.sum()
        test_freq = np.bincount(labels[test], minlength=n_classes) / test.sum()
        # A guess drawn from the training frequencies has per-class F1 2 p q / (p + q) in expectation.
        per_class = np.divide(
            2 * freq * test_freq, freq + test_freq, out=np.zeros_like(freq), where=(freq + test_freq) > 0
        )
        result[f"chance_f1{suffix}"] = float(np.sum(test_freq * per_class))
        for name, x in (("eeg", eeg_all), ("ecg", ecg_all)):
            model = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
            )
            model.fit(x[train], labels[train])
            predicted = model.predict(x[test])
            result[f"{name}_f1{suffix}"] = float(
                f1_score(labels[test], predicted, average="weighted", zero_division=0)
            )
            per_class = f1_score(
                labels[test], predicted, average=None, labels=np.arange(n_classes), zero_division=0
            )
            for class_name, value in zip(class_names, per_class, strict=True):
                result[f"{name}_f1{suffix}_{class_name}"] = float(value)
    return result


def plot_stage_epochs(night: SyntheticNight, path: str | os.PathLike[str], zoom: float = 4.0) -> Path:
    """Save a figure with one epoch of each stage of ``night``: EEG C3-A2 above, ECG lead I below.

    For each stage the middle epoch of its longest run is shown (its most typical one), whole on the left
    and, on the right, the ``zoom`` seconds where the stage's own band is strongest (alpha in W, theta in
    N1 and R, spindles in N2, delta in N3), so that rhythms and spindles are visible.
    Written atomically as PNG.

    Parameters
    ----------
    night : SyntheticNight
    path : path-like
        Target ``.png``.
    zoom : float
        Seconds shown in the zoomed panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [SleepStage.W, SleepStage.N1, SleepStage.N2, SleepStage.N3, SleepStage.R]
    fig, axes = plt.subplots(
        2 * len(stages),
        2,
        figsize=(11, 12),
        gridspec_kw={"height_ratios": [2, 1] * len(stages), "width_ratios": [3, 1]},
    )
    epoch_samples = int(round(EPOCH_LENGTH * night.sfreq))
    t = np.arange(epoch_samples) / night.sfreq
    signature = {
        SleepStage.W: (8, 12),
        SleepStage.N1: (4, 8),
        SleepStage.N2: (11, 16),
        SleepStage.N3: (0.5, 2),
        SleepStage.R: (4, 8),
    }
    for row, stage in enumerate(stages):
        eeg_axes, ecg_axes = axes[2 * row], axes[2 * row + 1]
        eeg_axes[0].set_ylabel(f"{stage.name}\nEEG (µV)")
        ecg_axes[0].set_ylabel("ECG (mV)")
        is_stage = (night.stages == stage).astype(np.int64)
        if not is_stage.any():
            eeg_axes[0].text(0.5, 0.5, "stage absent from this night", transform=eeg_axes[0].transAxes)
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], is_stage, [0]])))
        starts, stops = edges[::2], edges[1::2]
        longest = int(np.argmax(stops - starts))
        epoch = int((starts[longest] + stops[longest] - 1) // 2)
        sl = night.epoch_slice(epoch)
        eeg, ecg = night.eeg[sl], night.ecg[sl]
        lo, hi = signature[stage]
        spectrum = np.fft.rfft(eeg)
        freqs = np.fft.rfftfreq(eeg.shape[0], 1.0 / night.sfreq)
        band = np.fft.irfft(np.where((freqs >= lo) & (freqs < hi), spectrum, 0), eeg.shape[0])
        window = int(zoom * night.sfreq)
        power = np.convolve(band**2, np.ones(window), mode="valid")
        zoom_from = float(np.argmax(power[: epoch_samples - window + 1]) / night.sfreq)
        in_zoom = (t >= zoom_from) & (t < zoom_from + zoom)
        for col, keep in enumerate((np.ones_like(in_zoom), in_zoom)):
            eeg_axes[col].plot(t[keep], eeg[keep], lw=0.5 if col == 0 else 0.8, color="C0")
            ecg_axes[col].plot(t[keep], ecg[keep], lw=0.5 if col == 0 else 0.8, color="C3")
        eeg_axes[0].set_ylim(-200, 200)
        eeg_axes[1].set_ylim(-200 if stage == SleepStage.N3 else -80, 200 if stage == SleepStage.N3 else 80)
        ecg_axes[1].set_ylim(ecg_axes[0].get_ylim())
        eeg_axes[0].axvspan(zoom_from, zoom_from + zoom, color="0.9", zorder=0)
        beats = night.beat_times[
            (night.beat_times >= sl.start / night.sfreq) & (night.beat_times < sl.stop / night.sfreq)
        ]
        rr = np.diff(beats)
        if rr.size:
            ecg_axes[0].set_title(
                f"epoch {epoch}: HR {60 / rr.mean():.0f} bpm, RR SD {1000 * rr.std():.0f} ms",
                fontsize=8,
                loc="right",
            )
    axes[-1, 0].set_xlabel("time in epoch (s)")
    axes[-1, 1].set_xlabel("zoom (s)")
    fig.suptitle(f"Synthetic subject {night.subject}: one 30-s epoch per stage (EEG C3-A2, ECG lead I)")
    fig.tight_layout()
    try:
        return save_figure_atomic(fig, path, dpi=72)
    finally:
        plt.close(fig)
