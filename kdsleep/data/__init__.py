"""Recordings in, arrays out: resampling, filtering, scaling, epoching and the preprocessed cache.

Importing this package is cheap: numba kernels are compiled on first use.
"""

from __future__ import annotations

from kdsleep.data.resample import resample

__all__ = ["resample"]
