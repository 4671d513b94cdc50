"""Models: U-Time (teacher and student share the class) and feature taps for attention transfer."""

from __future__ import annotations

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
    "UTime",
    "group_tap_weights",
]
