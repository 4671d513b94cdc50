"""Models shipped with the package, loaded by name and checked against their SHA-256 at load.

Each entry of :data:`REGISTRY` names a weight file inside ``kdsleep/models/weights/`` with its kind (a kdsleep
U-Time checkpoint, ``"checkpoint"``, or a heart-rate stager of :mod:`kdsleep.hr_bundle`,
``"hr-stager"``), its checksum, its classes, its inputs and a model card under ``docs/models/``. :func:`load_pretrained`
refuses a weight file whose checksum differs (damaged or replaced) and one whose classes or inputs differ from
the entry. :func:`resolve_model` turns what a user passes as ``--model`` into a loaded model: a checkpoint or
heart-rate stager file, else a registered name, else an error that lists the registered names.

The registry holds only models whose weights are in the package: no entry is listed before its weight file,
checksum and model card exist. :func:`registry_entry` computes an entry for a new weight file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kdsleep._io import sha256_file
from kdsleep.checkpoint import Checkpoint
from kdsleep.hr_bundle import HRStagerBundle, HRStagerError, is_hr_stager_file
from kdsleep.inference import InferenceError, load_model_checkpoint

#: What a registry entry or a model file loads as.
LoadedModel = Checkpoint | HRStagerBundle

#: Kinds of weight file.
MODEL_KINDS = ("checkpoint", "hr-stager")
#: Inputs of a heart-rate stager (it computes HRV features and a heart-rate curve from beat times).
HR_STAGER_INPUTS = ("beats",)

__all__ = [
    "DEFAULT_MODEL",
    "HR_STAGER_INPUTS",
    "MODEL_KINDS",
    "REGISTRY",
    "WEIGHTS_DIR",
    "PretrainedModel",
    "PretrainedModelError",
    "available_models",
    "load_model_file",
    "load_pretrained",
    "model_info",
    "registry_entry",
    "resolve_model",
    "weights_path",
]

#: Folder of the shipped weight files.
WEIGHTS_DIR = Path(__file__).resolve().with_name("weights")


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped model.

    Attributes
    ----------
    name : str
        What users pass to ``--model`` (``hr-slpdb-3class``).
    filename : str
        Weight file inside :data:`WEIGHTS_DIR`.
    sha256 : str
        Hex SHA-256 of the weight file.
    classes : tuple of str
        Class names in output order (``("W", "N", "R")``).
    description : str
        One line: what it stages from what, trained on what.
    inputs : tuple of str
        Input channels of the checkpoint (``("ihr",)``: heart rate from beats; ``("beats",)`` for a
        heart-rate stager).
    card : str
        Model card, relative to the repository (``docs/models/hr-slpdb.md``).
    kind : str
        ``"checkpoint"`` (a kdsleep U-Time checkpoint) or ``"hr-stager"``
        (:class:`kdsleep.hr_bundle.HRStagerBundle`).
    """

    name: str
    filename: str
    sha256: str
    classes: tuple[str, ...]
    description: str
    inputs: tuple[str, ...] = ("ihr",)
    card: str = ""
    kind: str = "checkpoint"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(
                f"PretrainedModel {self.name!r}: kind {self.kind!r}, expected one of {MODEL_KINDS}"
            )


#: Shipped models by name (an entry is added together with its weight file and model card).
REGISTRY: dict[str, PretrainedModel] = {
    "hr-slpdb-3class": PretrainedModel(
        name="hr-slpdb-3class",
        filename="hr-slpdb-3class.pt",
        sha256="1745723df1276131e37525ebda855c5ccdfe89f67c3ffae367012d22f5a9b20a",
        classes=("W", "N", "R"),
        description="W/N/R from heartbeat times, BiGRU on HRV features + heart rate, trained on slpdb",
        inputs=HR_STAGER_INPUTS,
        card="docs/models/hr-slpdb.md",
        kind="hr-stager",
    ),
    "hr-slpdb-4class": PretrainedModel(
        name="hr-slpdb-4class",
        filename="hr-slpdb-4class.pt",
        sha256="317a65e4a8854587910d1dec1cf647655432703c69dc6715fc5a845afbdd6cd4",
        classes=("W", "L", "D", "R"),
        description="W/light/deep/R from heartbeat times, BiGRU on HRV features + heart rate, trained on slpdb",
        inputs=HR_STAGER_INPUTS,
        card="docs/models/hr-slpdb.md",
        kind="hr-stager",
    ),
}

#: Model used when ``kdsleep predict --beats`` is given no ``--model``.
DEFAULT_MODEL: str | None = "hr-slpdb-3class"


class PretrainedModelError(InferenceError):
    """An unknown model name, a missing or damaged weight file, or an entry that does not match its file."""


def _registry(registry: Mapping[str, PretrainedModel] | None) -> Mapping[str, PretrainedModel]:
    return REGISTRY if registry is None else registry


def available_models(registry: Mapping[str, PretrainedModel] | None = None) -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_registry(registry))


def _names_text(registry: Mapping[str, PretrainedModel]) -> str:
    names = sorted(registry)
    if not names:
        return "no model is shipped with this version of kdsleep; pass a checkpoint file written by kdsleep train"
    return "shipped models: " + ", ".join(f"{n} ({registry[n].description})" for n in names)


def model_info(name: str, registry: Mapping[str, PretrainedModel] | None = None) -> PretrainedModel:
    """The registry entry of ``name``.

    Raises
    ------
    PretrainedModelError
        For an unknown name; the message lists the registered names.
    """
    table = _registry(registry)
    if name not in table:
        raise PretrainedModelError(f"unknown model {name!r}: {_names_text(table)}")
    return table[name]


def weights_path(
    name: str,
    registry: Mapping[str, PretrainedModel] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Path of the weight file of ``name`` (in :data:`WEIGHTS_DIR` unless ``weights_dir`` is given)."""
    entry = model_info(name, registry)
    return Path(weights_dir if weights_dir is not None else WEIGHTS_DIR) / entry.filename


def load_pretrained(
    name: str,
    *,
    registry: Mapping[str, PretrainedModel] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load a shipped model by name, after checking its weight file's SHA-256.

    Parameters
    ----------
    name : str
        Registered name.
    registry : mapping, optional
        Registry to look in (default :data:`REGISTRY`).
    weights_dir : path-like, optional
        Folder of the weight files (default :data:`WEIGHTS_DIR`).

    Returns
    -------
    Checkpoint or HRStagerBundle
        As the entry's ``kind`` says.

    Raises
    ------
    PretrainedModelError
        For an unknown name, a missing weight file, a checksum mismatch, or a checkpoint whose classes or
        inputs differ from the entry.
    """
    entry = model_info(name, registry)
    path = weights_path(name, registry, weights_dir)
    if not path.is_file():
        raise PretrainedModelError(
            f"{path}: weight file of shipped model {name!r} is missing; the installation is incomplete, reinstall "
            "kdsleep"
        )
    actual = sha256_file(path)
    if actual != entry.sha256.lower():
        raise PretrainedModelError(
            f"{path}: checksum mismatch for shipped model {name!r}: sha256 {actual}, expected {entry.sha256}; "
            "the file is damaged or was replaced, reinstall kdsleep"
        )
    if entry.kind == "hr-stager":
        stager = _load_hr_stager(path, PretrainedModelError)
        if tuple(stager.class_names) != tuple(entry.classes):
            raise PretrainedModelError(
                f"{path}: shipped model {name!r} predicts {list(stager.class_names)}, but its registry entry "
                f"says {list(entry.classes)}"
            )
        return stager
    checkpoint = load_model_checkpoint(path)
    if tuple(checkpoint.class_names) != tuple(entry.classes):
        raise PretrainedModelError(
            f"{path}: shipped model {name!r} predicts {list(checkpoint.class_names)}, but its registry entry "
            f"says {list(entry.classes)}"
        )
    if tuple(checkpoint.inputs) != tuple(entry.inputs):
        raise PretrainedModelError(
            f"{path}: shipped model {name!r} reads {list(checkpoint.inputs)}, but its registry entry says "
            f"{list(entry.inputs)}"
        )
    return checkpoint


def _load_hr_stager(path: Path, error: type[InferenceError] = InferenceError) -> HRStagerBundle:
    try:
        return HRStagerBundle.load(path)
    except HRStagerError as err:
        raise error(str(err)) from err


def load_model_file(path: str | os.PathLike[str]) -> LoadedModel:
    """A kdsleep checkpoint or a heart-rate stager file, whichever ``path`` holds."""
    path = Path(path)
    if is_hr_stager_file(path):
        return _load_hr_stager(path)
    return load_model_checkpoint(path)


def resolve_model(
    model: LoadedModel | str | os.PathLike[str] | None,
    *,
    registry: Mapping[str, PretrainedModel] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    default: str | None = None,
) -> LoadedModel:
    """The model meant by a ``--model`` value.

    Parameters
    ----------
    model : Checkpoint, HRStagerBundle, path-like, str or None
        A loaded model (returned as is), a checkpoint or heart-rate stager file, a registered name, or None
        for ``default``.
    registry, weights_dir
        As for :func:`load_pretrained`.
    default : str, optional
        Name used when ``model`` is None (default :data:`DEFAULT_MODEL`).

    Raises
    ------
    PretrainedModelError
        When ``model`` is neither an existing file nor a registered name (the message lists the names), or
        when it is None and no default model exists.
    InferenceError
        For a file that is not a kdsleep checkpoint.
    """
    if isinstance(model, (Checkpoint, HRStagerBundle)):
        return model
    table = _registry(registry)
    if model is None:
        name = default if default is not None else DEFAULT_MODEL
        if name is None:
            raise PretrainedModelError(
                f"no model given (a checkpoint file or a shipped model's name): {_names_text(table)}",
                remedy="model",
            )
        return load_pretrained(name, registry=table, weights_dir=weights_dir)
    path = Path(model)
    if path.is_file():
        return load_model_file(path)
    if str(model) in table:
        return load_pretrained(str(model), registry=table, weights_dir=weights_dir)
    looks_like_file = path.suffix != "" or os.sep in str(model) or "/" in str(model)
    what = "no such checkpoint file" if looks_like_file else "neither a checkpoint file nor a shipped model"
    raise PretrainedModelError(f"model {str(model)!r}: {what}; {_names_text(table)}", remedy="model")


def registry_entry(
    name: str, path: str | os.PathLike[str], description: str, card: str = ""
) -> PretrainedModel:
    """A registry entry for a weight file (checksum, kind, classes and inputs read from the file).

    The file must then be copied to :data:`WEIGHTS_DIR` under its file name.
    """
    if is_hr_stager_file(path):
        stager = _load_hr_stager(Path(path))
        return PretrainedModel(
            name=name,
            filename=Path(path).name,
            sha256=sha256_file(path),
            classes=tuple(stager.class_names),
            description=description,
            inputs=HR_STAGER_INPUTS,
            card=card,
            kind="hr-stager",
        )
    checkpoint = load_model_checkpoint(path)
    return PretrainedModel(
        name=name,
        filename=Path(path).name,
        sha256=sha256_file(path),
        classes=tuple(checkpoint.class_names),
        description=description,
        inputs=tuple(checkpoint.inputs),
        card=card,
    )
