"""The git commit of a source checkout. Standard library only: ``setup.py`` loads this file by path at build
time, before the package (and its compiled extension) can be imported."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["checkout_commit"]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)


def checkout_commit(root: str | Path) -> str | None:
    """``HEAD`` of the checkout whose top folder is ``root`` (with ``-dirty`` when tracked files changed).

    ``None`` when ``root`` is not the top of a git checkout -- an installed copy inside some other repository
    (a virtual environment in a project) must not report that repository's commit -- or git is missing.
    """
    root = Path(root).resolve()
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None
        commit = _git(root, "rev-parse", "HEAD")
        if commit.returncode != 0 or not commit.stdout.strip():
            return None
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return commit.stdout.strip() + ("-dirty" if dirty else "")
