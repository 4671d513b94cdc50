"""What a cache entry was made from, and whether its files are still whole.

Two records are kept per cache entry (see :mod:`kdsleep.data.cache`):

- the identity of each **source file** (signal and scoring files): its path, size, modification time, a
  SHA-256 of a sample of its bytes (the first and last 64 KiB and 32 blocks of 4 KiB spread evenly between)
  and a SHA-256 of the whole file;
- the size and SHA-256 of each **stored array file** of the entry.

A source is unchanged when its size matches and either (same path and modification time) its sampled hash
matches, or (another path or modification time: a copied, moved or touched file) its whole-file hash
matches. An edit that keeps the size, the modification time and every sampled byte is the one change this
cannot see.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdsleep._io import sha256_file

__all__ = [
    "array_files_problem",
    "describe_sources",
    "file_checksums",
    "source_changes",
    "source_files",
    "source_identity",
]

_EDGE_BYTES = 64 * 1024
_N_SAMPLES = 32
_SAMPLE_BYTES = 4096
_CHUNK = 1 << 20


def _sampled_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= 2 * _EDGE_BYTES + _N_SAMPLES * _SAMPLE_BYTES:
            digest.update(fh.read())
            return digest.hexdigest()
        digest.update(fh.read(_EDGE_BYTES))
        span = size - 2 * _EDGE_BYTES - _SAMPLE_BYTES
        for i in range(_N_SAMPLES):
            fh.seek(_EDGE_BYTES + span * i // (_N_SAMPLES - 1))
            digest.update(fh.read(_SAMPLE_BYTES))
        fh.seek(size - _EDGE_BYTES)
        digest.update(fh.read(_EDGE_BYTES))
    return digest.hexdigest()


def source_files(entry: Any) -> list[Path]:
    """The files a dataset entry is read from (absolute paths, in a fixed order).

    The entry's ``signal_path`` and ``hypnogram_path`` where set; for a WFDB header (``.hea``) every file of
    the record beside it (``rec.dat``, ``rec.st``, ...). Entries without these attributes (in-memory
    recordings) have none.
    """
    paths: list[Path] = []
    for attr in ("signal_path", "hypnogram_path"):
        value = getattr(entry, attr, None)
        if value is None:
            continue
        path = Path(value).absolute()
        if path.suffix.lower() == ".hea" and path.parent.is_dir():
            paths.extend(sorted(p.absolute() for p in path.parent.glob(f"{path.stem}.*") if p.is_file()))
        else:
            paths.append(path)
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def source_identity(path: str | os.PathLike[str], *, full: bool = True) -> dict:
    """Identity of one source file: path, size, modification time, sampled and (``full``) whole-file SHA-256."""
    path = Path(path)
    stat = path.stat()
    identity = {
        "path": str(path),
        "size": int(stat.st_size),
        "mtime_ns": int(stat.st_mtime_ns),
        "sample_sha256": _sampled_sha256(path, stat.st_size),
    }
    if full:
        identity["sha256"] = sha256_file(path)
    return identity


def describe_sources(identities: Sequence[dict]) -> str | None:
    """The folder the sources lie in (their common parent), or ``None`` without sources."""
    paths = [identity["path"] for identity in identities]
    if not paths:
        return None
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def source_changes(stored: Sequence[dict], current: Sequence[Path]) -> tuple[str | None, list[dict]]:
    """Compare a cache entry's recorded sources with the files the recording is read from now.

    Parameters
    ----------
    stored : sequence of dict
        Identities recorded when the entry was built (:func:`source_identity`).
    current : sequence of Path
        :func:`source_files` of the entry now.

    Returns
    -------
    (str or None, list of dict)
        Why the entry is stale (naming the file and what changed), or ``None`` when every source is the
        same; and the identities to record from now on (new paths and modification times where a copied or
        touched file has the same content).
    """
    if len(stored) != len(current) or [Path(s["path"]).name for s in stored] != [p.name for p in current]:
        was = [Path(s["path"]).name for s in stored]
        return f"its files are now {[p.name for p in current]}, the cached entry was made from {was}", []
    updated: list[dict] = []
    for old, path in zip(stored, current, strict=True):
        try:
            stat = path.stat()
        except OSError as err:
            return f"{path}: cannot be read ({err.strerror or err})", []
        if stat.st_size != old.get("size"):
            return f"{path}: {stat.st_size} bytes, the cached entry was made from {old.get('size')} bytes", []
        same_place = str(path) == old.get("path") and stat.st_mtime_ns == old.get("mtime_ns")
        if same_place:
            if _sampled_sha256(path, stat.st_size) != old.get("sample_sha256"):
                return f"{path}: content changed (same size and modification time)", []
            updated.append(dict(old))
            continue
        new = source_identity(path, full=True)
        if new["sha256"] != old.get("sha256"):
            moved = "" if str(path) == old.get("path") else f" (cached from {old.get('path')})"
            return f"{path}: content differs from the file the entry was made from{moved}", []
        updated.append(new)
    return None, updated


def file_checksums(folder: Path, names: Sequence[str]) -> dict[str, dict]:
    """Size and SHA-256 of each file ``names`` in ``folder``."""
    return {
        name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        for name in names
    }


def array_files_problem(folder: Path, files: dict[str, dict], *, checksums: bool = False) -> str | None:
    """What is wrong with a cache entry's stored files, naming the file, or ``None`` when all are whole.

    Sizes are always compared; SHA-256 checksums too with ``checksums=True`` (reads every byte).
    """
    if not (folder / "meta.json").is_file():
        return f"{folder / 'meta.json'} is missing"
    for name, expected in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path} is missing"
        if size != expected.get("bytes"):
            return f"{path}: {size} bytes, the entry recorded {expected.get('bytes')} bytes (truncated or replaced)"
        if checksums and sha256_file(path) != expected.get("sha256"):
            return f"{path}: SHA-256 differs from the one recorded when it was written"
    return None
