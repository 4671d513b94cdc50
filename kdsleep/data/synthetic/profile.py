"""The synthetic subject: physiological constants drawn once per subject, and the scoring epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EPOCH_LENGTH", "SubjectProfile"]

#: Scoring epoch of the synthetic hypnograms in seconds.
EPOCH_LENGTH = 30.0


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
