"""Distillation: configuration, subject-wise split, losses, variants, the training loop and the runner.

The checkpoint format lives in :mod:`kdsleep.checkpoint` (shared with inference). Submodules are imported
on use, so that importing this package (as the command-line parser does for its choices) stays cheap.
"""

from __future__ import annotations
