"""Recordings in, arrays out: resampling, filtering, scaling, epoching and the preprocessed cache.

Importing this package is cheap: numba kernels are compiled on first use, and the modules behind most
names (including the torch-dependent cache reader) are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported eagerly: the function shares its name with its module, and binding it here keeps
# ``kdsleep.data.resample`` the function whichever import comes first.
from kdsleep.data.resample import resample

_LAZY = {
    # signal processing
    "resample_ratio": "kdsleep.data.resample",
    "bandpass_filter": "kdsleep.data.filters",
    "design_bandpass": "kdsleep.data.filters",
    "sosfiltfilt": "kdsleep.data.filters",
    "robust_scale": "kdsleep.data.scaling",
    # epoching and windows
    "Epochs": "kdsleep.data.epoching",
    "epoch_signals": "kdsleep.data.epoching",
    "epoch_labels": "kdsleep.data.epoching",
    "window_starts": "kdsleep.data.windows",
    "covering_starts": "kdsleep.data.windows",
    "merge_windows": "kdsleep.data.windows",
    "WindowDataset": "kdsleep.data.windows",
    "n_windows": "kdsleep.data.windows",
    # pipeline and cache
    "PreprocessConfig": "kdsleep.data.preprocess",
    "channel_request": "kdsleep.data.preprocess",
    "preprocess_recording": "kdsleep.data.preprocess",
    "dataset_entries": "kdsleep.data.preprocess",
    "build_cache": "kdsleep.data.cache",
    "cache_root": "kdsleep.data.cache",
    "PreprocessedCache": "kdsleep.data.cache_store",
    # domain objects
    "SleepStage": "kdsleep.data.stages",
    "StageGrouping": "kdsleep.data.stages",
    "get_grouping": "kdsleep.data.stages",
    "stages_to_classes": "kdsleep.data.stages",
    "Recording": "kdsleep.data.recording",
    "Hypnogram": "kdsleep.data.recording",
    "Signal": "kdsleep.data.recording",
    # datasets and synthetic data
    "RecordingEntry": "kdsleep.data.datasets",
    "find_recordings": "kdsleep.data.datasets",
    "detect_dataset": "kdsleep.data.datasets",
    "get_adapter": "kdsleep.data.datasets",
    "generate_synthetic_psg": "kdsleep.data.synthetic",
    # heartbeats and heart rate
    "detect_heartbeats": "kdsleep.data.heartbeats",
    "detect_heartbeats_with_quality": "kdsleep.data.heartbeats",
    "rr_intervals": "kdsleep.data.heart_rate",
    "heart_rate_signal": "kdsleep.data.heart_rate",
    "heart_rate_channel": "kdsleep.data.heart_rate",
}

__all__ = ["resample", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kdsleep.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
