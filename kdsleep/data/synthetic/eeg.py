"""Synthetic central EEG (C3-A2, µV) that follows a hypnogram.

Alpha rhythm in W, theta in N1, sleep spindles (11-16 Hz, 0.5-2 s) and K-complexes in N2, high-amplitude
delta (0.5-2 Hz) in N3, low-amplitude theta with sawtooth bursts in R, over a 1/f background; each epoch
borrows part of its content from a neighbouring state, as real epochs near transitions do.
"""

from __future__ import annotations

import numpy as np

from kdsleep.data.stages import SleepStage
from kdsleep.data.synthetic.profile import EPOCH_LENGTH, SubjectProfile
from kdsleep.data.synthetic.shaping import (
    band_gain,
    epoch_envelope,
    peak_gain,
    pink_gain,
    shaped_noise,
    shaped_noises,
    stage_indices,
)

__all__ = ["simulate_eeg"]

# Stage tables, indexed by SleepStage value: W, N1, N2, N3, R, movement, artefact, unscored.
# Epochs without a stage look like wake (they mostly are lights-on time or movement).

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
    stage_idx = stage_indices(stages)
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
        "background": pink_gain(0.3),
        "delta": band_gain(0.5, 2.0, 0.4),
        "theta": band_gain(4.0, 7.5, 1.0),
        "alpha": peak_gain(profile.alpha_freq, 0.6),
        "beta": band_gain(16.0, min(30.0, 0.9 * nyquist), 4.0),
    }
    # The rhythms occupy separate bands, so they share one white noise; the 1/f background gets its own.
    rhythms = ["delta", "theta", "alpha", "beta"]
    eeg = np.zeros(n)
    for name, noise in zip(
        rhythms, shaped_noises(n, sfreq, [gains[name] for name in rhythms], rng), strict=True
    ):
        eeg += epoch_envelope(blend(_EEG_RMS[name]) * jitter[name], epoch_samples, n, smooth) * noise
    background = shaped_noise(n, sfreq, gains["background"], rng)
    eeg += (
        epoch_envelope(blend(_EEG_RMS["background"]) * jitter["background"], epoch_samples, n, smooth)
        * background
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
