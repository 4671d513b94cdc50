"""Reading the preprocessed on-disk cache: :class:`PreprocessedCache` (memory-mapped recordings) and
:class:`PairedWindowDataset` (paired EEG/ECG windows over it).

The layout, and how a cache is built, are described in :mod:`kdsleep.data.cache`. The dataset class is built
on first use, so that importing this module (as the cache writer's worker processes do) does not import torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep.data.epoching import epoch_labels
from kdsleep.data.fingerprint import array_files_problem
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.data.stages import StageGrouping, get_grouping
from kdsleep.data.windows import DEFAULT_WINDOW_EPOCHS, window_starts

__all__ = [
    "ARRAY_NAMES",
    "CACHE_FORMAT",
    "CACHE_FORMAT_VERSION",
    "DamagedCacheError",
    "PairedWindowDataset",
    "PreprocessedCache",
    "cache_root",
    "folder_name",
]

logger = logging.getLogger(__name__)

#: Built on first access by the module ``__getattr__`` below (a subclass of torch's ``Dataset``).
PairedWindowDataset: type

CACHE_FORMAT = "kdsleep-preprocessed-cache"
CACHE_FORMAT_VERSION = 2
#: Arrays stored per recording (``<name>.npy``, or members of ``epochs.npz`` when compressed).
ARRAY_NAMES = ("data", "stages", "onsets")


def cache_root(cache_dir: str | os.PathLike[str], config: PreprocessConfig) -> Path:
    """Folder of the cache for ``config`` inside ``cache_dir`` (named by the config hash)."""
    return Path(cache_dir) / config.config_hash()


def folder_name(key: str) -> str:
    """Folder of a recording key in the cache (``subject/session`` keys become ``subject__session``)."""
    return key.replace("/", "__")


class DamagedCacheError(ValueError):
    """A cache entry's files are missing, truncated or replaced (the message names the file)."""


class PreprocessedCache:
    """Read access to one cache root (``cache_dir/<config hash>``).

    Parameters
    ----------
    root : path-like
        The cache root, as returned by :func:`build_cache`; or a cache folder together with ``config``.
    config : PreprocessConfig, optional
        When given, ``root`` is the cache folder and the root is ``root/<config hash>``.
    max_loaded : int, default 8
        Compressed recordings kept decompressed in memory (least recently used are dropped).
    max_open : int, default 256
        Memory-mapped recordings kept open (each holds a file descriptor; least recently used are closed).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        config: PreprocessConfig | None = None,
        max_loaded: int = 8,
        max_open: int = 256,
    ):
        root = Path(root)
        if config is not None:
            root = cache_root(root, config)
        manifest_path = root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: no cache manifest; run `kdsleep preprocess` first")
        try:
            with open(manifest_path, encoding="utf-8") as fh:
                manifest = json.load(fh)
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            raise DamagedCacheError(
                f"{manifest_path}: unreadable cache manifest ({err}); building the cache again restores it"
            ) from None
        if manifest.get("format") != CACHE_FORMAT or manifest.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(
                f"{manifest_path}: not a kdsleep cache of format version {CACHE_FORMAT_VERSION} "
                f"(format {manifest.get('format')!r}, version {manifest.get('format_version')!r})"
            )
        self.root = root
        self.config = PreprocessConfig.from_dict(manifest["config"])
        self._recordings: dict[str, dict] = dict(sorted(manifest["recordings"].items()))
        self._opened: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._loaded: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._max_loaded = max(1, int(max_loaded))
        self._max_open = max(1, int(max_open))

    def __getstate__(self) -> dict:
        # memory maps are reopened in each DataLoader worker rather than pickled
        state = self.__dict__.copy()
        state["_opened"] = OrderedDict()
        state["_loaded"] = OrderedDict()
        return state

    @property
    def keys(self) -> list[str]:
        """Recording keys, sorted."""
        return list(self._recordings)

    def __len__(self) -> int:
        return len(self._recordings)

    def __contains__(self, key: object) -> bool:
        return key in self._recordings

    def meta(self, key: str) -> dict:
        """Manifest entry of a recording (subject, channels, n_epochs, stage counts, ...)."""
        try:
            return self._recordings[key]
        except KeyError:
            raise KeyError(
                f"{self.root}: no recording {key!r} in the cache ({len(self)} recordings)"
            ) from None

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        """``data``, ``stages`` and ``onsets`` of a recording (memory-mapped unless compressed)."""
        meta = self.meta(key)
        compressed = bool(meta.get("compressed"))
        lru, limit = (self._loaded, self._max_loaded) if compressed else (self._opened, self._max_open)
        if key in lru:
            lru.move_to_end(key)
            return lru[key]
        folder = self.root / "recordings" / meta["folder"]
        problem = array_files_problem(folder, meta.get("files") or {})
        if problem is not None:
            raise DamagedCacheError(
                f"damaged cache entry for recording {key!r}: {problem}; building the cache again processes it anew"
            )
        try:
            if compressed:
                with np.load(folder / "epochs.npz") as npz:
                    arrays = {name: npz[name] for name in ARRAY_NAMES}
            else:
                # only the signal is mapped; the per-epoch arrays are small
                arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAY_NAMES if name != "data"}
                arrays["data"] = np.load(folder / "data.npy", mmap_mode="r")
        except (OSError, ValueError, KeyError) as err:
            raise DamagedCacheError(
                f"damaged cache entry for recording {key!r} in {folder}: {err}; building the cache again "
                "processes it anew"
            ) from err
        expected = (meta["n_epochs"], len(meta["channels"]), meta["samples_per_epoch"])
        if arrays["data"].shape != expected or arrays["stages"].shape != expected[:1]:
            raise ValueError(
                f"{folder}: arrays of shape {arrays['data'].shape} / {arrays['stages'].shape}, "
                f"the manifest says {expected}; rebuild this entry (delete the folder and re-run)"
            )
        lru[key] = arrays
        while len(lru) > limit:
            lru.popitem(last=False)
        return arrays

    def epochs(self, key: str) -> np.ndarray:
        """Epoch array (n_epochs, n_channels, samples_per_epoch) of a recording."""
        return self.arrays(key)["data"]

    def stages(self, key: str) -> np.ndarray:
        """SleepStage per epoch (epochs with bad signal are ``ARTEFACT``)."""
        return np.asarray(self.arrays(key)["stages"])

    def labels(self, key: str, grouping: str | int | StageGrouping | None = None) -> np.ndarray:
        """Class per epoch in ``grouping`` (default: the config's), ``-1`` where ignored."""
        stages = self.stages(key)
        return epoch_labels(stages, np.zeros(stages.shape, bool), grouping or self.config.stage_grouping)

    def channel_index(self, key: str, channel: str) -> int:
        """Position of ``channel`` in a recording's epoch array."""
        channels = self.meta(key)["channels"]
        try:
            return channels.index(channel)
        except ValueError:
            raise KeyError(
                f"{self.root}: recording {key!r} has no channel {channel!r}; it has {channels}"
            ) from None


class _PairedWindows:
    """Windows of consecutive epochs from a cache, as (EEG window, ECG window, labels) for paired training.

    Parameters
    ----------
    cache : PreprocessedCache or path-like
        The cache (or its root folder).
    keys : sequence of str, optional
        Recordings to use (e.g. one split's subjects); default all.
    eeg_channel, ecg_channel : str or sequence of str, default "eeg", "ecg"
        Channel names as stored (:attr:`PreprocessConfig.channels`); a sequence stacks several channels
        (e.g. ``("ecg", "ihr")``: raw ECG and heart rate for the student).
    window_epochs : int, default 35
        Epochs per window (35 as in U-Time; 1 for the authors' single-epoch setting).
    stride : int, optional
        Epochs between window starts; default ``window_epochs``.
    grouping : str, optional
        Stage grouping (``"w-l-d-r"``, ``"w-n-r"``, ``"aasm-5"``); default the cache config's.
    skip_short : bool, default False
        Skip recordings shorter than one window (logged) instead of raising.
    skip_unlabelled : bool, default True
        Leave out windows in which no epoch has a label.

    Items are ``(eeg, ecg, labels)``: float tensors of shape (n_channels, window_epochs * samples_per_epoch)
    (one channel per name) and an int64 tensor of shape (window_epochs,) with ``-1`` for ignored epochs.
    A window is its epochs' segments laid end to end; where segments overlap (MASS 20-s scorings widened to
    30 s, ``epoch_step`` 20 s in the manifest) the window is not one continuous stretch of signal.
    """

    def __init__(
        self,
        cache: PreprocessedCache | str | os.PathLike[str],
        keys: Sequence[str] | None = None,
        eeg_channel: str | Sequence[str] = "eeg",
        ecg_channel: str | Sequence[str] = "ecg",
        window_epochs: int = DEFAULT_WINDOW_EPOCHS,
        stride: int | None = None,
        grouping: str | None = None,
        skip_short: bool = False,
        skip_unlabelled: bool = True,
    ) -> None:
        self.cache = cache if isinstance(cache, PreprocessedCache) else PreprocessedCache(cache)
        self.keys = list(self.cache.keys if keys is None else keys)
        self.grouping = get_grouping(grouping or self.cache.config.stage_grouping)
        self.window_epochs = window_epochs
        self.eeg_channel = eeg_channel
        self.ecg_channel = ecg_channel
        eeg_names = [eeg_channel] if isinstance(eeg_channel, str) else list(eeg_channel)
        ecg_names = [ecg_channel] if isinstance(ecg_channel, str) else list(ecg_channel)
        index: list[tuple[int, int]] = []
        self._channels: list[tuple[list[int], list[int]]] = []
        self._labels: list[np.ndarray] = []
        for r, key in enumerate(self.keys):
            meta = self.cache.meta(key)
            self._channels.append(
                (
                    [self.cache.channel_index(key, name) for name in eeg_names],
                    [self.cache.channel_index(key, name) for name in ecg_names],
                )
            )
            labels = self.cache.labels(key, self.grouping)
            self._labels.append(labels)
            try:
                starts = window_starts(
                    meta["n_epochs"], window_epochs, stride, source=f"{self.cache.root}/{key}"
                )
            except ValueError:
                if not skip_short:
                    raise
                logger.info("skipping %s: %d epochs, shorter than one window", key, meta["n_epochs"])
                continue
            for s in starts:
                if skip_unlabelled and not (labels[s : s + window_epochs] >= 0).any():
                    continue
                index.append((r, int(s)))
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window ``i`` as NumPy arrays (eeg, ecg, labels)."""
        r, start = self._index[i]
        key = self.keys[r]
        data = self.cache.epochs(key)
        eeg_i, ecg_i = self._channels[r]
        stop = start + self.window_epochs
        # (epochs, channels, samples) -> (channels, epochs * samples)
        eeg = np.ascontiguousarray(data[start:stop][:, eeg_i].transpose(1, 0, 2)).reshape(len(eeg_i), -1)
        ecg = np.ascontiguousarray(data[start:stop][:, ecg_i].transpose(1, 0, 2)).reshape(len(ecg_i), -1)
        return eeg, ecg, self._labels[r][start:stop].astype(np.int64)

    def __getitem__(self, i: int) -> tuple[Any, Any, Any]:
        import torch

        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        eeg, ecg, labels = self.window(i % len(self))
        return torch.from_numpy(eeg), torch.from_numpy(ecg), torch.from_numpy(labels)

    def window_key(self, i: int) -> tuple[str, int]:
        """(recording key, first epoch) of window ``i``."""
        r, start = self._index[i]
        return self.keys[r], start


def _make_paired_window_dataset() -> type:
    from torch.utils.data import Dataset

    class PairedWindowDataset(_PairedWindows, Dataset):
        __doc__ = _PairedWindows.__doc__

    PairedWindowDataset.__module__ = __name__
    PairedWindowDataset.__qualname__ = "PairedWindowDataset"
    return PairedWindowDataset


def __getattr__(name: str) -> Any:
    # The torch Dataset subclass is built on first use, so that importing this module (as the cache
    # writer's worker processes do) does not import torch; pickling finds it again through this hook.
    if name == "PairedWindowDataset":
        cls = _make_paired_window_dataset()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
