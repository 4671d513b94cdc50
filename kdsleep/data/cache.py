"""The preprocessed on-disk cache: written once, in parallel and atomically; read memory-mapped.

Layout under the cache folder::

    CACHE_DIR/<config hash>/
        manifest.json               config, its hash, and one entry per finished recording
        recordings/<key>/           one folder per recording, moved into place only when complete
            data.npy                (n_epochs, n_channels, samples_per_epoch), float32
            stages.npy              SleepStage per epoch (int8)
            onsets.npy              segment onsets in seconds (float64)
            meta.json               what the manifest holds about it
        (or epochs.npz instead of the .npy files with ``compress=True``)

A recording is processed into a hidden temporary folder beside its final place and renamed when every file
is written, so an interrupted build never leaves a half-written entry; the next build skips the recordings
already present (including any finished after the manifest was last written) and removes leftovers.

An entry is keyed by what produced it. The preprocessing settings name the cache root (their hash); each
entry's ``meta.json`` records the identity of its source files (path, size, modification time, sampled and
whole-file SHA-256, see :mod:`kdsleep.data.fingerprint`) and the size and SHA-256 of each stored file. A
build reuses an entry only when its recording is still among those given, its stored files are present with
their recorded sizes (and checksums, with ``verify=True``), and its sources have the same size and content;
otherwise the entry is removed and the recording processed again, with a log line saying which and why. A
cache built from files in another folder is reported once and reused only where the content matches.
Reading (:class:`~kdsleep.data.cache_store.PreprocessedCache`, re-exported here, and the paired window
dataset) is :mod:`kdsleep.data.cache_store`. Uncompressed arrays are opened with ``np.load(mmap_mode="r")``: windows are read from disk on demand, so a
dataset of hundreds of nights need not fit in memory. Compressed caches are smaller but are decompressed
whole, one recording at a time.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kdsleep._io import write_text_atomic
from kdsleep.data.cache_store import (
    ARRAY_NAMES,
    CACHE_FORMAT,
    CACHE_FORMAT_VERSION,
    DamagedCacheError,
    PreprocessedCache,
    cache_root,
    folder_name,
)
from kdsleep.data.fingerprint import (
    array_files_problem,
    describe_sources,
    file_checksums,
    source_changes,
    source_files,
    source_identity,
)
from kdsleep.data.preprocess import PreprocessConfig, channel_request, preprocess_recording
from kdsleep.data.stages import SleepStage

__all__ = [
    "DamagedCacheError",
    "PreprocessedCache",
    "RecordingFailedError",
    "build_cache",
    "cache_root",
    "folder_name",
]

logger = logging.getLogger(__name__)

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ +/-]*$")
_TMP_PREFIX = ".tmp-"


def _write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True))


def _new_manifest(config: PreprocessConfig) -> dict:
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
        "recordings": {},
    }


def _array_files(compress: bool) -> list[str]:
    return ["epochs.npz"] if compress else [f"{name}.npy" for name in ARRAY_NAMES]


def _process_entry(entry: Any, config_dict: dict, records_dir: str, compress: bool) -> dict:
    """Worker: read, preprocess and write one recording; returns its manifest entry."""
    config = PreprocessConfig.from_dict(config_dict)
    # identified before reading, so a file replaced while it is processed is seen as changed next time
    sources = [source_identity(path) for path in source_files(entry)]
    # bad-signal masking is part of the pipeline (with the config's flat_seconds), not of the reader
    recording, hypnogram = entry.load(
        channel_request(config, entry), ecg_polarity=config.ecg_polarity, mask_bad=False
    )
    epochs = preprocess_recording(recording, hypnogram, config)
    arrays = {"data": epochs.data, "stages": epochs.stages, "onsets": epochs.onsets}
    # bad epochs become ARTEFACT: the cache stores one label source
    arrays["stages"] = np.where(epochs.bad, np.int8(SleepStage.ARTEFACT), epochs.stages).astype(np.int8)
    stage_counts = {
        SleepStage(int(k)).name: int(v)
        for k, v in zip(*np.unique(arrays["stages"], return_counts=True), strict=True)
    }
    meta = {
        "key": entry.key,
        "folder": folder_name(entry.key),
        "subject": recording.subject,
        "session": recording.session,
        "source": None if recording.source is None else str(recording.source),
        "n_epochs": int(epochs.n_epochs),
        "channels": list(epochs.channel_names),
        "sfreq": config.sfreq,
        "samples_per_epoch": int(epochs.data.shape[-1]),
        "epoch_step": float(hypnogram.epoch_step),
        "stage_counts": stage_counts,
        "compressed": bool(compress),
        "sources": sources,
    }
    final = Path(records_dir) / meta["folder"]
    tmp = Path(records_dir) / f"{_TMP_PREFIX}{meta['folder']}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if compress:
            with open(tmp / "epochs.npz", "wb") as fh:
                np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **kwargs
                fh.flush()
                os.fsync(fh.fileno())
        else:
            for name, array in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, array)
                    fh.flush()
                    os.fsync(fh.fileno())
        meta["files"] = file_checksums(tmp, _array_files(compress))
        with open(tmp / "meta.json", "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        # meta.json is written last: a folder holding it is complete. The rename makes it visible at once.
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


class RecordingFailedError(RuntimeError):
    """A recording could not be preprocessed in a worker process (the message names it and the cause)."""


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that started it dies (even by SIGKILL).

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon
    thread polls the parent's pid once a second.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before the request took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="kdsleep-parent-watch", daemon=True).start()


def _process_entry_in_worker(entry: Any, config_dict: dict, records_dir: str, compress: bool) -> dict:
    try:
        return _process_entry(entry, config_dict, records_dir, compress)
    except Exception as err:
        # not every exception class survives pickling back to the parent; the message always does
        raise RecordingFailedError(f"{type(err).__name__}: {err}") from None


def _read_meta(folder: Path) -> dict | None:
    try:
        with open(folder / "meta.json", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _load_manifest(manifest_path: Path, config: PreprocessConfig) -> dict:
    """The manifest to extend: the existing one, or a new one when it is missing, unreadable or of an older
    format (its entries are then re-verified from their meta.json or re-processed)."""
    if not manifest_path.exists():
        return _new_manifest(config)
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("recordings"), dict):
            raise ValueError("not a JSON object with 'recordings'")
    except (OSError, ValueError) as err:
        logger.warning(
            "%s: unreadable (%s); the entries are checked again from their folders", manifest_path, err
        )
        return _new_manifest(config)
    if manifest.get("config_hash") != config.config_hash():
        raise ValueError(
            f"{manifest_path}: written for config {manifest.get('config_hash')}, not {config.config_hash()}"
        )
    for key, meta in list(manifest["recordings"].items()):
        if not (isinstance(meta, dict) and meta.get("key") == key and meta.get("folder") == folder_name(key)):
            logger.warning("%s: entry %r is malformed; the recording is processed again", manifest_path, key)
            del manifest["recordings"][key]
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        logger.info(
            "%s: cache format version %s, not %s; every recording is processed again",
            manifest_path,
            manifest.get("format_version"),
            CACHE_FORMAT_VERSION,
        )
        shutil.rmtree(manifest_path.parent / "recordings", ignore_errors=True)
        (manifest_path.parent / "recordings").mkdir()
        return _new_manifest(config)
    return manifest


def _stale_entries(root: Path, manifest: dict, entries: Sequence[Any], *, verify: bool) -> dict[str, str]:
    """Cached recordings that must not be served, with the reason: no longer among ``entries``, damaged
    (a stored file missing or of the wrong size; with ``verify``, the wrong checksum) or made from sources
    that have changed. Unchanged sources found under a new path or modification time are re-recorded."""
    recordings = manifest["recordings"]
    by_key = {e.key: e for e in entries}
    stale: dict[str, str] = {}
    before = describe_sources([s for meta in recordings.values() for s in meta.get("sources", [])])
    now_paths = [p for e in entries for p in source_files(e)]
    now = os.path.commonpath([str(p.parent) for p in now_paths]) if now_paths else None
    nested = (
        before is not None
        and now is not None
        and (Path(before).is_relative_to(now) or Path(now).is_relative_to(before))
    )
    if before is not None and now is not None and not nested:
        logger.warning(
            "%s: this cache was built from recordings in %s, now given %s; each recording is reused only where "
            "its files have the same size and content, the others are processed again",
            root,
            before,
            now,
        )
    for key, meta in recordings.items():
        entry = by_key.get(key)
        if entry is None:
            stale[key] = "no longer among the recordings given"
            continue
        folder = root / "recordings" / str(meta.get("folder", ""))
        problem = array_files_problem(folder, meta.get("files") or {}, checksums=verify)
        if problem is None and not meta.get("files"):
            problem = "the entry records no file sizes"
        if problem is None and _read_meta(folder) != meta:
            problem = f"{folder / 'meta.json'} differs from the manifest"
        if problem is not None:
            stale[key] = f"damaged entry ({problem})"
            continue
        reason, identities = source_changes(meta.get("sources", []), source_files(entry))
        if reason is not None:
            stale[key] = f"source changed: {reason}"
        elif identities != meta.get("sources", []):
            # same content under a new path or modification time: remember the new identity
            meta["sources"] = identities
            _write_json_atomic(folder / "meta.json", meta)
    return stale


def build_cache(
    entries: Sequence[Any],
    cache_dir: str | os.PathLike[str],
    config: PreprocessConfig | None = None,
    *,
    n_workers: int | None = 1,
    compress: bool = False,
    verify: bool = False,
    progress: bool = True,
    on_recording_done: Callable[[str], None] | None = None,
) -> Path:
    """Preprocess every recording of ``entries`` into the cache, reusing the entries that are still valid.

    A cached recording is reused when it is still among ``entries``, its stored files are whole and its
    source files are unchanged (see the module documentation); any other cached recording is removed and, if
    still given, processed again. The cache then holds exactly the recordings of ``entries``.

    Parameters
    ----------
    entries : sequence of RecordingEntry
        The recordings (see :func:`kdsleep.data.preprocess.dataset_entries`): objects with a unique ``key``
        and ``load(channels, *, ecg_polarity, mask_bad) -> (Recording, Hypnogram)``, picklable when
        ``n_workers > 1``.
    cache_dir : path-like
        Cache folder; the arrays go to ``cache_dir/<config hash>/``.
    config : PreprocessConfig, optional
        Pipeline settings; default :class:`PreprocessConfig()`.
    n_workers : int or None, default 1
        Worker processes; ``None`` picks ``min(4, cpu count)``. 1 runs in this process.
    compress : bool, default False
        Store zip-compressed ``.npz`` (smaller, but read whole) instead of memory-mappable ``.npy``.
    verify : bool, default False
        Check the SHA-256 of every stored file of the recordings already cached (reads them whole); by
        default only their presence and sizes are checked.
    progress : bool, default True
        Show a progress bar.
    on_recording_done : callable, optional
        Called with each key after its entry is recorded in the manifest.

    Returns
    -------
    Path
        The cache root ``cache_dir/<config hash>``.

    Raises
    ------
    ValueError
        For duplicate or unsafe keys, or a cache folder written with another configuration.
    Exception
        The first error of a recording, after the finished ones are recorded (re-running resumes).
    """
    config = config or PreprocessConfig()
    if n_workers is None:
        n_workers = min(4, os.cpu_count() or 1)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"build_cache: n_workers must be a positive int, got {n_workers!r}")
    keys = [e.key for e in entries]
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, str) or not _KEY_PATTERN.match(key) or ".." in key:
            raise ValueError(f"build_cache: recording key {key!r} is not a safe folder name")
        if folder_name(key) in seen:
            raise ValueError(f"build_cache: recording key {key!r} appears twice")
        seen.add(folder_name(key))

    root = cache_root(cache_dir, config)
    records_dir = root / "recordings"
    records_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest = _load_manifest(manifest_path, config)
    # leftovers of an interrupted run are incomplete by construction
    for path in list(records_dir.iterdir()) + list(root.iterdir()):
        if path.name.startswith(_TMP_PREFIX):
            logger.info("removing incomplete %s", path)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    # folders completed after the manifest was last written (interrupted between the two) are adopted
    known = {meta["folder"] for meta in manifest["recordings"].values()}
    for folder in records_dir.iterdir():
        if folder.name not in known:
            meta = _read_meta(folder)
            if (
                not isinstance(meta, dict)
                or not isinstance(meta.get("key"), str)
                or meta.get("folder") != folder.name
                or folder_name(meta["key"]) != folder.name
            ):
                logger.warning("removing %s: no readable meta.json, not a complete cache entry", folder)
                shutil.rmtree(folder, ignore_errors=True)
            else:
                logger.info("adopting %s, completed by an interrupted run", folder)
                manifest["recordings"][meta["key"]] = meta
    stale = _stale_entries(root, manifest, entries, verify=verify)
    for key, reason in stale.items():
        level = logging.WARNING if reason.startswith("damaged") else logging.INFO
        logger.log(level, "%s: re-processing %s: %s", root, key, reason)
        meta = manifest["recordings"].pop(key)
        shutil.rmtree(records_dir / meta["folder"], ignore_errors=True)
    _write_json_atomic(manifest_path, manifest)

    todo = [e for e in entries if e.key not in manifest["recordings"]]
    n_done = len(entries) - len(todo)
    if n_done:
        logger.info("%s: %d of %d recordings already cached and unchanged", root, n_done, len(entries))
    bar = tqdm(total=len(entries), initial=n_done, desc="preprocess", unit="rec", disable=not progress)

    def record(meta: dict) -> None:
        manifest["recordings"][meta["key"]] = meta
        _write_json_atomic(manifest_path, manifest)
        bar.update(1)
        if on_recording_done is not None:
            on_recording_done(meta["key"])

    config_dict = config.to_dict()
    try:
        if n_workers == 1 or len(todo) <= 1:
            for entry in todo:
                record(_process_entry(entry, config_dict, str(records_dir), compress))
        else:
            # spawn: workers start clean (no inherited threads or numba / torch state)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(n_workers, len(todo)),
                mp_context=context,
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                pending: set[Future] = set()
                queue = list(todo)
                error: BaseException | None = None
                # at most 2 per worker queued, so a failure stops the build soon
                while queue or pending:
                    while queue and len(pending) < 2 * n_workers and error is None:
                        entry = queue.pop(0)
                        pending.add(
                            pool.submit(
                                _process_entry_in_worker, entry, config_dict, str(records_dir), compress
                            )
                        )
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        exc = future.exception()
                        if exc is not None:
                            error = error or exc
                        else:
                            record(future.result())
                    if error is not None:
                        queue.clear()
                if error is not None:
                    raise error
    finally:
        bar.close()
    return root
