"""The numba kernels of the heartbeat detector (:mod:`kdsleep.data.heartbeats`).

Each kernel is one step of the detector on plain arrays: block means (:func:`block_mean`), the band-pass
(:func:`qrs_bandpass`), the RMS-slope feature (:func:`slope_feature`), candidate peaks
(:func:`candidate_peaks`), the adaptive thresholds with T-wave test and search-back
(:func:`threshold_peaks`), noise-only windows (:func:`peakless_windows`), and the placement of each beat
(:func:`refine_peaks`, :func:`refine_full_rate`). The order in which the detector calls them, and why, is
described in :mod:`kdsleep.data.heartbeats`.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from kdsleep.data.filters import design_bandpass, sosfiltfilt

__all__ = [
    "block_levels",
    "block_mean",
    "candidate_peaks",
    "masked_gaps_after",
    "peak_slopes",
    "peakless_windows",
    "qrs_bandpass",
    "refine_full_rate",
    "refine_peaks",
    "slope_feature",
    "threshold_peaks",
]


@functools.lru_cache(maxsize=32)
def _bandpass_design(sfreq: float, low: float, high: float) -> np.ndarray:
    """Second-order sections of the detector's band-pass; cached because designing takes a few
    milliseconds, a fifth of the whole detection on a 30-min record."""
    return design_bandpass(sfreq, low, high, order=2)


def qrs_bandpass(x: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Zero-phase second-order Butterworth band-pass (the package's numba ``sosfiltfilt``)."""
    return sosfiltfilt(_bandpass_design(float(sfreq), float(low), float(high)), x)


@numba.njit(cache=True, nogil=True)
def candidate_peaks(feature: np.ndarray, mask: np.ndarray, min_distance: int) -> np.ndarray:
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
def threshold_peaks(
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
def refine_peaks(x: np.ndarray, positions: np.ndarray, half_width: int, polarity: float) -> np.ndarray:
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


@numba.njit(cache=True, nogil=True)
def block_mean(x: np.ndarray, factor: int) -> np.ndarray:
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
def refine_full_rate(
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
def slope_feature(filtered: np.ndarray, sfreq: float, width: int) -> np.ndarray:
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
def peakless_windows(energy: np.ndarray, mask: np.ndarray, win: int, low: float, high: float) -> np.ndarray:
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
def masked_gaps_after(mask: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """True for candidate ``k`` when a masked sample lies between it and candidate ``k + 1``."""
    out = np.zeros(peaks.shape[0], dtype=np.bool_)
    for k in range(peaks.shape[0] - 1):
        for i in range(peaks[k], peaks[k + 1]):
            if mask[i]:
                out[k] = True
                break
    return out


@numba.njit(cache=True, nogil=True)
def block_levels(feature: np.ndarray, mask: np.ndarray, win: int) -> tuple:
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
def peak_slopes(filtered: np.ndarray, peaks: np.ndarray, half_width: int) -> np.ndarray:
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
