"""Beats detected in the ECG channel of an EDF / EDF+ / BDF recording (format ``"edf"``)."""

from __future__ import annotations

import os

import numpy as np

from kdsleep.data.datasets.base import DEFAULT_CHANNELS
from kdsleep.data.heartbeats import detect_heartbeats
from kdsleep.data.readers.beats.series import BeatSeries, BeatsFormatError, existing_file, finish_series
from kdsleep.data.readers.channels import MissingChannelError, resolve_channel
from kdsleep.data.readers.edf import EdfFormatError, read_edf, read_edf_header
from kdsleep.data.resample import resample

__all__ = ["read_ecg_beats"]


def read_ecg_beats(
    path: str | os.PathLike[str],
    *,
    channel: str | None = None,
    min_rr: float = 0.3,
    max_rr: float = 2.0,
) -> BeatSeries:
    """Beats detected in the ECG channel of an EDF / EDF+ / BDF file.

    Parameters
    ----------
    path : path-like
        The recording.
    channel : str, optional
        ECG channel name (resolved through the readers' aliases); default ECG lead I or the montage's single
        ECG lead (``ECG``, ``ECG I``, ``EKG``, ...).
    """
    path = existing_file(path, "an EDF, EDF+ or BDF file with an ECG channel")
    spec = channel if channel is not None else list(DEFAULT_CHANNELS["ecg"])
    try:
        source = resolve_channel(spec, read_edf_header(path).signal_labels, source=path)
        recording = read_edf(path, {"ecg": [str(source)]})
    except MissingChannelError as err:
        raise BeatsFormatError(
            f"{path}: no ECG channel (tried {err.candidates}); available channels: {err.available}; choose one",
            remedy=("channel",),
        ) from err
    except EdfFormatError as err:
        raise BeatsFormatError(f"{err} (expected an EDF, EDF+ or BDF recording with an ECG channel)") from err
    except (OSError, ValueError) as err:
        raise BeatsFormatError(f"{path}: cannot read the recording as EDF/BDF: {err}") from err
    signal = recording["ecg"]
    x = np.asarray(signal.data, dtype=np.float64)
    sfreq = float(signal.sfreq)
    detect_sfreq = sfreq
    if sfreq < 100.0:
        # the detector needs 100 Hz; upsample (keeping missing stretches missing) as the ihr channel does
        finite = np.isfinite(x)
        x = resample(np.where(finite, x, 0.0), sfreq, 128.0)
        if not finite.all():
            x[resample(np.where(finite, 0.0, 1.0), sfreq, 128.0) > 0.5] = np.nan
        detect_sfreq = 128.0
    beats = detect_heartbeats(x, detect_sfreq)
    return finish_series(
        beats / detect_sfreq,
        path,
        "edf",
        start=recording.start,
        duration=float(signal.duration),
        n_ignored=0,
        min_rr=min_rr,
        max_rr=max_rr,
        detail=f"R peaks detected in {str(source)!r} at {sfreq:g} Hz",
    )
