"""Heartbeat (R-peak) detection in single-lead ECG.

The detector belongs to the Pan–Tompkins family (Pan & Tompkins 1985, IEEE TBME 32(3):230–236):

1. block means bring the signal to 100–200 Hz (the QRS band lies far below; every later pass gets cheaper);
2. zero-phase Butterworth band-pass (default 5–20 Hz) to remove baseline wander, mains and muscle noise;
3. feature: the RMS of the derivative over a centred 150 ms window (the square root of Pan & Tompkins'
   integrated squared slope, which keeps wide ectopic complexes closer to normal ones), independent of
   the QRS polarity;
4. candidate peaks of the feature, the largest within ±100 ms;
5. adaptive signal/noise levels with a threshold between them, a refractory period (200 ms), a T-wave
   test for candidates closer than 360 ms to the previous beat (slope below half the previous beat's),
   replacement of a beat by a much stronger or better-timed candidate right after it (P wave or artefact
   ahead of the QRS), and a search-back with half the threshold when no beat was found for 1.66 times the
   running RR interval;
6. refinement of each beat to the largest deflection of the band-passed signal in the record's dominant
   polarity, then to the extreme of the full-rate signal.

Stretches that carry no usable ECG (flat lines, lead-off constants, NaN, saturated or very noisy
segments) are found first, masked (no beats are reported inside them and they do not update the
thresholds) and returned by :func:`detect_heartbeats_with_quality` as a list of sample intervals.

The steps are the numba kernels of :mod:`kdsleep.data.heartbeat_kernels`; the quality mask is
:func:`kdsleep.data.ecg_quality.ecg_quality_mask`. Detections are scored against expert annotations by
:func:`kdsleep.evaluation.beats.match_beats`, on records read by :func:`kdsleep.data.readers.read_annotated_ecg`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from kdsleep.data.ecg_quality import ecg_quality_mask, mask_intervals
from kdsleep.data.heartbeat_kernels import (
    block_levels,
    block_mean,
    candidate_peaks,
    masked_gaps_after,
    peak_slopes,
    peakless_windows,
    qrs_bandpass,
    refine_full_rate,
    refine_peaks,
    slope_feature,
    threshold_peaks,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_SFREQ",
    "HeartbeatDetection",
    "detect_heartbeats",
    "detect_heartbeats_with_quality",
]

#: Lowest sampling rate in Hz that the detector accepts (the QRS band reaches about 40 Hz); callers with a
#: slower ECG upsample it for detection.
MIN_SFREQ = 100.0
_DETECTION_RATE = 150.0
_NOISE_WINDOW = 5.0  # seconds; long enough to hold a beat even at 30 bpm with a pause


@dataclass(frozen=True)
class HeartbeatDetection:
    """Result of :func:`detect_heartbeats_with_quality`.

    Attributes
    ----------
    beats : np.ndarray
        R-peak sample indices, int64, strictly increasing.
    masked_intervals : np.ndarray
        ``(n_intervals, 2)`` int64 array of ``[start, stop)`` sample ranges that were judged to hold no
        usable ECG (flat, missing, saturated or too noisy); no beats are reported inside them.
    sfreq : float
        Sampling frequency of the ECG in Hz.
    """

    beats: np.ndarray
    masked_intervals: np.ndarray
    sfreq: float

    @property
    def masked_seconds(self) -> float:
        """Total duration of the masked intervals in seconds."""
        if self.masked_intervals.size == 0:
            return 0.0
        return float(np.sum(self.masked_intervals[:, 1] - self.masked_intervals[:, 0])) / self.sfreq


def _check_input(ecg: np.ndarray, sfreq: float) -> tuple[np.ndarray, float]:
    ecg = np.asarray(ecg)
    if ecg.ndim != 1:
        raise ValueError(f"ecg: expected a 1-D single-lead signal, got an array of shape {ecg.shape}")
    if not np.issubdtype(ecg.dtype, np.number) or np.iscomplexobj(ecg):
        raise ValueError(f"ecg: expected real numbers, got dtype {ecg.dtype}")
    try:
        sfreq = float(sfreq)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sfreq: expected a number of Hz, got {sfreq!r}") from err
    if not np.isfinite(sfreq) or sfreq < MIN_SFREQ:
        raise ValueError(f"sfreq: expected a sampling frequency >= {MIN_SFREQ:g} Hz, got {sfreq!r}")
    return ecg.astype(np.float64, copy=False), sfreq


def detect_heartbeats_with_quality(
    ecg: np.ndarray,
    sfreq: float,
    *,
    band: tuple[float, float] = (5.0, 20.0),
    integration_window: float = 0.15,
    refractory: float = 0.2,
    twave_window: float = 0.36,
    searchback_factor: float = 1.66,
    threshold_fraction: float = 0.25,
    searchback_fraction: float = 0.5,
    searchback_min: float = 0.3,
    quality_window: float = 2.0,
    noise_ratio: float = 2.2,
) -> HeartbeatDetection:
    """Detect R peaks and report the stretches that were masked as unusable.

    Parameters
    ----------
    ecg : np.ndarray
        Single-lead ECG, shape ``(n_times,)``; any unit and either polarity. NaN marks missing samples.
    sfreq : float
        Sampling frequency in Hz, at least 100.
    band : tuple of float
        Pass band of the zero-phase second-order Butterworth filter in Hz (Pan & Tompkins 1985 pass
        5–15 Hz); the upper edge is lowered to 0.45 ``sfreq`` when needed.
    integration_window : float
        Width of the moving-window integration in seconds (150 ms in Pan & Tompkins 1985).
    refractory : float
        Minimum distance between two beats in seconds (200 ms in Pan & Tompkins 1985).
    twave_window : float
        Candidates closer than this to the previous beat (seconds) must be at least half as steep as
        that beat, otherwise they are taken for T waves (360 ms in Pan & Tompkins 1985).
    searchback_factor : float
        Search back for a missed beat when no beat was found for this multiple of the mean of the last
        eight RR intervals (1.66 in Pan & Tompkins 1985).
    threshold_fraction : float
        Detection threshold as the fraction of the way from the noise level to the signal level
        (0.25 in Pan & Tompkins 1985).
    searchback_fraction : float
        Threshold of the search-back as a fraction of the detection threshold (0.5 in Pan & Tompkins
        1985).
    searchback_min : float
        A beat found by search-back must also reach this fraction of the running signal level, so that
        noise in a long pause is not taken for a beat.
    quality_window : float
        Length in seconds of the windows judged for signal quality (flat, missing, saturated, noisy).
    noise_ratio : float
        A 5-s window whose feature maximum stands less than this many times above its median holds no QRS
        complex, only noise, and is masked; so is a window below ``noise_ratio + 0.4`` next to one. White
        noise gives about 1.9 and clean ECG 5 to 18 (2.4 at the lowest on the MIT-BIH records here).
        0 turns the test off.

    Returns
    -------
    HeartbeatDetection
        Beat sample indices and the masked intervals.

    Notes
    -----
    The feature signal is the root of the integrated squared derivative (an RMS slope) rather than the
    integrated squared derivative itself: the square root compresses the range between sharp normal
    complexes and wide ventricular or aberrated ones, which the squared feature pushed below the threshold.

    Detection runs on block means of ``sfreq // 150`` samples (100–200 Hz); the beats are then placed on
    the full-rate signal. Accuracy on the MIT-BIH, noise stress test, svdb and LUDB records and the speed
    against sleepecg are in ``docs/results/heartbeat_detector.md``.
    """
    ecg, sfreq = _check_input(ecg, sfreq)
    n = ecg.shape[0]
    no_beats = np.zeros(0, dtype=np.int64)
    if n < int(sfreq):  # less than a second cannot hold an RR interval
        intervals = np.array([[0, n]], dtype=np.int64) if n else np.zeros((0, 2), dtype=np.int64)
        return HeartbeatDetection(no_beats, intervals, sfreq)
    low, high = band
    if not 0 < low < high:
        raise ValueError(f"band: expected 0 < low < high in Hz, got {band!r}")

    # Detection runs at 100-200 Hz: the QRS band lies below 40 Hz, and block means of `factor` samples
    # (first zero at the new sampling rate, 3 % loss at 20 Hz for 360 -> 120 Hz) make every later pass
    # `factor` times cheaper. Beats are placed on the full-rate signal at the end.
    factor = max(1, int(sfreq // _DETECTION_RATE))
    x = block_mean(ecg, factor) if factor > 1 else ecg
    rate = sfreq / factor
    high = min(high, 0.45 * rate)

    all_finite = bool(np.isfinite(x).all())
    clean = x if all_finite else np.where(np.isfinite(x), x, 0.0)
    filtered = qrs_bandpass(clean, rate, low, high)

    mask = ecg_quality_mask(x, filtered, rate, quality_window)
    if mask.all():
        return HeartbeatDetection(no_beats, np.array([[0, n]], dtype=np.int64), sfreq)
    if mask.any():
        filtered[mask] = 0.0

    width = max(1, int(round(integration_window * rate)))
    energy = slope_feature(filtered, rate, width)
    if noise_ratio > 0:
        # noise-only stretches (electrodes off but picking up noise, ventricular flutter, heavy motion):
        # the feature shows no peaks standing out of its median
        win = max(1, int(round(_NOISE_WINDOW * rate)))
        noisy = peakless_windows(energy, mask, win, noise_ratio**2, (noise_ratio + 0.4) ** 2)
        if noisy.any():
            noisy_samples = np.repeat(noisy, win)[: mask.size]
            mask |= noisy_samples
            filtered[noisy_samples] = 0.0
    has_mask = bool(mask.any())
    intervals = np.zeros((0, 2), dtype=np.int64)
    if has_mask:
        intervals = np.minimum(mask_intervals(mask) * factor, n)
        logger.info(
            "detect_heartbeats: masked %d stretch(es), %.1f s of %.1f s (flat, missing, saturated or noisy)",
            intervals.shape[0],
            float(np.sum(intervals[:, 1] - intervals[:, 0])) / sfreq,
            n / sfreq,
        )
        if mask.all():
            return HeartbeatDetection(no_beats, intervals, sfreq)

    refractory_n = int(round(refractory * rate))
    peaks = candidate_peaks(energy, mask, refractory_n // 2)
    if peaks.size == 0:
        return HeartbeatDetection(no_beats, intervals, sfreq)
    values = np.sqrt(energy[peaks])
    half_qrs = max(1, int(round(0.075 * rate)))
    slopes = peak_slopes(filtered, peaks, half_qrs)
    gap_after = masked_gaps_after(mask, peaks) if has_mask else np.zeros(peaks.size, dtype=bool)

    # initial levels from the whole record, so that the first seconds need no separate learning phase:
    # the signal level from a low quantile of the per-2-s maxima (robust to artefacts in many windows),
    # the noise level from the median of the per-2-s medians
    block_max, block_median = block_levels(energy, mask, max(1, int(round(2.0 * rate))))
    block_max = np.sqrt(block_max)
    block_median = np.sqrt(block_median)
    signal_level0 = float(np.percentile(block_max, 25)) if block_max.size else float(values.max())
    noise_level0 = float(np.median(block_median)) if block_median.size else 0.0

    is_beat = threshold_peaks(
        peaks,
        values,
        slopes,
        gap_after,
        signal_level0,
        noise_level0,
        refractory_n,
        int(round(twave_window * rate)),
        float(searchback_factor),
        float(0.8 * rate),
        float(3.0 * rate),
        float(threshold_fraction),
        float(searchback_fraction),
        float(searchback_min),
        3.0 * rate,
    )
    beats = peaks[is_beat]
    polarity = _dominant_polarity(filtered, beats, half_qrs)
    beats = refine_peaks(filtered, beats, half_qrs, polarity)
    if has_mask:
        beats = beats[~mask[beats]]
    if factor > 1:
        # back to the full rate: the extreme of the raw signal (less its local mean) near each beat
        beats = refine_full_rate(
            ecg,
            beats * factor + factor // 2,
            factor + int(round(0.01 * sfreq)),
            int(round(0.1 * sfreq)),
            polarity,
        )
    beats = np.unique(beats)
    # the refinement may move two detections onto one QRS: keep one per half refractory period
    if beats.size > 1:
        keep = np.concatenate([[True], np.diff(beats) > int(round(refractory * sfreq)) // 2])
        beats = beats[keep]
    return HeartbeatDetection(beats.astype(np.int64), intervals, sfreq)


def _dominant_polarity(filtered: np.ndarray, beats: np.ndarray, half_width: int) -> float:
    """+1 or -1 when most QRS complexes peak in that direction, 0 (use |x|) when it is mixed."""
    if beats.size < 5:
        return 0.0
    idx = refine_peaks(filtered, beats, half_width, 0.0)
    signs = np.sign(filtered[idx])
    share = float(np.mean(signs > 0))
    if share >= 0.8:
        return 1.0
    if share <= 0.2:
        return -1.0
    return 0.0


def detect_heartbeats(ecg: np.ndarray, sfreq: float) -> np.ndarray:
    """Detect heartbeats (R peaks) in a single-lead ECG.

    Parameters
    ----------
    ecg : np.ndarray
        Single-lead ECG, shape ``(n_times,)``; any unit and either polarity. NaN marks missing samples.
    sfreq : float
        Sampling frequency in Hz, at least 100.

    Returns
    -------
    np.ndarray
        Sorted int64 sample indices of the detected R peaks. Flat, missing, saturated or very noisy
        stretches hold no beats; they are logged and returned by :func:`detect_heartbeats_with_quality`.
    """
    return detect_heartbeats_with_quality(ecg, sfreq).beats
