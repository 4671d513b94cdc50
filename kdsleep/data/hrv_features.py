"""Heart-rate-variability features per 30-s epoch, with context: the classical ECG sleep-staging input.

For each epoch the features describe the normal-to-normal (NN) intervals in windows of several lengths
centred on the epoch (time domain, Task Force of the ESC/NASPE 1996), the spectrum of the heart rate in a
5-minute window (LF 0.04-0.15 Hz, HF 0.15-0.4 Hz), the change of the heart rate against the neighbouring
epochs, and the time of night. Physiological features are then normalised per recording (median and
inter-quartile range), so that a subject's resting heart rate and overall variability do not decide the
stage. The feature set follows the spirit of sleepecg's (heart-rate variability in several windows around
each epoch, per-recording scaling); the code and the exact choice of windows are this package's own.

Intervals come from :func:`kdsleep.data.heart_rate.rr_intervals` (0.3-2.0 s, within 30 % of the local
median), so the classical baseline and the deep student read the same cleaned beats. Windows without at
least two valid intervals give NaN, which the gradient-boosted classifier handles natively.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kdsleep.data.heart_rate import heart_rate_signal, rr_intervals

__all__ = [
    "HRVSettings",
    "epoch_hrv_features",
    "normalise_per_recording",
    "recording_features",
]

#: Frequency bands of the heart-rate spectrum in Hz (Task Force 1996).
LF_BAND = (0.04, 0.15)
HF_BAND = (0.15, 0.40)


@dataclass(frozen=True)
class HRVSettings:
    """Windows of the HRV features.

    Attributes
    ----------
    windows : tuple of float
        Lengths in seconds of the windows centred on each epoch in which the time-domain features are
        computed (1, 5 and 10 minutes).
    spectral_window : float
        Length in seconds of the window of the LF / HF powers (5 minutes, the Task Force's short-term
        recording).
    spectrum_sfreq : float
        Rate in Hz of the evenly resampled heart rate whose spectrum is taken (4 Hz).
    context_lags : tuple of int
        Neighbouring epochs whose 1-minute mean heart rate, relative to the epoch's own, is a feature.
    """

    windows: tuple[float, ...] = (60.0, 300.0, 600.0)
    spectral_window: float = 300.0
    spectrum_sfreq: float = 4.0
    context_lags: tuple[int, ...] = (-4, -2, -1, 1, 2, 4)


def _window_sums(times: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of ``values`` whose ``times`` lie in ``[lo, hi)``, for every pair of bounds (cumulative sums)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    start = np.searchsorted(times, lo, side="left")
    stop = np.searchsorted(times, hi, side="left")
    return cumulative[stop] - cumulative[start]


def _time_domain(
    beat_times: np.ndarray, centres: np.ndarray, window: float, rr, min_intervals: int = 2
) -> dict[str, np.ndarray]:
    """Mean heart rate, SDNN, RMSSD and pNN50 of the valid intervals ending within ``window`` of each centre."""
    ends = beat_times[1:]  # an interval belongs to the time of the beat that closes it
    valid = rr.valid.astype(np.float64)
    rr_s = np.where(rr.valid, rr.rr, 0.0)
    lo, hi = centres - window / 2, centres + window / 2
    n = _window_sums(ends, valid, lo, hi)
    sum_rr = _window_sums(ends, rr_s, lo, hi)
    sum_rr2 = _window_sums(ends, rr_s**2, lo, hi)
    sum_hr = _window_sums(ends, np.where(rr.valid, 60.0 / np.where(rr.valid, rr.rr, 1.0), 0.0), lo, hi)
    # successive differences only between two adjacent valid intervals
    pair = rr.valid[1:] & rr.valid[:-1]
    diff = np.where(pair, np.diff(rr.rr), 0.0)
    n_diff = _window_sums(ends[1:], pair.astype(np.float64), lo, hi)
    sum_diff2 = _window_sums(ends[1:], diff**2, lo, hi)
    n_nn50 = _window_sums(ends[1:], (pair & (np.abs(diff) > 0.050)).astype(np.float64), lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        enough = n >= min_intervals
        mean_rr = np.where(enough, sum_rr / n, np.nan)
        variance = np.where(enough, (sum_rr2 - n * mean_rr**2) / np.maximum(n - 1, 1), np.nan)
        sdnn = 1000.0 * np.sqrt(np.clip(variance, 0.0, None))
        has_diff = n_diff >= 1
        rmssd = np.where(has_diff, 1000.0 * np.sqrt(sum_diff2 / np.maximum(n_diff, 1)), np.nan)
        pnn50 = np.where(has_diff, 100.0 * n_nn50 / np.maximum(n_diff, 1), np.nan)
        mean_hr = np.where(enough, sum_hr / np.maximum(n, 1), np.nan)
    return {"mean_hr": mean_hr, "sdnn": sdnn, "rmssd": rmssd, "pnn50": pnn50}


def _spectral(
    beat_times: np.ndarray, rr, centres: np.ndarray, settings: HRVSettings, duration: float
) -> dict[str, np.ndarray]:
    """LF and HF power (bpm², log10), their ratio and the normalised HF of a window around each centre."""
    fs = settings.spectrum_sfreq
    n_total = int(np.ceil(duration * fs))
    signal = heart_rate_signal(rr, fs, n_total, interpolation="linear", fill_value=np.nan)
    values, mask = signal.values, signal.mask
    n_centres = centres.size
    nan = np.full(n_centres, np.nan)
    if mask.sum() < 2:
        return {"log_lf": nan, "log_hf": nan, "lf_hf": nan, "hf_nu": nan}
    # gaps take the recording's median: after detrending they add no power
    filled = np.where(mask, values, np.median(values[mask]))
    length = int(round(settings.spectral_window * fs))
    half = length // 2
    padded = np.concatenate([np.full(half, np.nan), filled, np.full(length, np.nan)])
    coverage_padded = np.concatenate([np.zeros(half), mask.astype(np.float64), np.zeros(length)])
    starts = np.clip(np.round(centres * fs).astype(np.int64), 0, n_total)  # index of centre - half in padded
    index = starts[:, None] + np.arange(length)[None, :]
    segments = padded[index]
    coverage = coverage_padded[index].mean(axis=1)
    # edges of the night: fill with each segment's own mean, then remove a straight-line trend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN segments: coverage 0, masked below
        row_mean = np.nanmean(segments, axis=1, keepdims=True)
    segments = np.where(np.isnan(segments), np.nan_to_num(row_mean), segments)
    t = np.arange(length, dtype=np.float64)
    t_centred = t - t.mean()
    slope = (segments - segments.mean(axis=1, keepdims=True)) @ t_centred / (t_centred @ t_centred)
    segments = segments - segments.mean(axis=1, keepdims=True) - slope[:, None] * t_centred[None, :]
    taper = np.hanning(length)
    spectrum = np.abs(np.fft.rfft(segments * taper, axis=1)) ** 2 / (fs * (taper**2).sum())
    spectrum[:, 1:] *= 2.0  # one-sided density
    freqs = np.fft.rfftfreq(length, 1.0 / fs)
    df = freqs[1] - freqs[0]
    lf = spectrum[:, (freqs >= LF_BAND[0]) & (freqs < LF_BAND[1])].sum(axis=1) * df
    hf = spectrum[:, (freqs >= HF_BAND[0]) & (freqs < HF_BAND[1])].sum(axis=1) * df
    reliable = coverage >= 0.5  # at least half the window holds valid intervals
    tiny = 1e-6
    return {
        "log_lf": np.where(reliable, np.log10(lf + tiny), np.nan),
        "log_hf": np.where(reliable, np.log10(hf + tiny), np.nan),
        "lf_hf": np.where(reliable, np.log10((lf + tiny) / (hf + tiny)), np.nan),
        "hf_nu": np.where(reliable, hf / (lf + hf + tiny), np.nan),
    }


def epoch_hrv_features(
    beat_times: np.ndarray,
    n_epochs: int,
    *,
    epoch_length: float = 30.0,
    onset: float = 0.0,
    settings: HRVSettings | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Raw (not normalised) HRV features of every epoch of one recording.

    Parameters
    ----------
    beat_times : np.ndarray
        Beat (R-peak) times in seconds, strictly increasing.
    n_epochs : int
        Number of epochs; epoch ``e`` covers ``onset + e * epoch_length`` to ``onset + (e + 1) * epoch_length``.
    epoch_length : float
        Epoch length in seconds (30).
    onset : float
        Start of the first epoch in seconds on the clock of ``beat_times``.
    settings : HRVSettings, optional
        Windows; default :class:`HRVSettings`.

    Returns
    -------
    features : np.ndarray
        float64, shape ``(n_epochs, n_features)``; NaN where a window holds too few valid intervals.
    names : list of str
        Name of each column, e.g. ``"rmssd_300s"`` (ms), ``"mean_hr_60s"`` (bpm), ``"log_hf"``,
        ``"d_mean_hr_lag-1"`` (bpm, neighbour minus own), ``"epoch_mean_hr"``.
    """
    settings = settings or HRVSettings()
    if int(n_epochs) != n_epochs or n_epochs < 1:
        raise ValueError(f"n_epochs: expected a positive number of epochs, got {n_epochs!r}")
    n_epochs = int(n_epochs)
    rr = rr_intervals(beat_times)
    times = rr.beat_times
    centres = onset + (np.arange(n_epochs) + 0.5) * epoch_length
    columns: dict[str, np.ndarray] = {}
    own = _time_domain(times, centres, epoch_length, rr)
    columns["epoch_mean_hr"] = own["mean_hr"]
    columns["epoch_sdnn"] = own["sdnn"]
    for window in settings.windows:
        for name, values in _time_domain(times, centres, window, rr).items():
            columns[f"{name}_{window:g}s"] = values
    duration = max(float(times[-1]) if times.size else 0.0, onset + n_epochs * epoch_length) + 1.0
    columns.update(_spectral(times, rr, centres, settings, duration))
    reference = columns[f"mean_hr_{settings.windows[0]:g}s"]
    for lag in settings.context_lags:
        shifted = np.full(n_epochs, np.nan)
        if lag > 0:
            shifted[:-lag] = reference[lag:]
        else:
            shifted[-lag:] = reference[: n_epochs + lag]
        columns[f"d_mean_hr_lag{lag:+d}"] = shifted - reference
    # the local level against the 10-minute level: arousals and REM raise it, deep sleep lowers it
    longest = columns[f"mean_hr_{settings.windows[-1]:g}s"]
    columns["mean_hr_vs_long"] = reference - longest
    names = list(columns)
    return np.column_stack([columns[n] for n in names]), names


def normalise_per_recording(features: np.ndarray) -> np.ndarray:
    """Centre every column on its median over the recording and divide by its inter-quartile range.

    NaNs are ignored in the statistics and kept; a column with no spread is only centred.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features: expected a 2-D (n_epochs, n_features) array, got shape {x.shape}")
    out = np.full_like(x, np.nan)
    for j in range(x.shape[1]):
        column = x[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        median = np.median(column[finite])
        q1, q3 = np.percentile(column[finite], [25.0, 75.0])
        spread = q3 - q1
        out[:, j] = (column - median) / (spread if spread > 0 else 1.0)
    return out


def recording_features(
    beat_times: np.ndarray,
    n_epochs: int,
    *,
    epoch_length: float = 30.0,
    onset: float = 0.0,
    settings: HRVSettings | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The classifier's input for one recording: normalised HRV features plus the time of night.

    Parameters
    ----------
    beat_times, n_epochs, epoch_length, onset, settings
        As for :func:`epoch_hrv_features`.

    Returns
    -------
    features : np.ndarray
        float32, shape ``(n_epochs, n_features)``: every HRV feature normalised per recording
        (:func:`normalise_per_recording`, names prefixed ``z_``), the absolute 5-minute mean heart rate
        (bpm), and the hours since the first epoch and the fraction of the recording elapsed.
    names : list of str
    """
    raw, names = epoch_hrv_features(
        beat_times, n_epochs, epoch_length=epoch_length, onset=onset, settings=settings
    )
    normalised = normalise_per_recording(raw)
    elapsed = (np.arange(n_epochs) + 0.5) * epoch_length
    keep_raw = names.index("mean_hr_300s") if "mean_hr_300s" in names else 0
    columns = [
        normalised,
        raw[:, keep_raw : keep_raw + 1],
        (elapsed / 3600.0)[:, None],
        (elapsed / (n_epochs * epoch_length))[:, None],
    ]
    all_names = [f"z_{n}" for n in names] + [names[keep_raw], "hours_elapsed", "fraction_elapsed"]
    return np.hstack(columns).astype(np.float32), all_names
