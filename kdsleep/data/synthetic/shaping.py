"""Shaping of the synthetic signals in frequency and time.

Spectrally shaped Gaussian noise (band, peak and 1/f gains applied to one white noise in the frequency
domain), per-epoch amplitude envelopes with smooth transitions, and the index of each stage into the
per-stage tables of :mod:`~kdsleep.data.synthetic.eeg` and :mod:`~kdsleep.data.synthetic.ecg`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from kdsleep.data.stages import SleepStage

__all__ = [
    "Gain",
    "band_gain",
    "epoch_envelope",
    "peak_gain",
    "pink_gain",
    "shaped_noise",
    "shaped_noises",
    "stage_indices",
]

#: A gain as a function of frequency (Hz, sorted ascending).
Gain = Callable[[np.ndarray], np.ndarray]


def shaped_noises(
    n: int, sfreq: float, gains: Sequence[Gain], rng: np.random.Generator
) -> Iterator[np.ndarray]:
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


def shaped_noise(n: int, sfreq: float, gain_of_freq: Gain, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise filtered in the frequency domain by ``gain_of_freq(f)``, unit RMS."""
    return next(shaped_noises(n, sfreq, [gain_of_freq], rng))


def band_gain(lo: float, hi: float, edge: float) -> Gain:
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


def peak_gain(f0: float, width: float) -> Gain:
    """Gaussian spectral peak at ``f0`` Hz (SD ``width`` Hz), zero beyond 5 SD."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        i0, i1 = np.searchsorted(f, [f0 - 5 * width, f0 + 5 * width])
        g[i0:i1] = np.exp(-0.5 * ((f[i0:i1] - f0) / width) ** 2)
        return g

    return gain


def pink_gain(high_pass: float, exponent: float = 1.0) -> Gain:
    """Power-law gain: power ~ 1 / f^``exponent``, with a smooth high-pass at ``high_pass`` Hz."""

    # Amplitude ~ f^(-exponent/2) gives power ~ 1/f^exponent; the high-pass removes the DC drift.
    def gain(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        g[1:] = f[1:] ** (-exponent / 2)
        return g * (1.0 - np.exp(-((f / high_pass) ** 2)))

    return gain


def epoch_envelope(per_epoch: np.ndarray, epoch_samples: int, n: int, smooth_samples: int) -> np.ndarray:
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


def stage_indices(stages: np.ndarray) -> np.ndarray:
    """Stage values as int64 indices into the stage tables (unknown codes become UNSCORED)."""
    s = np.asarray(stages, dtype=np.int64)
    return np.where((s >= 0) & (s < len(SleepStage)), s, int(SleepStage.UNSCORED))
