"""Files written whole or not at all, and where a result came from (package version, git commit).

Every file kdsleep writes (checkpoints, caches, reports, predictions, figures) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target folder, are flushed to disk, and the file
is renamed over the target, so a reader sees the old file or the complete new one, never half of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from kdsleep import __version__
from kdsleep._git import checkout_commit

__all__ = [
    "atomic_write",
    "sha256_file",
    "git_commit",
    "kdsleep_version",
    "save_figure_atomic",
    "save_torch_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def kdsleep_version() -> str:
    """The installed (or checked-out) kdsleep version."""
    return __version__


def git_commit() -> str | None:
    """The commit of the kdsleep source tree (with ``-dirty`` when it has changes).

    From a git checkout: its ``HEAD``. From an installed copy: the commit it was built from, as ``setup.py``
    recorded it (``kdsleep._build_config.GIT_COMMIT``); ``None`` when neither is known.
    """
    live = _checkout_commit()
    return live if live is not None else _built_commit()


def _built_commit() -> str | None:
    try:
        from kdsleep import _build_config
    except ImportError:
        return None
    commit = getattr(_build_config, "GIT_COMMIT", None)
    return commit if isinstance(commit, str) and commit else None


def _checkout_commit() -> str | None:
    return checkout_commit(Path(__file__).resolve().parents[1])


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(fh)`` into a temporary file in the same folder, then rename it.

    A reader sees either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); give it the usual permissions of a result file
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Atomically write ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Atomically write indented JSON."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def save_torch_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Atomically :func:`torch.save` ``payload`` (a checkpoint is never left half written)."""
    import torch  # kdsleep._io is imported by torch-free modules too

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


def save_figure_atomic(figure: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    """Atomically save a matplotlib figure; the format follows the file's suffix."""
    path = Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".") or "png"
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, **savefig_kwargs)
    return atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a whole file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
