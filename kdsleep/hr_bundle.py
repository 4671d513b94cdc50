"""The heart-rate stager bundle: a trained :class:`kdsleep.models.hr_stager.HRStager` with everything needed
to stage a night from beat times, and its file format.

Inputs (:func:`beat_inputs`)
    For a night of ``n_epochs`` 30-s epochs: the 28 HRV feature columns of
    :func:`kdsleep.data.hrv_features.recording_features` and the heart-rate curve of
    :func:`kdsleep.data.heart_rate.heart_rate_channel` at ``sfreq`` (2 Hz), cut into epochs of 60 samples.

File (:meth:`HRStagerBundle.save`, :meth:`HRStagerBundle.load`)
    One ``torch.save`` dictionary, written atomically and readable with ``torch.load(weights_only=True)``:
    ``format`` (:data:`FORMAT`), ``format_version``, the weights (``state_dict``) and model configuration
    (``config``), feature mean/SD and names, class names and grouping, the heart-rate rate (``sfreq``), the
    epoch length, the recipe settings (:class:`RecipeSettings`) and a ``training`` record.

The recipe that trains a bundle, and its cross-validation, are in :mod:`kdsleep.study.hr_recipe`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdsleep._io import save_torch_atomic
from kdsleep.data.heart_rate import heart_rate_channel
from kdsleep.data.hrv_features import recording_features
from kdsleep.models.hr_stager import HRStager

__all__ = [
    "EPOCH_SECONDS",
    "FORMAT",
    "FORMAT_VERSION",
    "HRStagerBundle",
    "HRStagerError",
    "RecipeSettings",
    "beat_inputs",
    "is_hr_stager_file",
    "stager_proba",
]

#: Value of the ``format`` key of a saved heart-rate stager.
FORMAT = "kdsleep-hr-stager"
FORMAT_VERSION = 1
EPOCH_SECONDS = 30.0


class HRStagerError(ValueError):
    """A saved heart-rate stager that cannot be read, or inputs that do not fit it."""


@dataclass(frozen=True)
class RecipeSettings:
    """Settings of the recipe (the defaults are the ones cross-validated on slpdb)."""

    hidden: int = 32
    n_layers: int = 2
    drop_prob: float = 0.3
    sfreq: float = 2.0
    crop: int = 120
    batch: int = 8
    steps: int = 15
    max_epochs: int = 30
    patience: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("drop_prob", "noise", "seed", "weight_decay"):
                if value < 0:
                    raise ValueError(f"RecipeSettings.{f.name}: expected >= 0, got {value}")
            elif not value > 0:
                raise ValueError(f"RecipeSettings.{f.name}: expected > 0, got {value}")

    @property
    def samples_per_epoch(self) -> int:
        """Heart-rate samples per 30-s epoch."""
        return int(round(EPOCH_SECONDS * self.sfreq))


def beat_inputs(
    beat_times: np.ndarray, n_epochs: int, sfreq: float = 2.0, *, source: str = "recording"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The recipe's two inputs for a night of beats.

    Parameters
    ----------
    beat_times : np.ndarray
        Beat times in seconds from the recording start, strictly increasing.
    n_epochs : int
        Whole 30-s epochs of the night.
    sfreq : float
        Rate of the heart-rate curve in Hz.
    source : str
        Named in error messages.

    Returns
    -------
    features : np.ndarray of float32, shape (n_epochs, 28)
        :func:`kdsleep.data.hrv_features.recording_features` (not yet standardised).
    heart_rate : np.ndarray of float32, shape (n_epochs, samples_per_epoch)
        :func:`kdsleep.data.heart_rate.heart_rate_channel`, epoch by epoch.
    names : list of str
        Feature names.
    """
    if n_epochs < 1:
        raise ValueError(f"{source}: no whole {EPOCH_SECONDS:g}-s epoch to stage")
    spe = int(round(EPOCH_SECONDS * sfreq))
    beat_times = np.asarray(beat_times, dtype=np.float64)
    hr, _valid = heart_rate_channel(beat_times, sfreq, n_epochs * spe, source=source)
    features, names = recording_features(beat_times, n_epochs)
    return features.astype(np.float32), hr.reshape(n_epochs, spe).astype(np.float32), names


@dataclass
class HRStagerBundle:
    """A trained heart-rate stager with everything needed to stage a night from beats."""

    model: HRStager
    feature_mean: np.ndarray
    feature_sd: np.ndarray
    feature_names: list[str]
    class_names: tuple[str, ...]
    grouping: str
    settings: RecipeSettings
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    kind = "hr-stager"

    @property
    def sfreq(self) -> float:
        """Rate of the heart-rate curve in Hz."""
        return float(self.settings.sfreq)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def epoch_seconds(self) -> float:
        """Epoch length in seconds."""
        return EPOCH_SECONDS

    def describe(self) -> str:
        """One line for users."""
        return (
            f"heart-rate stager (BiGRU over {len(self.feature_names)} HRV features + {self.sfreq:g}-Hz heart-rate "
            f"curve), {self.n_classes} classes ({'-'.join(self.class_names)}), whole night, 30-s epochs"
        )

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Features standardised with the training mean/SD, NaN set to 0."""
        return np.nan_to_num((features - self.feature_mean) / self.feature_sd).astype(np.float32)

    def predict_proba(self, features: np.ndarray, heart_rate: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n_epochs, n_classes)`` of one night (raw features of :func:`beat_inputs`)."""
        if features.ndim != 2 or heart_rate.ndim != 2 or features.shape[0] != heart_rate.shape[0]:
            raise HRStagerError(
                f"expected features (n_epochs, {len(self.feature_names)}) and heart rate (n_epochs, "
                f"{self.model.n_times}), got {features.shape} and {heart_rate.shape}"
            )
        return stager_proba(self.model, self.standardise(features), heart_rate)

    def predict_beats(
        self, beat_times: np.ndarray, n_epochs: int, *, source: str = "recording"
    ) -> np.ndarray:
        """Class probabilities of a night given its beat times."""
        features, hr, _names = beat_inputs(beat_times, n_epochs, self.sfreq, source=source)
        return self.predict_proba(features, hr)

    def to_dict(self) -> dict[str, Any]:
        """The saved dictionary (tensors, numbers, strings and lists only)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "config": self.model.config(),
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_sd": [float(v) for v in self.feature_sd],
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "grouping": self.grouping,
            "sfreq": self.sfreq,
            "epoch_seconds": EPOCH_SECONDS,
            "settings": asdict(self.settings),
            # plain JSON types only, so that the file loads with torch.load(weights_only=True)
            "training": json.loads(json.dumps(self.training, default=str)),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically with :func:`kdsleep._io.save_torch_atomic`."""
        return save_torch_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HRStagerBundle:
        """Read a saved stager.

        Raises
        ------
        HRStagerError
            Naming the file and what is wrong with it.
        """
        path = Path(path)
        if not path.is_file():
            raise HRStagerError(f"{path}: no such heart-rate stager file")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a file that is not its format
            raise HRStagerError(
                f"{path}: not a heart-rate stager (torch cannot load it: {type(err).__name__})"
            ) from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HRStagerError(f"{path}: not a heart-rate stager (no 'format': {FORMAT!r} entry)")
        if data.get("format_version") != FORMAT_VERSION:
            raise HRStagerError(
                f"{path}: heart-rate stager format_version {data.get('format_version')!r}, this kdsleep reads "
                f"{FORMAT_VERSION}"
            )
        try:
            config = dict(data["config"])
            config["conv_filters"] = tuple(config["conv_filters"])
            model = HRStager(**config)
            model.load_state_dict(data["state_dict"])
            settings = RecipeSettings(**data["settings"])
            mean = np.asarray(data["feature_mean"], dtype=np.float32)
            sd = np.asarray(data["feature_sd"], dtype=np.float32)
            names = list(data["feature_names"])
            classes = tuple(data["class_names"])
            grouping = str(data["grouping"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise HRStagerError(f"{path}: damaged heart-rate stager: {type(err).__name__}: {err}") from err
        if not (mean.shape == sd.shape == (model.n_features,) == (len(names),)):
            raise HRStagerError(
                f"{path}: feature_mean/feature_sd/feature_names lengths {mean.shape}/{sd.shape}/{len(names)} differ "
                f"from the model's {model.n_features} features"
            )
        if len(classes) != model.n_outputs:
            raise HRStagerError(
                f"{path}: {len(classes)} class names for a model of {model.n_outputs} outputs"
            )
        if abs(float(data["sfreq"]) - settings.sfreq) > 1e-9 or settings.samples_per_epoch != model.n_times:
            raise HRStagerError(
                f"{path}: sfreq {data['sfreq']} does not match the model's {model.n_times} samples"
            )
        model.eval()
        return cls(model, mean, sd, names, classes, grouping, settings, dict(data.get("training", {})), path)


def is_hr_stager_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a saved heart-rate stager (False for anything else, including unreadable files)."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def stager_proba(model: nn.Module, features: np.ndarray, heart_rate: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n_epochs, n_classes)`` of ``model`` for one night of standardised features."""
    model.eval()
    with torch.no_grad():
        logits = model(
            torch.from_numpy(features)[None], torch.from_numpy(np.ascontiguousarray(heart_rate))[None]
        )
    return F.softmax(logits[0], dim=-1).numpy().astype(np.float32)
