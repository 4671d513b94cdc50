"""Models: U-Time (teacher and student share the class), feature taps for attention transfer, and the heart-rate
stager (a bidirectional GRU over HRV features and heart-rate curves)."""

from __future__ import annotations

from kdsleep.models.hr_stager import HRStager
from kdsleep.models.taps import FeatureTaps
from kdsleep.models.utime import (
    DEFAULT_FILTERS,
    JOSHI_SINGLE_EPOCH_POOLS,
    MULTI_EPOCH_POOLS,
    UTime,
    group_tap_weights,
)

__all__ = [
    "DEFAULT_FILTERS",
    "JOSHI_SINGLE_EPOCH_POOLS",
    "MULTI_EPOCH_POOLS",
    "FeatureTaps",
    "HRStager",
    "UTime",
    "group_tap_weights",
]
