"""Reading the preprocessed on-disk cache: :class:`PreprocessedCache`, memory-mapped recordings.

The layout, and how a cache is built, are described in :mod:`kdsleep.data.cache`. A cache is a window store:
:class:`kdsleep.data.windows.WindowDataset` serves training and evaluation windows from it. Importing this
module (as the cache writer's worker processes do) does not import torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from kdsleep.data.epoching import epoch_labels
from kdsleep.data.fingerprint import array_files_problem
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.data.stages import StageGrouping

__all__ = [
    "ARRAY_NAMES",
    "CACHE_FORMAT",
    "CACHE_FORMAT_VERSION",
    "DamagedCacheError",
    "PreprocessedCache",
    "cache_root",
    "folder_name",
]

logger = logging.getLogger(__name__)

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
