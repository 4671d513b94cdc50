"""Model checkpoints: a trained U-Time with everything needed to use it on a new recording.

The format is shared by training (:mod:`kdsleep.distill`, which writes it) and deployment
(:mod:`kdsleep.inference`, :mod:`kdsleep.export`, which read it); it depends on neither.

A checkpoint is a ``torch.save`` dictionary of plain values and tensors (loadable with ``weights_only``):

``format``
    ``"kdsleep-checkpoint"`` (tells a kdsleep checkpoint from any other torch file).
``format_version``
    :data:`CHECKPOINT_FORMAT_VERSION`; a reader refuses versions it does not know.
``model_config`` / ``state_dict``
    :meth:`UTime.get_config` and the weights.
``modality``, ``channel``, ``grouping``, ``class_names``
    What the model reads (``"eeg"`` or ``"ecg"``; the channel asked for, e.g. ``"C3-A2"`` or ``"ECG I"``,
    or the pipeline's own name ``"ecg"`` / ``"eeg"`` when the dataset's default candidates were read) and
    predicts.
``preprocess``
    :meth:`PreprocessConfig.to_dict` of the pipeline the training windows went through; inference must
    apply the same one.
``variant``, ``metrics``, ``extra``
    How it was trained and how it scored (free-form dictionaries).
``kdsleep_version``, ``git_commit``
    Provenance.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdsleep._io import git_commit, kdsleep_version, save_torch_atomic
from kdsleep.data.stages import get_grouping
from kdsleep.models import UTime

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

#: Marker stored in every checkpoint.
CHECKPOINT_FORMAT = "kdsleep-checkpoint"
#: Version of the layout described in the module docstring.
CHECKPOINT_FORMAT_VERSION = 1

_MODALITIES = ("eeg", "ecg")
_REQUIRED = (
    "model_config",
    "state_dict",
    "modality",
    "channel",
    "grouping",
    "class_names",
    "preprocess",
)


class CheckpointError(ValueError):
    """A file that is not a readable kdsleep checkpoint, or one that does not fit its use."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : UTime
        Rebuilt from the stored configuration with the stored weights, in eval mode.
    modality : {"eeg", "ecg"}
        The signal the model reads.
    channel : str
        The channel it was trained on, e.g. ``"C3-A2"`` or ``"ECG I"`` (or the cache's name ``"ecg"``).
    grouping : str
        Stage grouping name (``"w-l-d-r"``, ``"w-n-r"``, ``"aasm-5"``).
    class_names : list of str
        Name of each output class, in logit order.
    sfreq : float
        Sampling frequency of the input in Hz.
    n_epochs : int
        Epochs per input window.
    epoch_seconds : float
        Seconds per epoch.
    preprocess : dict
        :meth:`PreprocessConfig.to_dict` of the training pipeline.
    variant : dict
        The training variant and its settings.
    metrics : dict
        Metrics recorded at save time (e.g. validation / test weighted F1).
    kdsleep_version : str
        Package version that wrote the file.
    git_commit : str or None
        Source commit that wrote the file.
    extra : dict
        Anything else the writer stored.
    path : Path or None
        Where it was read from.
    inputs : list of str
        The preprocessed channels the model reads, in input order (``["ecg"]``, ``["ihr"]`` for heart rate,
        ``["ecg", "ihr"]``); files without the field read ``[modality]``.
    """

    model: UTime
    modality: str
    channel: str
    grouping: str
    class_names: list[str]
    sfreq: float
    n_epochs: int
    epoch_seconds: float
    preprocess: dict[str, Any]
    variant: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    kdsleep_version: str = ""
    git_commit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    inputs: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    def check_compatible(
        self,
        *,
        grouping: str | int | None = None,
        channel: str | None = None,
        modality: str | None = None,
        sfreq: float | None = None,
        n_epochs: int | None = None,
    ) -> None:
        """Raise :class:`CheckpointError` naming the field when the checkpoint does not fit the request.

        Parameters
        ----------
        grouping : str or int, optional
            Required stage grouping (name or number of classes).
        channel : str, optional
            Required channel name (compared case-insensitively).
        modality : {"eeg", "ecg"}, optional
            Required modality.
        sfreq : float, optional
            Required sampling frequency.
        n_epochs : int, optional
            Required epochs per window.
        """
        where = f"{self.path}" if self.path else "checkpoint"
        if grouping is not None:
            wanted = get_grouping(grouping)
            if wanted.name != self.grouping:
                raise CheckpointError(
                    f"{where}: trained for the {self.n_classes}-class grouping {self.grouping!r} "
                    f"({'-'.join(self.class_names)}), but {wanted.n_classes}-class {wanted.name!r} was requested"
                )
        if modality is not None and modality != self.modality:
            raise CheckpointError(
                f"{where}: a {self.modality.upper()} model, but {modality.upper()} was requested"
            )
        if channel is not None and channel.strip().lower() != self.channel.strip().lower():
            raise CheckpointError(
                f"{where}: trained on channel {self.channel!r}, but channel {channel!r} was requested"
            )
        if sfreq is not None and abs(float(sfreq) - self.sfreq) > 1e-9:
            raise CheckpointError(f"{where}: expects {self.sfreq:g} Hz input, got {float(sfreq):g} Hz")
        if n_epochs is not None and int(n_epochs) != self.n_epochs:
            raise CheckpointError(f"{where}: expects windows of {self.n_epochs} epochs, got {n_epochs}")


def _plain(value: Any, name: str) -> Any:
    """Check that a metadata value survives ``weights_only`` loading (plain Python types only)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, name) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    raise TypeError(
        f"save_checkpoint: {name} holds a {type(value).__name__}; only plain JSON-like values are stored"
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: UTime | torch.nn.Module,
    *,
    modality: str,
    channel: str,
    grouping: str | int,
    preprocess: dict[str, Any] | Any,
    variant: dict[str, Any] | str | None,
    metrics: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    inputs: list[str] | tuple[str, ...] | None = None,
) -> Path:
    """Write a model checkpoint atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.pt``).
    model : UTime
        The model; a ``DistributedDataParallel`` / ``torch.compile`` wrapper is unwrapped.
    modality : {"eeg", "ecg"}
        The signal the model reads.
    channel : str
        The channel it was trained on (``"C3-A2"``, ``"ECG I"``, ...).
    grouping : str or int
        Stage grouping name or number of classes; must match the model's outputs.
    preprocess : dict or PreprocessConfig
        The preprocessing settings of the training data.
    variant : dict or str or None
        Training variant (name or its settings).
    metrics : dict or None
        Metrics to store with the model.
    extra : dict, optional
        More plain metadata.
    inputs : list of str, optional
        The preprocessed channels the model reads, in order (default ``[modality]``); their number must be
        the model's input channels.

    Returns
    -------
    Path
        ``path``.
    """
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, UTime):
        raise TypeError(f"save_checkpoint: expected a UTime model, got {type(model).__name__}")
    if modality not in _MODALITIES:
        raise ValueError(f"save_checkpoint: modality must be one of {_MODALITIES}, got {modality!r}")
    stage_grouping = get_grouping(grouping)
    if stage_grouping.n_classes != model.n_outputs:
        raise ValueError(
            f"save_checkpoint: grouping {stage_grouping.name!r} has {stage_grouping.n_classes} classes but the "
            f"model has {model.n_outputs} outputs"
        )
    inputs = [str(c) for c in (inputs or [modality])]
    if len(inputs) != model.n_chans:
        raise ValueError(
            f"save_checkpoint: inputs {inputs} name {len(inputs)} channels but the model reads {model.n_chans}"
        )
    if hasattr(preprocess, "to_dict"):
        preprocess = preprocess.to_dict()
    if isinstance(variant, str):
        variant = {"name": variant}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_class": "UTime",
        "model_config": _plain(model.get_config(), "model_config"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "modality": modality,
        "channel": str(channel),
        "inputs": inputs,
        "grouping": stage_grouping.name,
        "class_names": list(stage_grouping.class_names),
        "preprocess": _plain(dict(preprocess), "preprocess"),
        "variant": _plain(dict(variant or {}), "variant"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "extra": _plain(dict(extra or {}), "extra"),
        "kdsleep_version": kdsleep_version(),
        "git_commit": git_commit(),
    }
    return save_torch_atomic(path, payload)


def read_checkpoint_payload(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """The raw checkpoint dictionary, after checking the format marker and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    # a damaged file fails in many ways inside the unpickler (KeyError, EOFError, RuntimeError, ...)
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable kdsleep checkpoint (corrupt, truncated or not a torch file): {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a kdsleep checkpoint (no format marker {CHECKPOINT_FORMAT!r}); expected a file written "
            f"by `kdsleep train`"
        )
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not known to kdsleep {kdsleep_version()} "
            f"(it reads version {CHECKPOINT_FORMAT_VERSION}); use the kdsleep version that wrote it"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: corrupt kdsleep checkpoint, missing fields {missing}")
    return payload


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model.

    Parameters
    ----------
    path : path-like
        The checkpoint file.
    map_location : str or torch.device, default "cpu"
        Where to put the weights.

    Returns
    -------
    Checkpoint
        With ``model`` in eval mode.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        For a file that is not a kdsleep checkpoint, a corrupt one, or an unknown format version.
    """
    path = Path(path)
    payload = read_checkpoint_payload(path, map_location)
    try:
        model = UTime(**payload["model_config"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(
            f"{path}: corrupt kdsleep checkpoint, the model cannot be rebuilt: {err}"
        ) from err
    model.to(map_location).eval()
    config = payload["model_config"]
    return Checkpoint(
        model=model,
        modality=payload["modality"],
        channel=payload["channel"],
        grouping=payload["grouping"],
        class_names=list(payload["class_names"]),
        sfreq=float(config["sfreq"]),
        n_epochs=int(config["n_epochs"]),
        epoch_seconds=float(config["epoch_seconds"]),
        preprocess=dict(payload["preprocess"]),
        variant=dict(payload.get("variant") or {}),
        metrics=dict(payload.get("metrics") or {}),
        kdsleep_version=str(payload.get("kdsleep_version", "")),
        git_commit=payload.get("git_commit"),
        extra=dict(payload.get("extra") or {}),
        path=path,
        inputs=[str(c) for c in payload.get("inputs") or [payload["modality"]]],
    )
