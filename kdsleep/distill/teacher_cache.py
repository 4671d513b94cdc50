r"""The frozen teacher's outputs, computed once per run and read back from memory-mapped files.

During distillation the EEG teacher is frozen and, without augmentation, the training windows are fixed, so
its per-layer attention maps and its logits are the same in every epoch. :class:`TeacherCache` computes them
once, stores them on disk and hands them back by window index; a training step then costs the student's
forward and backward plus the losses, with no teacher forward pass and no teacher feature maps in memory.

What is stored, per window :math:`i` and tapped layer :math:`j` with :math:`L_j` positions:

* the normalised attention map :math:`q_j = a_j / \max(\lVert a_j\rVert_2, \epsilon)`, with
  :math:`a_j = \operatorname{mean}_c |T_{j,c}|^p` (as :func:`kdsleep.ops.reference.attention_map`), stored as
  :math:`\sqrt{L_j}\,q_j` in float16 (root-mean-square 1, so values down to about :math:`6\cdot10^{-5}` of
  the typical value keep float16's full relative precision of :math:`2^{-11}`): 0.9 MiB per 35-epoch
  window at 200 Hz for the twelve maps of the full U-Time, 25 times less than its feature maps in float32;
* the norm :math:`\max(\lVert a_j\rVert_2, \epsilon)` in float32 (so the authors' batch-normalised attention
  loss, ``mode="joshi"``, can rebuild :math:`C_j a_j` as well);
* the logits, ``(n_outputs, n_epochs)`` in float32.

Tolerance (float16 maps against the live float32 teacher; full U-Time, 4 windows of 35 epochs at 200 Hz,
random-initialised networks, a random student and a student 1 % away from the teacher; figures in
``benchmarks/RESULTS.md``, checked by ``tests/distill/test_teacher_cache.py``):

* maps: at most :math:`2^{-11}` relative (float16 rounding; measured :math:`4.9\cdot10^{-4}`); logits: exact
  (stored in float32, the teacher's own precision);
* canonical attention-transfer loss (every distance): below :math:`10^{-4}` relative (measured at most
  :math:`3.3\cdot10^{-5}`); student gradient: below :math:`2\cdot10^{-3}` relative L2 norm in every layer
  (measured at most :math:`1.0\cdot10^{-3}`) -- far below the difference between two minibatches' gradients;
* ``mode="joshi"``: loss as above; its L1 gradient :math:`\operatorname{sign}(q_s - q_t)` flips at the
  positions where student and teacher agree within float16 rounding, so the gradient differs by up to
  :math:`5\cdot10^{-2}` (measured :math:`1.8\cdot10^{-2}`). ``dtype="float32"`` stores the maps exactly
  (loss :math:`10^{-5}`, gradient :math:`10^{-4}`), at twice the size.

Cache key. A cache is valid for one teacher, one list of windows and one set of window settings; the folder
``<folder>/<key digest>/`` holds it and ``meta.json`` repeats the whole key, which is compared on opening:

* the teacher: a SHA-256 of its configuration and every tensor of its ``state_dict`` (names, dtypes, shapes,
  bytes), :func:`teacher_fingerprint` -- any change of weights or batch-norm statistics is a new key;
* the data: the identities of the windows in order (``"recording@first_epoch"`` from
  :meth:`WindowDataset.window_key <kdsleep.data.windows.WindowDataset.window_key>`, or any strings the caller
  passes) and, for a :class:`~kdsleep.data.windows.WindowDataset` over the on-disk cache, the preprocessing
  hash of the cache and the manifest entry of every recording used (over recordings in memory, a SHA-256 of
  their epoch arrays);
* the window settings: epochs per window, the teacher's input channel(s), ``p``, ``eps`` and the stored
  dtype, plus anything the caller adds in ``settings``.

Files are written to ``<key>/.partial/`` in chunks of windows; after each chunk the memory maps are flushed
and ``progress.json`` (written atomically with :mod:`kdsleep._io`) records it, so an interrupted build
resumes from the last finished chunk. The finished files are checksummed (BLAKE2b), moved into place, and
``meta.json`` is written last: a cache without it is incomplete and never read. Opening checks file sizes and,
by default, the checksums; a damaged cache raises :class:`DamagedTeacherCacheError` (``build`` then
rebuilds it).

Under ``torchrun``, build the cache in one process (rank 0) and open it with :meth:`TeacherCache.open` in
the others after a barrier; two processes must not build the same cache at once.

When not to use it. The cache holds the teacher's outputs for the windows as stored. Where the teacher's
input for a window index is not a pure function of that index -- random augmentation of the EEG (noise,
scaling, shifts, random crops), windows drawn at random offsets, a teacher in training mode -- the training
step must run the live teacher; :func:`teacher_inputs_are_fixed` is the predicate. Mixed precision is not a
reason to fall back: the cache holds float32 teacher outputs, at least as accurate as an autocast teacher.

Training-loop use::

    if teacher_inputs_are_fixed(train_set, augment=augment):
        cache = TeacherCache.build(teacher, train_set, run_dir / "teacher-cache")
        loader = DataLoader(WithIndex(train_set), ...)        # items gain their window index
        for eeg, ecg, labels, index in loader:
            teacher_maps, teacher_logits = cache.lookup(index, device=device, mode=at_mode)
            with FeatureTaps(student, student.tap_names) as taps:
                logits = student(ecg)
            loss = attention_transfer_from_maps(taps.features, teacher_maps, p=p, distance=distance,
                                                mode=at_mode) + final_loss(logits, labels, teacher_logits)
    else:
        ...  # the live teacher, as before
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kdsleep import ops
from kdsleep._io import write_json_atomic
from kdsleep.ops.attention import AT_DISTANCES
from kdsleep.ops.reference import attention_map

__all__ = [
    "DamagedTeacherCacheError",
    "TeacherCache",
    "TeacherCacheKey",
    "WithIndex",
    "attention_transfer_from_maps",
    "teacher_fingerprint",
    "teacher_inputs_are_fixed",
    "window_identities",
]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "kdsleep-teacher-cache"
CACHE_FORMAT_VERSION = 1
_PARTIAL = ".partial"
_DTYPES = {"float16": np.float16, "float32": np.float32}


class DamagedTeacherCacheError(ValueError):
    """A teacher cache on disk is incomplete, truncated, altered or written for another key."""


# --------------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------------
def _sha256_json(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def teacher_fingerprint(teacher: nn.Module) -> str:
    """SHA-256 of a model's configuration and of every tensor in its ``state_dict`` (content hash).

    Two models with the same architecture, weights and batch-norm statistics have the same fingerprint,
    whatever file or device they came from.
    """
    inner: Any = getattr(teacher, "module", teacher)
    digest = hashlib.sha256()
    config = inner.get_config() if hasattr(inner, "get_config") else {"class": type(inner).__name__}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in inner.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def window_identities(dataset: Any) -> list[str]:
    """``"recording@first_epoch"`` for every window of a dataset with ``window_key(i)``.

    Raises
    ------
    TypeError
        When the dataset cannot name its windows; pass ``window_ids`` to :meth:`TeacherCache.build`.
    """
    if not hasattr(dataset, "window_key"):
        raise TypeError(
            f"{type(dataset).__name__} has no window_key(i): pass window_ids (one string per window, stable "
            "across runs) to TeacherCache.build"
        )
    return [f"{key}@{start}" for key, start in (dataset.window_key(i) for i in range(len(dataset)))]


def _dataset_settings(dataset: Any) -> dict[str, Any]:
    """What a :class:`~kdsleep.data.windows.WindowDataset` adds to the key: its store's data, inputs, length."""
    settings: dict[str, Any] = {"dataset": type(dataset).__name__}
    store = getattr(dataset, "store", None)
    keys = list(getattr(dataset, "keys", []))
    if store is not None and hasattr(store, "config") and hasattr(store.config, "config_hash"):
        settings["preprocess"] = store.config.config_hash()
        settings["recordings"] = {key: store.meta(key) for key in keys}
    elif store is not None and hasattr(store, "epochs"):
        # recordings in memory have no manifest: their content is the key
        digest = hashlib.sha256()
        for key in keys:
            data = np.ascontiguousarray(store.epochs(key))
            digest.update(f"{key}|{data.dtype}|{data.shape}|".encode())
            digest.update(data.view(np.uint8).reshape(-1).tobytes())
        settings["recordings_sha256"] = digest.hexdigest()
    for name in ("eeg_channel", "window_epochs", "inputs"):
        if hasattr(dataset, name):
            settings[name] = getattr(dataset, name)
    return settings


@dataclass(frozen=True)
class TeacherCacheKey:
    """What a teacher cache is valid for (see the module docstring)."""

    teacher: str
    windows: str
    n_windows: int
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_run(
        cls,
        teacher: nn.Module,
        dataset: Any,
        *,
        window_ids: Sequence[str] | None = None,
        settings: dict[str, Any] | None = None,
        p: float = 2.0,
        eps: float = 1e-12,
        dtype: str = "float16",
    ) -> TeacherCacheKey:
        """The key of ``teacher`` on ``dataset`` (window identities from ``window_ids`` or the dataset)."""
        ids = list(window_identities(dataset) if window_ids is None else window_ids)
        if len(ids) != len(dataset):
            raise ValueError(f"{len(ids)} window_ids for a dataset of {len(dataset)} windows")
        return cls(
            teacher=teacher_fingerprint(teacher),
            windows=_sha256_json([str(i) for i in ids]),
            n_windows=len(ids),
            settings={
                **_dataset_settings(dataset),
                **(settings or {}),
                "p": float(p),
                "eps": float(eps),
                "dtype": dtype,
                "format_version": CACHE_FORMAT_VERSION,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        # through JSON, so that a key read back from meta.json compares equal
        return json.loads(
            json.dumps(
                {
                    "teacher": self.teacher,
                    "windows": self.windows,
                    "n_windows": self.n_windows,
                    "settings": self.settings,
                },
                sort_keys=True,
                default=str,
            )
        )

    @property
    def digest(self) -> str:
        """Folder name of the cache: 20 hex digits of the key's SHA-256."""
        return _sha256_json(self.to_dict())[:20]


# --------------------------------------------------------------------------------------------------------
# Predicate and index wrapper for the training loop
# --------------------------------------------------------------------------------------------------------
def teacher_inputs_are_fixed(
    dataset: Any, *, augment: Callable[..., Any] | None = None, teacher: nn.Module | None = None
) -> bool:
    """Whether the teacher's input for a window index is the same every time (so the cache may be used).

    False when an augmentation is given (``augment`` not None), when the dataset declares a random
    ``transform`` / ``augment`` attribute that is set, when it says ``random_windows = True`` (windows at
    random offsets), or when ``teacher`` is in training mode (dropout, batch statistics). The training loop
    runs the live teacher whenever this is False.
    """
    if augment is not None:
        return False
    for name in ("transform", "augment", "augmentation"):
        if getattr(dataset, name, None) is not None:
            return False
    if getattr(dataset, "random_windows", False):
        return False
    if teacher is not None and getattr(teacher, "module", teacher).training:
        return False
    return True


class WithIndex(torch.utils.data.Dataset):
    """A dataset whose items gain their index: ``(*item, index)``, for :meth:`TeacherCache.lookup`.

    Wrap the full dataset before any :class:`~torch.utils.data.Subset`, so the index is the one the cache
    was built with.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        item = self.dataset[i]
        return (*item, i)


# --------------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _array_files(n_layers: int) -> list[str]:
    return [f"map_{j:02d}.npy" for j in range(n_layers)] + ["norms.npy", "logits.npy"]


def window_input(position: int) -> Callable[[Any], Tensor]:
    """The teacher's input as element ``position`` of a window item (of a
    :class:`~kdsleep.data.windows.WindowDataset` item ``(eeg, ecg, labels)``: 0 the EEG, 1 the ECG input)."""

    def take(item: Any) -> Tensor:
        x = item[position]
        return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))

    return take


_default_input = window_input(0)


class TeacherCache:
    """Stored teacher attention maps and logits of one run (see the module docstring).

    Use :meth:`build` (computes what is missing, or opens a finished cache) or :meth:`open`.

    Attributes
    ----------
    root : Path
        The cache folder ``<folder>/<key digest>``.
    key : TeacherCacheKey
    layers : list of dict
        ``name``, ``channels`` and ``length`` of every stored map, in tap order.
    """

    def __init__(self, root: Path, meta: dict[str, Any], key: TeacherCacheKey) -> None:
        self.root = root
        self.meta = meta
        self.key = key
        self.layers: list[dict[str, Any]] = meta["layers"]
        self.n_windows = int(meta["n_windows"])
        self._maps = [np.load(root / f"map_{j:02d}.npy", mmap_mode="r") for j in range(len(self.layers))]
        self._norms = np.load(root / "norms.npy", mmap_mode="r")
        self._logits = np.load(root / "logits.npy", mmap_mode="r")
        self._scales = [1.0 / math.sqrt(layer["length"]) for layer in self.layers]

    def __len__(self) -> int:
        return self.n_windows

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers reopen the memory maps rather than pickling them
        return {"root": self.root, "meta": self.meta, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["meta"], state["key"])  # type: ignore[misc]

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, folder: str | os.PathLike[str], key: TeacherCacheKey, *, verify: bool = True
    ) -> TeacherCache:
        """Open the finished cache for ``key`` inside ``folder``.

        Parameters
        ----------
        folder : path-like
            The folder of teacher caches (the cache itself is ``folder/<key.digest>``).
        key : TeacherCacheKey
            The run's key; a cache written for another key is never returned.
        verify : bool
            Check every file's checksum (reads the whole cache once); sizes and headers are always checked.

        Raises
        ------
        FileNotFoundError
            No finished cache for this key.
        DamagedTeacherCacheError
            The cache is truncated, altered or belongs to another key.
        """
        root = Path(folder) / key.digest
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: no finished teacher cache for this key")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DamagedTeacherCacheError(f"{meta_path}: unreadable ({error})") from None
        if meta.get("format") != CACHE_FORMAT or meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise DamagedTeacherCacheError(
                f"{meta_path}: not a {CACHE_FORMAT} of version {CACHE_FORMAT_VERSION} "
                f"(format {meta.get('format')!r}, version {meta.get('format_version')!r})"
            )
        if meta.get("key") != key.to_dict():
            raise DamagedTeacherCacheError(f"{meta_path}: written for another key than the one asked for")
        n, dtype = int(meta["n_windows"]), _DTYPES[meta["dtype"]]
        expected = {
            f"map_{j:02d}.npy": ((n, layer["length"]), dtype) for j, layer in enumerate(meta["layers"])
        }
        expected["norms.npy"] = ((n, len(meta["layers"])), np.float32)
        expected["logits.npy"] = ((n, *meta["logits_shape"]), np.float32)
        for name, (shape, want) in expected.items():
            path = root / name
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError, EOFError) as error:
                raise DamagedTeacherCacheError(f"{path}: unreadable or truncated ({error})") from None
            if array.shape != tuple(shape) or array.dtype != want:
                raise DamagedTeacherCacheError(
                    f"{path}: array {array.shape} {array.dtype}, expected {tuple(shape)} {np.dtype(want)}"
                )
            del array
            if verify and _file_digest(path) != meta["checksums"][name]:
                raise DamagedTeacherCacheError(f"{path}: checksum mismatch; the file was altered or damaged")
        return cls(root, meta, key)

    # -- building -----------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        teacher: nn.Module,
        dataset: Any,
        folder: str | os.PathLike[str],
        key: TeacherCacheKey | None = None,
        *,
        window_ids: Sequence[str] | None = None,
        settings: dict[str, Any] | None = None,
        p: float = 2.0,
        eps: float = 1e-12,
        dtype: str = "float16",
        batch_size: int = 16,
        device: torch.device | str | None = None,
        input_fn: Callable[[Any], Tensor] = _default_input,
        verify: bool = True,
        progress: bool = False,
        on_chunk: Callable[[int], None] | None = None,
    ) -> TeacherCache:
        """Compute and store the teacher's maps and logits for every window, or open them if already stored.

        Parameters
        ----------
        teacher : UTime
            The frozen teacher (anything with ``features(x, detach=True) -> (logits, maps)``, ``tap_names``
            and ``get_config``); it is put in eval mode.
        dataset : Dataset
            Windows; ``input_fn(dataset[i])`` is the teacher's input (default: the first element, the EEG
            of :class:`~kdsleep.data.windows.WindowDataset`).
        folder : path-like
            Folder of teacher caches; this one goes to ``folder/<key digest>``.
        key : TeacherCacheKey, optional
            Default :meth:`TeacherCacheKey.for_run` with ``window_ids``, ``settings``, ``p``, ``eps``,
            ``dtype``.
        p, eps : float
            Exponent and norm floor of the attention maps; must match the loss.
        dtype : {"float16", "float32"}
            Storage type of the maps (see the module docstring for the float16 tolerance).
        batch_size : int
            Windows per teacher forward pass and per chunk of progress.
        device : torch.device or str, optional
            Where the teacher runs; default the device of its parameters.
        verify : bool
            Check the checksums when opening an existing cache.
        on_chunk : callable, optional
            Called with the chunk number after each chunk is recorded (used by tests to interrupt a build).

        Returns
        -------
        TeacherCache
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if len(dataset) == 0:
            raise ValueError("TeacherCache.build: the dataset has no windows")
        if key is None:
            key = TeacherCacheKey.for_run(
                teacher, dataset, window_ids=window_ids, settings=settings, p=p, eps=eps, dtype=dtype
            )
        elif key.n_windows != len(dataset):
            raise ValueError(f"key for {key.n_windows} windows, dataset of {len(dataset)}")
        p, eps = float(key.settings.get("p", p)), float(key.settings.get("eps", eps))
        dtype = key.settings.get("dtype", dtype)
        root = Path(folder) / key.digest
        try:
            return cls.open(folder, key, verify=verify)
        except FileNotFoundError:
            pass
        except DamagedTeacherCacheError as error:
            logger.warning("%s; rebuilding the teacher cache", error)
            for name in [*_array_files(99), "meta.json"]:
                (root / name).unlink(missing_ok=True)

        inner: Any = getattr(teacher, "module", teacher)
        inner.eval()
        if device is None:
            device = next(inner.parameters()).device
        device = torch.device(device)
        n = len(dataset)
        chunks = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        partial = root / _PARTIAL
        progress_path = partial / "progress.json"
        done: set[int] = set()
        layers: list[dict[str, Any]] | None = None
        logits_shape: list[int] | None = None
        if progress_path.exists():
            try:
                state = json.loads(progress_path.read_text(encoding="utf-8"))
                if state["key"] == key.to_dict() and state["batch_size"] == batch_size:
                    done = {int(c) for c in state["done"]}
                    layers, logits_shape = state["layers"], state["logits_shape"]
            except (OSError, json.JSONDecodeError, KeyError):
                done = set()
        if layers is None:
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)

        def forward(start: int, stop: int) -> tuple[Tensor, list[Tensor]]:
            x = torch.stack([input_fn(dataset[i]) for i in range(start, stop)]).to(device, torch.float32)
            with torch.no_grad():
                logits, maps = inner.features(x, detach=True)
            return logits.float(), maps

        first: tuple[Tensor, list[Tensor]] | None = None
        if layers is None:
            first = forward(*chunks[0])
            names = list(getattr(inner, "tap_names", [f"map{j}" for j in range(len(first[1]))]))
            layers = [
                {"name": name, "channels": int(m.shape[1]), "length": int(m.shape[2])}
                for name, m in zip(names, first[1], strict=True)
            ]
            logits_shape = list(first[0].shape[1:])
        assert logits_shape is not None
        np_dtype = _DTYPES[dtype]
        mode = "r+" if done else "w+"
        maps = [
            np.lib.format.open_memmap(partial / f"map_{j:02d}.npy", mode, np_dtype, (n, layer["length"]))
            for j, layer in enumerate(layers)
        ]
        norms = np.lib.format.open_memmap(partial / "norms.npy", mode, np.float32, (n, len(layers)))
        logits_file = np.lib.format.open_memmap(partial / "logits.npy", mode, np.float32, (n, *logits_shape))
        todo = [c for c in range(len(chunks)) if c not in done]
        for c in tqdm(todo, desc="teacher cache", unit="chunk", leave=False, disable=not progress):
            start, stop = chunks[c]
            logits, feats = first if (c == 0 and first is not None) else forward(start, stop)
            if not torch.isfinite(logits).all():
                raise ValueError(f"the teacher's logits are not finite for windows {start}..{stop - 1}")
            for j, (f, layer) in enumerate(zip(feats, layers, strict=True)):
                a = attention_map(f.float(), p, "mean")
                norm = a.norm(dim=1).clamp_min(eps)
                stored = a / norm[:, None] * math.sqrt(layer["length"])
                if not torch.isfinite(stored).all():
                    raise ValueError(
                        f"the teacher's map {layer['name']} is not finite for windows {start}..{stop - 1}"
                    )
                maps[j][start:stop] = stored.cpu().numpy().astype(np_dtype)
                norms[start:stop, j] = norm.cpu().numpy()
            logits_file[start:stop] = logits.cpu().numpy()
            for array in (*maps, norms, logits_file):
                array.flush()
            done.add(c)
            write_json_atomic(
                progress_path,
                {
                    "key": key.to_dict(),
                    "batch_size": batch_size,
                    "layers": layers,
                    "logits_shape": logits_shape,
                    "done": sorted(done),
                },
            )
            if on_chunk is not None:
                on_chunk(c)
        del maps, norms, logits_file
        files = _array_files(len(layers))
        checksums = {}
        for name in files:
            with open(partial / name, "rb+") as fh:
                os.fsync(fh.fileno())
            checksums[name] = _file_digest(partial / name)
            os.replace(partial / name, root / name)
        meta = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "key": key.to_dict(),
            "n_windows": n,
            "dtype": dtype,
            "p": p,
            "eps": eps,
            "layers": layers,
            "logits_shape": logits_shape,
            "checksums": checksums,
        }
        write_json_atomic(root / "meta.json", meta)
        shutil.rmtree(partial, ignore_errors=True)
        return cls(root, meta, key)

    # -- reading ------------------------------------------------------------------------------------------
    def lookup(
        self,
        indices: Sequence[int] | Tensor | np.ndarray,
        *,
        device: torch.device | str | None = None,
        mode: str = "canonical",
        maps: bool = True,
    ) -> tuple[list[Tensor], Tensor]:
        """Teacher maps and logits of the windows ``indices`` (float32 tensors).

        Parameters
        ----------
        indices : sequence of int
            Window indices into the dataset the cache was built from.
        device : torch.device or str, optional
            Where to put the tensors (default CPU).
        mode : {"canonical", "joshi"}
            ``"canonical"``: the per-sample normalised maps :math:`q_j`, ``(B, L_j)``; ``"joshi"``: the
            channel sums :math:`C_j a_j` that the authors' loss normalises across the batch.
        maps : bool
            Read the maps; ``False`` returns the logits only (and an empty list), for softmax distillation.

        Returns
        -------
        maps : list of Tensor
            One ``(B, L_j)`` map per stored layer, for :func:`attention_transfer_from_maps`.
        logits : Tensor
            ``(B, n_outputs, n_epochs)``.
        """
        if mode not in ("canonical", "joshi"):
            raise ValueError(f"lookup: mode must be 'canonical' or 'joshi', got {mode!r}")
        idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices, dtype=np.int64).reshape(
            -1
        )
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_windows):
            raise IndexError(
                f"window indices {idx.min()}..{idx.max()} out of range for {self.n_windows} windows"
            )
        # sorted reads are sequential on disk; the order is restored after
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        inverse = torch.from_numpy(np.argsort(order, kind="stable"))
        logits = torch.from_numpy(np.ascontiguousarray(self._logits[sorted_idx]))[inverse]
        logits = logits.to(device) if device is not None else logits
        if not maps:
            return [], logits
        norms = torch.from_numpy(np.ascontiguousarray(self._norms[sorted_idx]))[inverse]
        teacher_maps = []
        for j, (array, scale) in enumerate(zip(self._maps, self._scales, strict=True)):
            m = torch.from_numpy(np.ascontiguousarray(array[sorted_idx])).float()[inverse]
            if mode == "canonical":
                m.mul_(scale)
            else:
                m.mul_(norms[:, j : j + 1] * (scale * self.layers[j]["channels"]))
            teacher_maps.append(m.to(device) if device is not None else m)
        return teacher_maps, logits


# --------------------------------------------------------------------------------------------------------
# The attention-transfer loss against stored maps
# --------------------------------------------------------------------------------------------------------
def attention_transfer_from_maps(
    student_features: Sequence[Tensor],
    teacher_maps: Sequence[Tensor],
    *,
    p: float = 2.0,
    distance: str,
    weights: Sequence[float] | None = None,
    mode: str = "canonical",
    eps: float = 1e-12,
    backend: str = "fused",
) -> Tensor:
    r"""Attention-transfer loss of student feature maps against stored teacher attention maps.

    Equal to :func:`kdsleep.ops.attention_transfer_loss` of the student and the teacher's feature maps with
    the same options (within float32 rounding for float32 maps, within the float16 tolerance of the module
    docstring for float16 maps); differentiable with respect to the student only.

    Parameters
    ----------
    student_features : list of Tensor
        ``(B, C_j, L_j)`` per layer.
    teacher_maps : list of Tensor
        ``(B, L_j)`` per layer: in ``mode="canonical"`` any positive per-sample multiple of the teacher's
        attention map (e.g. :math:`q_j` from :meth:`TeacherCache.lookup`); in ``mode="joshi"`` the channel
        sums :math:`C_j a_j` (``lookup(..., mode="joshi")``).
    p : float
        Exponent of the student's attention maps; the teacher maps must have been computed with the same.
    distance : {"squared_l2", "squared_mean", "squared", "l2"}
        As for :func:`kdsleep.ops.attention_transfer_loss` (``"squared"`` is an alias of ``"squared_mean"``,
        :data:`kdsleep.ops.attention.AT_DISTANCES`); ``"squared_l2"`` is the per-sample sum of squared
        differences over positions, averaged over the batch (``L_j`` times ``"squared"``). Ignored by
        ``mode="joshi"``.
    weights : list of float, optional
        Per-layer weights (default 1 per layer, or ``1/J`` in ``mode="joshi"``).
    mode : {"canonical", "joshi"}
    eps : float
        Norm floor, as in the live loss.
    backend : {"fused", "torch"}
        ``"fused"``: the fused kernel of :mod:`kdsleep.ops`, given each teacher map as a one-channel feature
        map :math:`m^{1/p}` (whose attention map is :math:`m` again); ``"torch"``: plain PyTorch ops (twice
        differentiable).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    student = list(student_features)
    teacher = list(teacher_maps)
    if len(student) != len(teacher) or not student:
        raise ValueError(
            f"attention_transfer_from_maps: {len(student)} student feature maps and {len(teacher)} teacher maps"
        )
    for j, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.dim() != 3 or t.dim() != 2 or s.shape[0] != t.shape[0] or s.shape[2] != t.shape[1]:
            raise ValueError(
                f"attention_transfer_from_maps: layer {j}: student {tuple(s.shape)} must be (B, C, L) and "
                f"teacher {tuple(t.shape)} (B, L) with the same B and L"
            )
    if mode not in ("canonical", "joshi"):
        raise ValueError(f"attention_transfer_from_maps: mode must be 'canonical' or 'joshi', got {mode!r}")
    if distance not in AT_DISTANCES:
        raise ValueError(
            f"attention_transfer_from_maps: distance must be one of {list(AT_DISTANCES)}, got {distance!r}"
        )
    distance = {"squared_mean": "squared"}.get(distance, distance)
    n = len(student)
    w = [1.0] * n if mode == "canonical" else [1.0 / n] * n
    if weights is not None:
        w = [float(x) for x in weights]
        if len(w) != n:
            raise ValueError(f"attention_transfer_from_maps: {len(w)} weights for {n} layers")
    if mode == "canonical" and distance == "squared_l2":
        # sum over positions, mean over the batch = L_j x the mean over (batch, positions)
        w = [wj * s.shape[2] for wj, s in zip(w, student, strict=True)]
        distance = "squared"
    dtype = student[0].dtype if student[0].dtype in (torch.float32, torch.float64) else torch.float32
    teacher = [t.detach().to(dtype) for t in teacher]
    if backend == "fused":
        p = float(p)
        ones = [t.clamp_min(0).pow(1.0 / p).unsqueeze(1) for t in teacher]
        kwargs: dict[str, Any] = {"p": p, "weights": w, "mode": mode, "eps": eps}
        if mode == "canonical":
            kwargs["distance"] = distance
        return ops.attention_transfer_loss(student, ones, **kwargs)
    if backend != "torch":
        raise ValueError(f"attention_transfer_from_maps: backend must be 'fused' or 'torch', got {backend!r}")
    total: Tensor | None = None
    for s, t, wj in zip(student, teacher, w, strict=True):
        if mode == "canonical":
            qs = torch.nn.functional.normalize(attention_map(s, p, "mean"), dim=1, eps=eps)
            qt = torch.nn.functional.normalize(t, dim=1, eps=eps)
            term = (qs - qt).pow(2).mean() if distance == "squared" else (qs - qt).norm(dim=1).mean()
        else:
            qs = torch.nn.functional.normalize(attention_map(s, p, "sum"), dim=0, eps=eps)
            qt = torch.nn.functional.normalize(t, dim=0, eps=eps)
            term = (qs - qt).abs().mean()
        total = wj * term if total is None else total + wj * term
    assert total is not None
    return total
