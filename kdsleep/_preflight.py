"""Checks made before a long computation, so that it does not end in an error about its outputs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["unwritable_output"]


def unwritable_output(paths: Iterable[str | os.PathLike[str]]) -> str | None:
    """Why one of ``paths`` could not be written (naming it), or ``None`` when all can.

    A path can be written when it is not a folder and its folder exists (or can be created under the
    nearest existing one) and accepts a new file: a temporary file is created and removed there, which
    also catches read-only file systems and permissions that ``os.access`` misjudges.
    """
    probed: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            return f"{path}: is a folder, cannot be written as a file"
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"{path}: {folder} is not a folder"
        if folder in probed:
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".kdsleep-probe-"):
                pass
        except OSError as err:
            return f"{path}: cannot write in {folder}: {err.strerror or err}"
        probed.add(folder)
    return None
