"""Signal quality of a single-lead ECG: which stretches carry no usable ECG.

:func:`ecg_quality_mask` judges non-overlapping windows of the raw and band-passed signal (missing,
flat or lead-off, clipped at the rail, or far too large: motion artefact); the heartbeat detector
(:mod:`kdsleep.data.heartbeats`) masks them and reports them as sample intervals (:func:`mask_intervals`).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["ecg_quality_mask", "mask_intervals"]


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


def ecg_quality_mask(ecg: np.ndarray, filtered: np.ndarray, sfreq: float, window_s: float) -> np.ndarray:
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


def mask_intervals(mask: np.ndarray) -> np.ndarray:
    """``[start, stop)`` sample ranges of the True runs of a boolean mask."""
    if mask.size == 0 or not mask.any():
        return np.zeros((0, 2), dtype=np.int64)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return np.stack([starts, stops], axis=1).astype(np.int64)
