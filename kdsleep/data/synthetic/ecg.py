"""Synthetic heart: R-peak times from a stage-dependent heart rate, and a lead-I ECG (mV) built on them.

The instantaneous heart rate has a subject baseline, stage-dependent offsets (lower and steadier in N3,
more variable in W and REM), low-frequency fluctuations, respiratory sinus arrhythmia and surges at
awakenings. Each beat is a sum of Gaussian waves (P, Q, R, S, T; the morphology model of McSharry et al.
2003, ECGSYN, written in time rather than phase), plus respiratory baseline wander, muscle noise and mains
hum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdsleep.data.stages import SleepStage
from kdsleep.data.synthetic.profile import EPOCH_LENGTH, SubjectProfile
from kdsleep.data.synthetic.shaping import (
    band_gain,
    epoch_envelope,
    shaped_noise,
    shaped_noises,
    stage_indices,
)

__all__ = ["HR_GRID_SFREQ", "simulate_beat_times", "simulate_ecg"]

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

#: Sampling rate in Hz of the grid the instantaneous heart rate (and the breathing phase) is built on.
HR_GRID_SFREQ = 4.0


def _breathing_phase(
    stage_idx: np.ndarray, profile: SubjectProfile, n_grid: int, rng: np.random.Generator
) -> np.ndarray:
    """Respiratory phase (rad) on the heart-rate grid, less regular in W and REM than in NREM."""
    per_grid = int(EPOCH_LENGTH * HR_GRID_SFREQ)
    irregularity = epoch_envelope(_BREATH_IRREGULARITY[stage_idx], per_grid, n_grid, int(10 * HR_GRID_SFREQ))
    wander = shaped_noise(n_grid, HR_GRID_SFREQ, band_gain(0.005, 0.1, 0.01), rng)
    rate = profile.breathing_rate * np.clip(1.0 + irregularity * wander, 0.4, 2.0)
    return 2 * np.pi * np.cumsum(rate) / HR_GRID_SFREQ


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
    stage_idx = stage_indices(stages)
    n_grid = int(np.ceil(duration * HR_GRID_SFREQ)) + 1
    per_epoch = int(EPOCH_LENGTH * HR_GRID_SFREQ)
    t = np.arange(n_grid) / HR_GRID_SFREQ

    offset_per_epoch = profile.hr_stage_gain * _HR_OFFSET[stage_idx] + rng.normal(
        0.0, 1.5, stage_idx.shape[0]
    )
    offset = epoch_envelope(offset_per_epoch, per_epoch, n_grid, 1)
    decay = np.exp(-1.0 / (20.0 * HR_GRID_SFREQ))
    offset = lfilter([1 - decay], [1, -decay], offset, zi=[offset[0] * decay])[0]

    lf_sd = epoch_envelope(
        profile.hrv_gain * _HR_LF_SD[stage_idx], per_epoch, n_grid, int(30 * HR_GRID_SFREQ)
    )
    lf = lf_sd * shaped_noise(n_grid, HR_GRID_SFREQ, band_gain(0.01, 0.15, 0.02), rng)

    breathing = _breathing_phase(stage_idx, profile, n_grid, rng)
    rsa_amp = epoch_envelope(
        profile.rsa_gain * _RSA_BPM[stage_idx], per_epoch, n_grid, int(30 * HR_GRID_SFREQ)
    )
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
    cycles = np.concatenate([[0.0], np.cumsum(hr[:-1] / 60.0 / HR_GRID_SFREQ)])
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
        phase = np.interp(t, np.arange(breathing_phase.shape[0]) / HR_GRID_SFREQ, breathing_phase)
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
        stage_idx = stage_indices(stages)
        epoch_samples = int(round(EPOCH_LENGTH * sfreq))
        emg_rms = epoch_envelope(_ECG_EMG_RMS[stage_idx], epoch_samples, n_samples, int(2 * sfreq))
    else:
        emg_rms = np.full(n_samples, _ECG_EMG_RMS[SleepStage.N2])
    wander_band, emg_band = band_gain(0.02, 0.3, 0.05), band_gain(20.0, min(100.0, 0.9 * sfreq / 2), 5.0)
    scales: tuple[Any, ...] = (0.05, emg_rms)
    for scale, noise in zip(
        scales, shaped_noises(n_samples, sfreq, [wander_band, emg_band], rng), strict=True
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
