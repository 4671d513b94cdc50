"""kdsleep: EEG-to-ECG knowledge distillation for sleep staging.

Importing the package is cheap: the compiled kernels are loaded on first use of :mod:`kdsleep.ops`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
