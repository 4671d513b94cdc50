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

Detections are scored against expert annotations by :func:`kdsleep.evaluation.beats.match_beats`, on records
read by :func:`kdsleep.data.readers.read_annotated_ecg`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numba
import numpy as np

from kdsleep.data.filters import design_bandpass, sosfiltfilt

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


# ---------------------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _bandpass_design(sfreq: float, low: float, high: float) -> np.ndarray:
    """Second-order sections of the detector's band-pass; cached because designing takes a few
    milliseconds, a fifth of the whole detection on a 30-min record."""
    return design_bandpass(sfreq, low, high, order=2)


def _bandpass(x: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Zero-phase second-order Butterworth band-pass (the package's numba ``sosfiltfilt``)."""
    return sosfiltfilt(_bandpass_design(float(sfreq), float(low), float(high)), x)


@numba.njit(cache=True, nogil=True)
def _candidate_peaks(feature: np.ndarray, mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Local maxima of ``feature`` that are the largest within ``±min_distance`` samples, outside the mask."""
    n = feature.shape[0]
    maxima = np.empty(n // 2 + 1, dtype=np.int64)
    n_max = 0
    i = 1
    while i < n:
        if feature[i] > feature[i - 1]:
            # walk over a plateau so that a flat top yields one maximum (its middle)
            j = i
            while j < n - 1 and feature[j + 1] == feature[i]:
                j += 1
            # a QRS cut by the end of the signal still counts when the feature rises into the end
            if j == n - 1 or feature[j + 1] < feature[i]:
                mid = (i + j) // 2
                if not mask[mid]:
                    maxima[n_max] = mid
                    n_max += 1
            i = j + 1
        else:
            i += 1
    keep = np.empty(n_max, dtype=np.int64)
    n_keep = 0
    for k in range(n_max):
        p = maxima[k]
        v = feature[p]
        ok = True
        m = k - 1
        while m >= 0 and p - maxima[m] <= min_distance:
            if feature[maxima[m]] >= v:
                ok = False
                break
            m -= 1
        if ok:
            m = k + 1
            while m < n_max and maxima[m] - p <= min_distance:
                if feature[maxima[m]] > v:
                    ok = False
                    break
                m += 1
        if ok:
            keep[n_keep] = p
            n_keep += 1
    return keep[:n_keep]


@numba.njit(cache=True, nogil=True)
def _threshold_peaks(
    peaks: np.ndarray,
    values: np.ndarray,
    slopes: np.ndarray,
    gap_after: np.ndarray,
    signal_level0: float,
    noise_level0: float,
    refractory: int,
    twave_window: int,
    searchback_factor: float,
    rr_init: float,
    rr_max: float,
    threshold_fraction: float,
    searchback_fraction: float,
    searchback_min: float,
    decay_half_life: float,
) -> np.ndarray:
    """Adaptive-threshold classification of candidate peaks into beats and noise (Pan–Tompkins rules).

    ``gap_after[k]`` is True when a masked stretch lies between candidate ``k`` and ``k + 1``: the running
    RR history restarts there so that the search-back does not bridge a masked stretch.
    """
    n_peaks = peaks.shape[0]
    is_beat = np.zeros(n_peaks, dtype=np.bool_)
    signal_level = signal_level0
    noise_level = noise_level0
    threshold = noise_level + threshold_fraction * (signal_level - noise_level)

    rr_hist = np.full(8, rr_init)
    rr_count = 0
    last_beat = -1  # index into peaks of the last accepted beat, -1 before the first beat of a segment
    # position the search-back measures from: the last beat, or the start of the segment before the first
    last_pos = peaks[0] - int(rr_init) if n_peaks else 0
    last_slope = 0.0
    first = 0  # first candidate that the search-back may look at
    # a candidate this close to the last beat may replace it (P wave or artefact ahead of the QRS)
    replace_window = refractory + (twave_window - refractory) // 2

    prev_pos = -1  # position of the beat before the last one
    rr_mean = rr_init
    for k in range(n_peaks):
        p = peaks[k]
        v = values[k]
        accepted = False
        replace = False
        if v > threshold:
            if last_beat < 0:
                accepted = True
            else:
                dist = p - peaks[last_beat]
                if dist < replace_window and v > 1.4 * values[last_beat] and slopes[k] > 1.5 * last_slope:
                    # far stronger than the beat just taken: that one was a P wave or an artefact
                    accepted = True
                    replace = True
                elif (
                    dist < replace_window
                    and prev_pos >= 0
                    and v > 0.8 * values[last_beat]
                    and abs(p - prev_pos - rr_mean) < abs(peaks[last_beat] - prev_pos - rr_mean)
                    and peaks[last_beat] - prev_pos < 0.85 * rr_mean
                ):
                    # as strong and on time, whereas the beat just taken came early: that one was a
                    # P wave or an artefact ahead of this QRS
                    accepted = True
                    replace = True
                elif dist <= refractory:
                    accepted = False
                elif dist < twave_window and slopes[k] < 0.5 * last_slope:
                    accepted = False  # T wave: slower than the preceding QRS
                else:
                    accepted = True
        if accepted:
            if replace:
                is_beat[last_beat] = False
            elif last_beat >= 0:
                prev_pos = peaks[last_beat]
                rr = float(p - peaks[last_beat])
                if rr < rr_max:
                    rr_hist[rr_count % 8] = rr
                    rr_count += 1
            is_beat[k] = True
            last_beat = k
            last_pos = p
            last_slope = slopes[k]
            first = k + 1
            # clip the update so that one artefact cannot lift the signal level for long
            signal_level = 0.125 * min(v, 4.0 * signal_level) + 0.875 * signal_level
        else:
            noise_level = 0.125 * min(v, signal_level) + 0.875 * noise_level
        threshold = noise_level + threshold_fraction * (signal_level - noise_level)

        if k + 1 >= n_peaks:
            break
        if gap_after[k]:
            # a masked stretch follows: restart the history behind it
            last_beat = -1
            prev_pos = -1
            rr_count = 0
            last_pos = peaks[k + 1] - int(rr_init)
            first = k + 1
            continue

        # search-back: the next candidate lies too far from the last beat, look for a missed one
        n_rr = min(rr_count, 8)
        rr_mean = rr_init
        if n_rr > 0:
            rr_mean = 0.0
            for m in range(n_rr):
                rr_mean += rr_hist[m]
            rr_mean /= n_rr
        limit = searchback_factor * rr_mean
        if peaks[k + 1] - last_pos > limit:
            lower = searchback_fraction * threshold
            for _ in range(8):
                best = -1
                best_value = max(lower, searchback_min * signal_level)
                for m in range(first, k + 1):
                    if is_beat[m]:
                        continue
                    if last_beat >= 0:
                        dist = peaks[m] - peaks[last_beat]
                        if dist <= refractory:
                            continue
                        if dist < twave_window and slopes[m] < 0.5 * last_slope:
                            continue
                    if values[m] > best_value:
                        best_value = values[m]
                        best = m
                if best < 0:
                    break
                is_beat[best] = True
                if last_beat >= 0:
                    prev_pos = peaks[last_beat]
                    rr = float(peaks[best] - peaks[last_beat])
                    if rr < rr_max:
                        rr_hist[rr_count % 8] = rr
                        rr_count += 1
                last_beat = best
                last_pos = peaks[best]
                last_slope = slopes[best]
                first = best + 1
                signal_level = 0.25 * min(values[best], 4.0 * signal_level) + 0.75 * signal_level
                threshold = noise_level + threshold_fraction * (signal_level - noise_level)
                lower = searchback_fraction * threshold
                if peaks[k + 1] - last_pos <= limit:
                    break
            # long pause with nothing above half the threshold: let the levels decay so that a drop of
            # amplitude (lead change, electrode contact) is followed within seconds
            if peaks[k + 1] - last_pos > 2.0 * limit:
                decay = 0.5 ** ((peaks[k + 1] - max(p, last_pos + 2.0 * limit)) / decay_half_life)
                signal_level *= decay
                noise_level *= decay
                threshold = noise_level + threshold_fraction * (signal_level - noise_level)
    return is_beat


@numba.njit(cache=True, nogil=True)
def _refine(x: np.ndarray, positions: np.ndarray, half_width: int, polarity: float) -> np.ndarray:
    """Move each position to the extreme of ``polarity * x`` within ``±half_width`` samples.

    ``polarity`` 0 means the largest absolute deflection.
    """
    n = x.shape[0]
    out = np.empty(positions.shape[0], dtype=np.int64)
    for k in range(positions.shape[0]):
        start = max(0, positions[k] - half_width)
        stop = min(n, positions[k] + half_width + 1)
        best = start
        best_value = -np.inf
        for i in range(start, stop):
            v = abs(x[i]) if polarity == 0.0 else polarity * x[i]
            if v > best_value:
                best_value = v
                best = i
        out[k] = best
    return out


# ---------------------------------------------------------------------------------------------------------
# signal quality
# ---------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _window_statistics(
    ecg: np.ndarray, filtered: np.ndarray, win: int, min_run: int, record_lo: float, record_hi: float
) -> tuple:
    """Per window of ``win`` samples (the last may be shorter): all finite, peak-to-peak of the raw
    signal, largest absolute band-passed value, and whether the window holds a run of at least
    ``min_run`` identical samples at the record's lowest or highest value (clipping at the rail)."""
    n = ecg.shape[0]
    n_win = (n + win - 1) // win
    finite = np.ones(n_win, dtype=np.bool_)
    spread = np.zeros(n_win)
    amplitude = np.zeros(n_win)
    saturated = np.zeros(n_win, dtype=np.bool_)
    for w in range(n_win):
        start = w * win
        stop = min(n, start + win)
        lo = np.inf
        hi = -np.inf
        amp = 0.0
        run = 1
        for i in range(start, stop):
            x = ecg[i]
            if x < lo:
                lo = x
            if x > hi:
                hi = x
            a = abs(filtered[i])
            if a > amp:
                amp = a
            if i > start and x == ecg[i - 1] and (x == record_lo or x == record_hi):
                run += 1
                if run >= min_run:
                    saturated[w] = True
            else:
                run = 1
        if not (np.isfinite(lo) and np.isfinite(hi)):
            finite[w] = False
        spread[w] = hi - lo if hi >= lo else 0.0
        amplitude[w] = amp
    return finite, spread, amplitude, saturated


def _quality_mask(ecg: np.ndarray, filtered: np.ndarray, sfreq: float, window_s: float) -> np.ndarray:
    """Boolean mask (True = unusable) built from non-overlapping windows of ``window_s`` seconds.

    A window is unusable when it holds NaN/inf, when its raw signal is constant or its QRS-band
    amplitude is below 2 % of the record's reference amplitude (the upper quartile of the window
    amplitudes: flat line, lead off), when it sits on the record's lowest or highest value for more
    than 100 ms (clipping), or when its QRS-band amplitude exceeds 25 times the reference (motion artefact,
    electrode pop).
    """
    n = ecg.shape[0]
    win = max(1, int(round(window_s * sfreq)))
    nonfinite = ~np.isfinite(ecg)
    has_nonfinite = bool(nonfinite.any())
    finite_values = ecg[~nonfinite] if has_nonfinite else ecg
    record_lo = float(finite_values.min()) if finite_values.size else 0.0
    record_hi = float(finite_values.max()) if finite_values.size else 0.0
    finite, spread, amplitude, saturated = _window_statistics(
        ecg, filtered, win, max(2, int(round(0.1 * sfreq))), record_lo, record_hi
    )
    if has_nonfinite:
        # a window with missing samples is dropped whole: the zero-filled gap would ring in the filter
        finite &= np.add.reduceat(nonfinite, np.arange(0, n, win)) == 0
    usable = finite & (spread > 0.0)
    # the upper quartile rather than the median: a night whose electrodes were off for most of the time
    # (low noise, not exactly constant) must not make its real ECG look like an artefact
    reference = float(np.percentile(amplitude[usable], 75)) if usable.any() else 0.0
    if reference <= 0.0 or not np.isfinite(reference):
        return np.ones(n, dtype=bool)
    bad = ~usable
    bad |= amplitude < 0.02 * reference
    bad |= amplitude > 25.0 * reference
    bad |= saturated
    tail = n % win
    if bad.size > 1 and 0 < tail < win // 2:
        # a few leftover samples are too few to judge: they share the verdict of the window before
        bad[-1] = bad[-2]
    return np.repeat(bad, win)[:n]


def _intervals(mask: np.ndarray) -> np.ndarray:
    """``[start, stop)`` sample ranges of the True runs of a boolean mask."""
    if mask.size == 0 or not mask.any():
        return np.zeros((0, 2), dtype=np.int64)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return np.stack([starts, stops], axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------


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
    x = _block_mean(ecg, factor) if factor > 1 else ecg
    rate = sfreq / factor
    high = min(high, 0.45 * rate)

    all_finite = bool(np.isfinite(x).all())
    clean = x if all_finite else np.where(np.isfinite(x), x, 0.0)
    filtered = _bandpass(clean, rate, low, high)

    mask = _quality_mask(x, filtered, rate, quality_window)
    if mask.all():
        return HeartbeatDetection(no_beats, np.array([[0, n]], dtype=np.int64), sfreq)
    if mask.any():
        filtered[mask] = 0.0

    width = max(1, int(round(integration_window * rate)))
    energy = _slope_feature(filtered, rate, width)
    if noise_ratio > 0:
        # noise-only stretches (electrodes off but picking up noise, ventricular flutter, heavy motion):
        # the feature shows no peaks standing out of its median
        win = max(1, int(round(_NOISE_WINDOW * rate)))
        noisy = _peakless_windows(energy, mask, win, noise_ratio**2, (noise_ratio + 0.4) ** 2)
        if noisy.any():
            noisy_samples = np.repeat(noisy, win)[: mask.size]
            mask |= noisy_samples
            filtered[noisy_samples] = 0.0
    has_mask = bool(mask.any())
    intervals = np.zeros((0, 2), dtype=np.int64)
    if has_mask:
        intervals = np.minimum(_intervals(mask) * factor, n)
        logger.info(
            "detect_heartbeats: masked %d stretch(es), %.1f s of %.1f s (flat, missing, saturated or noisy)",
            intervals.shape[0],
            float(np.sum(intervals[:, 1] - intervals[:, 0])) / sfreq,
            n / sfreq,
        )
        if mask.all():
            return HeartbeatDetection(no_beats, intervals, sfreq)

    refractory_n = int(round(refractory * rate))
    peaks = _candidate_peaks(energy, mask, refractory_n // 2)
    if peaks.size == 0:
        return HeartbeatDetection(no_beats, intervals, sfreq)
    values = np.sqrt(energy[peaks])
    half_qrs = max(1, int(round(0.075 * rate)))
    slopes = _slopes(filtered, peaks, half_qrs)
    gap_after = _gap_after(mask, peaks) if has_mask else np.zeros(peaks.size, dtype=bool)

    # initial levels from the whole record, so that the first seconds need no separate learning phase:
    # the signal level from a low quantile of the per-2-s maxima (robust to artefacts in many windows),
    # the noise level from the median of the per-2-s medians
    block_max, block_median = _block_levels(energy, mask, max(1, int(round(2.0 * rate))))
    block_max = np.sqrt(block_max)
    block_median = np.sqrt(block_median)
    signal_level0 = float(np.percentile(block_max, 25)) if block_max.size else float(values.max())
    noise_level0 = float(np.median(block_median)) if block_median.size else 0.0

    is_beat = _threshold_peaks(
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
    beats = _refine(filtered, beats, half_qrs, polarity)
    if has_mask:
        beats = beats[~mask[beats]]
    if factor > 1:
        # back to the full rate: the extreme of the raw signal (less its local mean) near each beat
        beats = _refine_full_rate(
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


@numba.njit(cache=True, nogil=True)
def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Means of consecutive blocks of ``factor`` samples (the last block may be shorter); NaN propagates."""
    n = x.shape[0]
    n_full = n // factor
    m = (n + factor - 1) // factor
    out = np.empty(m)
    inv = 1.0 / factor
    for k in range(n_full):
        acc = 0.0
        base = k * factor
        for i in range(factor):
            acc += x[base + i]
        out[k] = acc * inv
    if m > n_full:
        acc = 0.0
        for i in range(n_full * factor, n):
            acc += x[i]
        out[m - 1] = acc / (n - n_full * factor)
    return out


@numba.njit(cache=True, nogil=True)
def _refine_full_rate(
    ecg: np.ndarray, positions: np.ndarray, half_width: int, baseline_half_width: int, polarity: float
) -> np.ndarray:
    """Move each position to the extreme of ``polarity * (ecg - local mean)`` within ``±half_width``.

    The local mean over ``±baseline_half_width`` samples removes the baseline; ``polarity`` 0 takes the
    largest absolute deflection. Positions whose neighbourhood holds non-finite samples stay put.
    """
    n = ecg.shape[0]
    out = np.empty(positions.shape[0], dtype=np.int64)
    for k in range(positions.shape[0]):
        centre = min(max(positions[k], 0), n - 1)
        lo = max(0, centre - baseline_half_width)
        hi = min(n, centre + baseline_half_width + 1)
        acc = 0.0
        for i in range(lo, hi):
            acc += ecg[i]
        baseline = acc / (hi - lo)
        best = centre
        best_value = -np.inf
        for i in range(max(0, centre - half_width), min(n, centre + half_width + 1)):
            v = ecg[i] - baseline
            v = abs(v) if polarity == 0.0 else polarity * v
            if v > best_value:
                best_value = v
                best = i
        out[k] = best if np.isfinite(best_value) else centre
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _squared_slope(filtered: np.ndarray, i: int, sfreq: float) -> float:
    n = filtered.shape[0]
    if i == 0:
        d = (filtered[1] - filtered[0]) * sfreq
    elif i == n - 1:
        d = (filtered[n - 1] - filtered[n - 2]) * sfreq
    else:
        d = (filtered[i + 1] - filtered[i - 1]) * (0.5 * sfreq)
    return d * d


@numba.njit(cache=True, nogil=True)
def _slope_feature(filtered: np.ndarray, sfreq: float, width: int) -> np.ndarray:
    """Mean square of the derivative of ``filtered`` over a centred window of ``width`` samples.

    Its square root is the feature signal; local maxima and block quantiles do not change under the
    root, so it is taken only where values are needed. One pass: the squared slopes entering and
    leaving the window are recomputed rather than stored.
    """
    n = filtered.shape[0]
    out = np.empty(n)
    half_left = width // 2
    half_right = width - half_left - 1
    acc = 0.0
    for i in range(min(half_right, n)):
        acc += _squared_slope(filtered, i, sfreq)
    inv_width = 1.0 / width
    interior_start = min(half_left + 1, n)
    interior_stop = max(interior_start, n - half_right - 1)
    for i in range(interior_start):
        if i + half_right < n:
            acc += _squared_slope(filtered, i + half_right, sfreq)
        if i - half_left - 1 >= 0:
            acc -= _squared_slope(filtered, i - half_left - 1, sfreq)
        out[i] = acc / (min(n - 1, i + half_right) - max(0, i - half_left) + 1)
    half = 0.5 * sfreq
    for i in range(interior_start, interior_stop):
        # both indices lie strictly inside the signal here, so the central difference applies
        j = i + half_right
        k = i - half_left - 1
        d_in = (filtered[j + 1] - filtered[j - 1]) * half if k > 0 else 0.0
        if k == 0:
            acc += _squared_slope(filtered, j, sfreq) - _squared_slope(filtered, 0, sfreq)
        else:
            d_out = (filtered[k + 1] - filtered[k - 1]) * half
            acc += d_in * d_in - d_out * d_out
        out[i] = acc * inv_width
    for i in range(interior_stop, n):
        if i + half_right < n:
            acc += _squared_slope(filtered, i + half_right, sfreq)
        if i - half_left - 1 >= 0:
            acc -= _squared_slope(filtered, i - half_left - 1, sfreq)
        out[i] = acc / (min(n - 1, i + half_right) - max(0, i - half_left) + 1)
    for i in range(n):
        if out[i] < 0.0:  # rounding of the running sum
            out[i] = 0.0
    return out


@numba.njit(cache=True, nogil=True)
def _peakless_windows(energy: np.ndarray, mask: np.ndarray, win: int, low: float, high: float) -> np.ndarray:
    """Windows of ``win`` samples whose ``max / median`` of ``energy`` is below ``low``, or below ``high``
    next to such a window. Windows touching the mask, and a short last window, are not judged."""
    n = energy.shape[0]
    n_win = (n + win - 1) // win
    ratio = np.full(n_win, np.inf)
    for w in range(n // win):
        start = w * win
        skip = False
        for i in range(start, start + win):
            if mask[i]:
                skip = True
                break
        if skip:
            continue
        block = energy[start : start + win]
        median = np.median(block[::10])  # a strided subsample is enough for a median
        if median > 0.0:
            ratio[w] = block.max() / median
    out = np.zeros(n_win, dtype=np.bool_)
    for w in range(n_win):
        if ratio[w] < low:
            out[w] = True
        elif ratio[w] < high and ((w > 0 and ratio[w - 1] < low) or (w + 1 < n_win and ratio[w + 1] < low)):
            out[w] = True
    return out


@numba.njit(cache=True, nogil=True)
def _gap_after(mask: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """True for candidate ``k`` when a masked sample lies between it and candidate ``k + 1``."""
    out = np.zeros(peaks.shape[0], dtype=np.bool_)
    for k in range(peaks.shape[0] - 1):
        for i in range(peaks[k], peaks[k + 1]):
            if mask[i]:
                out[k] = True
                break
    return out


@numba.njit(cache=True, nogil=True)
def _block_levels(feature: np.ndarray, mask: np.ndarray, win: int) -> tuple:
    """Maximum and median of ``feature`` in consecutive unmasked blocks of ``win`` samples."""
    n_win = feature.shape[0] // win
    block_max = np.empty(max(n_win, 1))
    block_median = np.empty(max(n_win, 1))
    count = 0
    for w in range(n_win):
        start = w * win
        skip = False
        for i in range(start, start + win):
            if mask[i]:
                skip = True
                break
        if skip:
            continue
        block = feature[start : start + win]
        block_max[count] = block.max()
        # a strided subsample is enough for a starting value
        block_median[count] = np.median(block[::16])
        count += 1
    if count == 0 and feature.shape[0] > 0:
        block_max[0] = feature.max()
        block_median[0] = np.median(feature)
        count = 1
    return block_max[:count], block_median[:count]


@numba.njit(cache=True, nogil=True)
def _slopes(filtered: np.ndarray, peaks: np.ndarray, half_width: int) -> np.ndarray:
    """Steepest central-difference slope of ``filtered`` within ``±half_width`` samples of each peak."""
    n = filtered.shape[0]
    out = np.empty(peaks.shape[0], dtype=np.float64)
    for k in range(peaks.shape[0]):
        best = 0.0
        for i in range(max(1, peaks[k] - half_width), min(n - 1, peaks[k] + half_width + 1)):
            d = abs(filtered[i + 1] - filtered[i - 1])
            if d > best:
                best = d
        out[k] = best
    return out


def _dominant_polarity(filtered: np.ndarray, beats: np.ndarray, half_width: int) -> float:
    """+1 or -1 when most QRS complexes peak in that direction, 0 (use |x|) when it is mixed."""
    if beats.size < 5:
        return 0.0
    idx = _refine(filtered, beats, half_width, 0.0)
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
