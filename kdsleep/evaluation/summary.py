"""Sleep summary of a staged night: total sleep time, efficiency, latencies, minutes per stage.

Definitions (after the AASM scoring manual's summary statistics, with the recording taken as the time in
bed because lights-off and lights-on times are not known from a beat file):

Total recording time (TRT)
    All epochs of the night, from the first epoch's onset to the end of the last.
Staged time
    TRT less the epochs without a stage (class ``-1``: signal gaps, see :mod:`kdsleep.beats_inference`).
    Unstaged epochs are neither sleep nor wake, so they are left out of the efficiency instead of being
    counted as wake.
Total sleep time (TST)
    Epochs of any class other than wake (``W``).
Sleep efficiency
    TST / staged time.
Sleep onset latency
    From the start of the recording (in place of lights-off) to the onset of the first epoch of any sleep
    class. ``None`` when the night holds no sleep.
REM latency
    From sleep onset to the onset of the first REM (``R``) epoch, as the AASM defines it (not from
    lights-off). ``None`` without REM, or when the class set has no REM class.
Wake after sleep onset (WASO)
    Wake epochs after sleep onset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kdsleep.prediction import Prediction

__all__ = ["SleepSummary", "summarize_prediction", "summarize_stages"]

WAKE = "W"
REM = "R"


@dataclass(frozen=True)
class SleepSummary:
    """Summary statistics of one staged night (minutes unless noted; see the module docstring).

    Attributes
    ----------
    recording_minutes : float
        Total recording time.
    staged_minutes : float
        Time of the epochs that received a stage.
    unstaged_minutes : float
        Time of the epochs without a stage.
    total_sleep_minutes : float
        Total sleep time.
    sleep_efficiency : float or None
        Total sleep time over staged time, 0-1 (None when nothing was staged).
    sleep_onset_latency_minutes : float or None
        Recording start to the first sleep epoch.
    rem_latency_minutes : float or None
        Sleep onset to the first REM epoch.
    waso_minutes : float
        Wake after sleep onset.
    stage_minutes : dict of str to float
        Minutes in each class, in class order.
    """

    recording_minutes: float
    staged_minutes: float
    unstaged_minutes: float
    total_sleep_minutes: float
    sleep_efficiency: float | None
    sleep_onset_latency_minutes: float | None
    rem_latency_minutes: float | None
    waso_minutes: float
    stage_minutes: dict[str, float] = field(default_factory=dict)

    def one_line(self) -> str:
        """``TST 6h12m, efficiency 87%, sleep onset 14 min, REM latency 95 min, WASO 30 min; W 55, ... min``."""

        def hm(minutes: float) -> str:
            h, m = divmod(int(round(minutes)), 60)
            return f"{h}h{m:02d}m"

        def num(minutes: float) -> str:
            # whole minutes, but a short stretch keeps its half minute instead of rounding to 0 or 1
            return f"{minutes:.0f}" if minutes >= 10 or float(minutes).is_integer() else f"{minutes:.1f}"

        def opt(value: float | None) -> str:
            return "n/a" if value is None else f"{num(value)} min"

        efficiency = "n/a" if self.sleep_efficiency is None else f"{self.sleep_efficiency:.0%}"
        stages = ", ".join(f"{name} {num(minutes)}" for name, minutes in self.stage_minutes.items())
        text = (
            f"TST {hm(self.total_sleep_minutes)}, sleep efficiency {efficiency}, sleep onset "
            f"{opt(self.sleep_onset_latency_minutes)}, REM latency {opt(self.rem_latency_minutes)}, "
            f"WASO {num(self.waso_minutes)} min; minutes per stage: {stages}"
        )
        if self.unstaged_minutes > 0:
            text += f", unstaged {num(self.unstaged_minutes)}"
        return text

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON."""
        return {
            "recording_minutes": self.recording_minutes,
            "staged_minutes": self.staged_minutes,
            "unstaged_minutes": self.unstaged_minutes,
            "total_sleep_minutes": self.total_sleep_minutes,
            "sleep_efficiency": self.sleep_efficiency,
            "sleep_onset_latency_minutes": self.sleep_onset_latency_minutes,
            "rem_latency_minutes": self.rem_latency_minutes,
            "waso_minutes": self.waso_minutes,
            "stage_minutes": dict(self.stage_minutes),
        }


def summarize_stages(
    stages: Sequence[int] | np.ndarray, class_names: Sequence[str], epoch_seconds: float = 30.0
) -> SleepSummary:
    """Summarise per-epoch classes.

    Parameters
    ----------
    stages : sequence of int
        Class index per epoch, ``-1`` for epochs without a stage.
    class_names : sequence of str
        Name of each class; the wake class must be ``"W"``, the REM class (if any) ``"R"``.
    epoch_seconds : float
        Epoch length in seconds.

    Raises
    ------
    ValueError
        For class indices outside ``-1 .. n_classes - 1`` or a class set without ``"W"``.
    """
    names = list(class_names)
    if WAKE not in names:
        raise ValueError(f"class_names {names}: expected a wake class named {WAKE!r}")
    labels = np.asarray(stages, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"stages: expected one class per epoch (1-D), got shape {labels.shape}")
    if labels.size and (labels.min() < -1 or labels.max() >= len(names)):
        raise ValueError(
            f"stages: expected class indices -1..{len(names) - 1}, got {labels.min()}..{labels.max()}"
        )
    minutes = float(epoch_seconds) / 60.0
    wake = names.index(WAKE)
    rem = names.index(REM) if REM in names else None
    staged = labels >= 0
    sleep = staged & (labels != wake)
    sleep_epochs = np.flatnonzero(sleep)
    onset = int(sleep_epochs[0]) if sleep_epochs.size else None
    rem_latency = None
    waso = 0.0
    if onset is not None:
        waso = float(np.sum(labels[onset:] == wake)) * minutes
        if rem is not None:
            rem_epochs = np.flatnonzero(labels[onset:] == rem)
            rem_latency = float(rem_epochs[0]) * minutes if rem_epochs.size else None
    n_staged = int(staged.sum())
    return SleepSummary(
        recording_minutes=labels.size * minutes,
        staged_minutes=n_staged * minutes,
        unstaged_minutes=(labels.size - n_staged) * minutes,
        total_sleep_minutes=float(sleep.sum()) * minutes,
        sleep_efficiency=float(sleep.sum()) / n_staged if n_staged else None,
        sleep_onset_latency_minutes=None if onset is None else onset * minutes,
        rem_latency_minutes=rem_latency,
        waso_minutes=waso,
        stage_minutes={name: float(np.sum(labels == k)) * minutes for k, name in enumerate(names)},
    )


def summarize_prediction(prediction: Prediction) -> SleepSummary:
    """:func:`summarize_stages` of a :class:`~kdsleep.prediction.Prediction`."""
    return summarize_stages(prediction.stages, prediction.class_names, prediction.epoch_seconds)
