"""Heart rate from beat times: RR intervals, physiological outlier rejection, a regular time base.

The representation follows the usual HRV practice (Task Force of the ESC/NASPE 1996): normal-to-normal
intervals are kept, intervals outside a physiological range (default 0.3–2.0 s, i.e. 30–200 bpm) and
intervals that differ from their neighbourhood by more than a relative limit (ectopic beats, missed or
extra detections) are rejected, and the instantaneous heart rate ``60 / RR`` is resampled onto the
model's time base. Samples that fall into a rejected interval, before the first or after the last beat
are masked: they carry ``fill_value`` and ``False`` in the returned mask, so that a model can ignore
them instead of reading invented values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["RRIntervals", "HeartRateSignal", "heart_rate_channel", "rr_intervals", "heart_rate_signal"]


@dataclass(frozen=True)
class RRIntervals:
    """RR intervals between consecutive beats.

    Attributes
    ----------
    beat_times : np.ndarray
        Beat times in seconds, shape ``(n_beats,)``, increasing.
    rr : np.ndarray
        ``rr[j] = beat_times[j + 1] - beat_times[j]`` in seconds, shape ``(n_beats - 1,)``.
    valid : np.ndarray
        Boolean, shape ``(n_beats - 1,)``: the interval passed the physiological checks.
    """

    beat_times: np.ndarray
    rr: np.ndarray
    valid: np.ndarray

    @property
    def heart_rate(self) -> np.ndarray:
        """Instantaneous heart rate ``60 / rr`` in beats per minute (every interval, valid or not)."""
        return 60.0 / self.rr


@dataclass(frozen=True)
class HeartRateSignal:
    """Instantaneous heart rate on a regular time base.

    Attributes
    ----------
    values : np.ndarray
        Heart rate in beats per minute, shape ``(n_times,)``; ``fill_value`` where ``mask`` is False.
    mask : np.ndarray
        Boolean, shape ``(n_times,)``: True where the value comes from a valid RR interval.
    sfreq : float
        Sampling frequency of ``values`` in Hz.
    """

    values: np.ndarray
    mask: np.ndarray
    sfreq: float


def _as_beat_times(beat_times: np.ndarray) -> np.ndarray:
    times = np.asarray(beat_times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"beat_times: expected a 1-D array of seconds, got shape {times.shape}")
    if not np.isfinite(times).all():
        raise ValueError("beat_times: expected finite times in seconds, found NaN or inf")
    if times.size > 1 and np.any(np.diff(times) <= 0):
        raise ValueError("beat_times: expected strictly increasing times (sort and de-duplicate first)")
    return times


@numba.njit(cache=True)
def _relative_change_check(rr: np.ndarray, valid: np.ndarray, half_window: int, limit: float) -> np.ndarray:
    """Reject intervals deviating from the median of up to ``half_window`` valid neighbours on each side
    by more than ``limit`` (relative)."""
    n = rr.shape[0]
    out = valid.copy()
    buffer = np.empty(2 * half_window)
    for j in range(n):
        if not valid[j]:
            continue
        count = 0
        for m in range(max(0, j - half_window), min(n, j + half_window + 1)):
            if m != j and valid[m]:
                buffer[count] = rr[m]
                count += 1
        if count < 2:
            continue  # too little context to judge; the absolute range already applied
        reference = np.median(buffer[:count])
        if abs(rr[j] - reference) > limit * reference:
            out[j] = False
    return out


def rr_intervals(
    beat_times: np.ndarray,
    *,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
    max_relative_change: float = 0.3,
    context: int = 5,
) -> RRIntervals:
    """RR intervals with physiological outlier rejection.

    Parameters
    ----------
    beat_times : np.ndarray
        Beat (R-peak) times in seconds, strictly increasing.
    min_rr, max_rr : float
        Physiological range of an RR interval in seconds (0.3–2.0 s, i.e. 200–30 bpm).
    max_relative_change : float
        An interval is rejected when it differs from the median of its ``context`` valid neighbours on
        each side by more than this fraction (0.3 = 30 %; premature beats and missed detections make a
        short–long pair that this catches).
    context : int
        Number of neighbouring intervals on each side for the reference median.

    Returns
    -------
    RRIntervals
        The intervals and their validity.
    """
    times = _as_beat_times(beat_times)
    if not 0 < min_rr < max_rr:
        raise ValueError(f"min_rr, max_rr: expected 0 < min_rr < max_rr, got {min_rr!r}, {max_rr!r}")
    if max_relative_change <= 0:
        raise ValueError(f"max_relative_change: expected a positive fraction, got {max_relative_change!r}")
    if context < 1:
        raise ValueError(f"context: expected at least 1 neighbour, got {context!r}")
    rr = np.diff(times)
    valid = (rr >= min_rr) & (rr <= max_rr)
    if rr.size:
        valid = _relative_change_check(rr, valid, int(context), float(max_relative_change))
    return RRIntervals(beat_times=times, rr=rr, valid=valid)


@numba.njit(cache=True)
def _resample(
    beat_times: np.ndarray,
    heart_rate: np.ndarray,
    valid: np.ndarray,
    sample_times: np.ndarray,
    linear: bool,
    fill_value: float,
) -> tuple:
    """Heart rate at each sample time; the interval ``j`` covers ``(beat_times[j], beat_times[j + 1]]``."""
    n = sample_times.shape[0]
    values = np.full(n, fill_value)
    mask = np.zeros(n, dtype=np.bool_)
    n_rr = heart_rate.shape[0]
    j = 0
    for i in range(n):
        t = sample_times[i]
        while j < n_rr and beat_times[j + 1] < t:
            j += 1
        if j >= n_rr or t <= beat_times[j] or not valid[j]:
            continue
        hr = heart_rate[j]
        if linear and j > 0 and valid[j - 1]:
            # the rate of an interval is placed at the beat that ends it; in between, straight lines
            t0 = beat_times[j]
            t1 = beat_times[j + 1]
            hr = heart_rate[j - 1] + (heart_rate[j] - heart_rate[j - 1]) * (t - t0) / (t1 - t0)
        values[i] = hr
        mask[i] = True
    return values, mask


def heart_rate_signal(
    beat_times: np.ndarray | RRIntervals,
    sfreq: float,
    n_times: int,
    *,
    start: float = 0.0,
    hold_sfreq: float | None = None,
    interpolation: str = "linear",
    fill_value: float = np.nan,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
    max_relative_change: float = 0.3,
) -> HeartRateSignal:
    """Instantaneous heart rate (bpm) resampled onto a regular time base, with gaps masked.

    Parameters
    ----------
    beat_times : np.ndarray or RRIntervals
        Beat times in seconds (then :func:`rr_intervals` is applied with the limits below), or intervals
        already checked.
    sfreq : float
        Sampling frequency of the output in Hz (e.g. 200 Hz, the rate of the U-Time student's input).
    n_times : int
        Number of output samples; sample ``i`` lies at ``start + i / sfreq`` seconds.
    start : float
        Time in seconds of the first output sample, on the clock of ``beat_times``.
    hold_sfreq : float or None
        When given, the heart rate is computed at this lower rate and each value is held (repeated)
        up to ``sfreq``; ``sfreq / hold_sfreq`` must be an integer. Heart rate carries nothing above a
        few hertz, so e.g. 4 Hz held to 200 Hz saves work on long recordings.
    interpolation : {"linear", "previous"}
        ``"linear"``: the rate of each interval is placed at the beat that ends it and joined by straight
        lines within runs of valid intervals; ``"previous"``: each interval's rate is held over the
        interval (a step function).
    fill_value : float
        Value of masked samples (NaN by default so that misuse shows; 0 or a mean for model input).
    min_rr, max_rr, max_relative_change : float
        Outlier limits passed to :func:`rr_intervals` when ``beat_times`` is an array.

    Returns
    -------
    HeartRateSignal
        Values, mask (True = valid) and sampling frequency.
    """
    try:
        sfreq = float(sfreq)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sfreq: expected a number of Hz, got {sfreq!r}") from err
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sfreq: expected a positive number of Hz, got {sfreq!r}")
    if int(n_times) != n_times or n_times < 0:
        raise ValueError(f"n_times: expected a non-negative integer, got {n_times!r}")
    n_times = int(n_times)
    if interpolation not in ("linear", "previous"):
        raise ValueError(f"interpolation: expected 'linear' or 'previous', got {interpolation!r}")
    intervals = (
        beat_times
        if isinstance(beat_times, RRIntervals)
        else rr_intervals(beat_times, min_rr=min_rr, max_rr=max_rr, max_relative_change=max_relative_change)
    )

    repeat = 1
    compute_sfreq = sfreq
    if hold_sfreq is not None:
        ratio = sfreq / float(hold_sfreq)
        if hold_sfreq <= 0 or abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"hold_sfreq: expected a positive rate dividing sfreq={sfreq:g} Hz, got {hold_sfreq!r}"
            )
        repeat = int(round(ratio))
        compute_sfreq = sfreq / repeat
    n_compute = -(-n_times // repeat)
    # held values sit at the start of each block of `repeat` output samples
    sample_times = start + np.arange(n_compute, dtype=np.float64) / compute_sfreq

    if intervals.rr.size == 0:
        values = np.full(n_compute, fill_value, dtype=np.float64)
        mask = np.zeros(n_compute, dtype=bool)
    else:
        values, mask = _resample(
            intervals.beat_times,
            intervals.heart_rate,
            intervals.valid,
            sample_times,
            interpolation == "linear",
            float(fill_value),
        )
    if repeat > 1:
        values = np.repeat(values, repeat)[:n_times]
        mask = np.repeat(mask, repeat)[:n_times]
    return HeartRateSignal(values=values, mask=mask, sfreq=sfreq)


#: Rate (Hz) at which :func:`heart_rate_channel` computes the heart rate before holding it to the model rate.
HR_COMPUTE_SFREQ = 4.0


def heart_rate_channel(
    beat_times: np.ndarray,
    sfreq: float,
    n_times: int,
    *,
    start: float = 0.0,
    clip: float | None = 20.0,
    source: str = "recording",
) -> tuple[np.ndarray, np.ndarray]:
    """Heart rate as a model input channel: scaled, gaps filled, on the model's time base.

    The instantaneous heart rate (:func:`heart_rate_signal`, linear interpolation, physiological outlier
    rejection) is computed at :data:`HR_COMPUTE_SFREQ` (or ``sfreq`` when that is lower or not a multiple)
    and held to ``sfreq``; samples without a valid interval (before the first beat, after the last, in
    rejected intervals) take the recording's median heart rate. The result is centred on that median and
    divided by the inter-quartile range of the valid samples, like the raw channels' robust scaling, so
    that a subject's resting rate does not leak into the model; values beyond ``clip`` IQRs are clipped.

    Parameters
    ----------
    beat_times : np.ndarray
        Beat times in seconds, strictly increasing.
    sfreq : float
        Model sampling rate in Hz.
    n_times : int
        Output length in samples; sample ``i`` lies at ``start + i / sfreq`` s.
    start : float
        Time of the first output sample on the clock of ``beat_times``.
    clip : float or None
        Clip scaled values beyond this many IQRs.
    source : str
        Named in the error raised when no valid RR interval exists.

    Returns
    -------
    values : np.ndarray
        float32, shape ``(n_times,)``.
    mask : np.ndarray
        bool, shape ``(n_times,)``: True where the value comes from a valid RR interval.

    Raises
    ------
    ValueError
        When fewer than two valid intervals exist (no heart rate can be derived).
    """
    sfreq = float(sfreq)
    ratio = sfreq / HR_COMPUTE_SFREQ
    hold = HR_COMPUTE_SFREQ if ratio >= 1 and abs(ratio - round(ratio)) < 1e-9 else None
    signal = heart_rate_signal(beat_times, sfreq, n_times, start=start, hold_sfreq=hold, fill_value=np.nan)
    valid = signal.values[signal.mask]
    if valid.size < 2:
        raise ValueError(
            f"{source}: no heart rate can be derived: {np.asarray(beat_times).size} beats and "
            f"{valid.size} samples with a valid RR interval (0.3-2.0 s, within 30 % of its neighbours)"
        )
    median = float(np.median(valid))
    q1, q3 = np.percentile(valid, [25.0, 75.0])
    iqr = float(q3 - q1) or max(float(np.std(valid)), 1.0)
    values = np.where(signal.mask, signal.values, median)
    values = (values - median) / iqr
    if clip is not None:
        values = np.clip(values, -clip, clip)
    return values.astype(np.float32), signal.mask
