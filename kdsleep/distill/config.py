"""The training configuration: four typed sections read from TOML or YAML plus command-line overrides.

:class:`TrainConfig` holds four sections, each a dataclass: :class:`DataConfig` (``[data]``: which
recordings, channels and preprocessing), :class:`ModelConfig` (``[model]``: the U-Time's shape),
:class:`TrainingConfig` (``[training]``: optimiser, epochs, devices) and :class:`DistillationConfig`
(``[distillation]``: the attention-transfer and softmax-distillation terms). A configuration file holds
these tables; a key may also sit at the top level (it is placed in its section by name, as every key
name is unique across the sections). Command-line flags map onto the same key names
(``--epochs`` -> ``training.epochs``). Unknown keys and keys in the wrong table are rejected with an
error that names the key and the file.

Three presets exist: the dataclass defaults (the paper's protocol: 200 Hz, 35-epoch windows, full-size
U-Time, 150 epochs; also ``configs/paper.toml``); :data:`SYNTHETIC_QUICKSTART`, applied by ``kdsleep train``
when it runs on the generated synthetic data without a configuration file (a small U-Time at 32 Hz on the
synthetic nights, so that the whole pipeline finishes in minutes on a laptop CPU); and
:data:`SYNTHETIC_RAW_QUICKSTART`, applied instead when such a run asks for the paper's raw-ECG student
(``--ecg-input raw``): a small U-Time at 100 Hz, where the QRS complex survives. Presets are flat
dictionaries of key names.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from kdsleep.data.stages import StageGrouping, get_grouping

__all__ = [
    "AT_DISTANCES",
    "AT_MODES",
    "KL_REDUCTIONS",
    "LR_SCHEDULES",
    "CHECKPOINT_METRICS",
    "DATASETS",
    "ECG_INPUTS",
    "SECTIONS",
    "SYNTHETIC_QUICKSTART",
    "SYNTHETIC_RAW_QUICKSTART",
    "ConfigError",
    "DataConfig",
    "DistillationConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainingConfig",
    "flatten_config_dict",
    "load_config",
    "load_config_file",
]

#: Learning-rate schedules of a stage (``lr_schedule``).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")

#: Validation figures that can choose a classification stage's best epoch (``checkpoint_metric``).
CHECKPOINT_METRICS: tuple[str, ...] = ("weighted_f1", "macro_f1", "kappa")

#: What the ECG student reads (``ecg_input``) -> the stored channels it is given, in order.
ECG_INPUTS: dict[str, tuple[str, ...]] = {"raw": ("ecg",), "ihr": ("ihr",), "both": ("ecg", "ihr")}

#: Dataset layouts ``dataset`` may name.
DATASETS = ("synthetic", "mass", "hmc", "sleep-edf", "slpdb", "shhs", "nsrr", "generic", "auto")
#: Attention-transfer formulas (``at_mode``) and layer distances (``at_distance``).
AT_MODES = ("canonical", "joshi")
AT_DISTANCES = ("squared_l2", "squared_mean", "squared", "l2")
#: Reductions of the softmax-distillation KL (``kl_reduction``).
KL_REDUCTIONS = ("row", "element")


class ConfigError(ValueError):
    """An invalid configuration (unknown key, wrong type, out-of-range value)."""


class _Section:
    """Shared checks of the section dataclasses; ``fail`` names the table, the key and ``source``."""

    TABLE: ClassVar[str] = ""

    def _fail(self, source: str, name: str, expected: str) -> None:
        raise ConfigError(f"{source}: [{self.TABLE}] {name} = {getattr(self, name)!r}, expected {expected}")

    def _positive_int(self, source: str, *names: str, optional: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(source, name, "a positive integer or none" if optional else "a positive integer")

    def _positive_number(self, source: str, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                self._fail(source, name, "a positive number")

    def _boolean(self, source: str, *names: str) -> None:
        for name in names:
            if not isinstance(getattr(self, name), bool):
                self._fail(source, name, "true or false")

    def _choice(self, source: str, name: str, choices: tuple[str, ...] | dict[str, Any]) -> None:
        if getattr(self, name) not in choices:
            self._fail(source, name, "one of " + ", ".join(repr(c) for c in choices))


@dataclass
class DataConfig(_Section):
    """``[data]``: the recordings, the channels and their preprocessing.

    Parameters
    ----------
    dataset : str
        ``synthetic`` (generated on first use), ``mass``, ``hmc``, ``sleep-edf``, ``slpdb``, ``shhs``,
        ``nsrr``, ``generic`` or ``auto``.
    data_dir : str or None
        Dataset folder (for ``synthetic``: where the nights are written, default
        ``$KDSLEEP_HOME/synthetic-<subjects>x<hours>h-seed<seed>``, ``KDSLEEP_HOME`` defaulting to
        ``~/.cache/kdsleep``).
    cache_dir : str or None
        Preprocessed cache folder (default ``<data_dir>/.kdsleep-cache``, or ``$KDSLEEP_HOME/cache`` for
        a read-only dataset folder).
    synthetic_subjects, synthetic_hours, synthetic_sfreq : int, float, float
        Size and sampling rate of the generated synthetic dataset.
    grouping : str
        Stage grouping: ``w-l-d-r`` (4 classes, paper), ``w-n-r`` (3, paper) or ``aasm-5``; the object is
        :attr:`stage_grouping`.
    eeg_channel, ecg_channel : str or None
        Channel specs (e.g. ``"C4-A1"``, ``"ECG II"``); ``None`` uses the dataset's defaults (the paper's
        EEG C3-A2 and ECG lead I).
    sfreq : float
        Model sampling rate in Hz (200 in the paper).
    ecg_input : {"raw", "ihr", "both"}
        What the ECG student reads: the raw ECG (the paper), its instantaneous heart rate (R peaks detected
        on the raw ECG, RR intervals with outlier rejection, resampled to ``sfreq``) or both as two channels.
    eeg_band, ecg_band : list of float
        Band-pass edges in Hz (0.3-35 Hz EEG, 0.3-70 Hz ECG at 200 Hz).
    split_fractions : list of float
        Subject-wise train / validation / test fractions (0.8, 0.1, 0.1 as in the paper).
    split_file : str or None
        A split written by an earlier run, reused as is.
    """

    TABLE: ClassVar[str] = "data"

    dataset: str = "synthetic"
    data_dir: str | None = None
    cache_dir: str | None = None
    synthetic_subjects: int = 20
    synthetic_hours: float = 8.0
    synthetic_sfreq: float = 256.0
    grouping: str = "w-l-d-r"
    eeg_channel: str | None = None
    ecg_channel: str | None = None
    ecg_input: str = "raw"
    sfreq: float = 200.0
    eeg_band: list[float] = field(default_factory=lambda: [0.3, 35.0])
    ecg_band: list[float] = field(default_factory=lambda: [0.3, 70.0])
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_file: str | None = None

    @property
    def stage_grouping(self) -> StageGrouping:
        """The :class:`~kdsleep.data.stages.StageGrouping` that :attr:`grouping` names."""
        return get_grouping(self.grouping)

    @property
    def ecg_channels(self) -> tuple[str, ...]:
        """The stored channels the ECG student reads, in order (:data:`ECG_INPUTS`)."""
        return ECG_INPUTS[self.ecg_input]

    def validate(self, source: str = "configuration") -> None:
        """Check types and ranges; raise :class:`ConfigError` naming the key and ``source``."""
        self._choice(source, "dataset", DATASETS)
        try:
            self.grouping = get_grouping(self.grouping).name
        except ValueError as err:
            raise ConfigError(f"{source}: [data] grouping: {err}") from None
        self._positive_int(source, "synthetic_subjects")
        self._positive_number(source, "sfreq", "synthetic_hours", "synthetic_sfreq")
        self._choice(source, "ecg_input", ECG_INPUTS)
        fractions = self.split_fractions
        if (
            not isinstance(fractions, (list, tuple))
            or len(fractions) != 3
            or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f < 0 for f in fractions)
        ):
            self._fail(source, "split_fractions", "three non-negative fractions (train, validation, test)")
        if abs(sum(fractions) - 1.0) > 1e-6:
            self._fail(source, "split_fractions", "fractions that sum to 1")
        for name in ("eeg_band", "ecg_band"):
            band = getattr(self, name)
            if not isinstance(band, (list, tuple)) or len(band) != 2:
                self._fail(source, name, "[low, high] in Hz")
        for name in ("data_dir", "cache_dir", "eeg_channel", "ecg_channel", "split_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                self._fail(source, name, "a string or none")


@dataclass
class ModelConfig(_Section):
    """``[model]``: the U-Time's shape (teacher and student alike).

    Parameters
    ----------
    window_epochs : int
        Epochs per input window (35 as in U-Time).
    pools, filters : list of int or None
        U-Time pools and filters (``None``: [10, 5, 5, 4, 3] and [16, 32, 64, 128, 256]).
    """

    TABLE: ClassVar[str] = "model"

    window_epochs: int = 35
    pools: list[int] | None = None
    filters: list[int] | None = None

    def validate(self, source: str = "configuration") -> None:
        """Check types and ranges; raise :class:`ConfigError` naming the key and ``source``."""
        self._positive_int(source, "window_epochs")
        for name in ("pools", "filters"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (list, tuple))
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            ):
                self._fail(source, name, "a list of positive integers or none")


@dataclass
class TrainingConfig(_Section):
    """``[training]``: optimiser, epochs, batches, early stopping and where the work runs.

    Parameters
    ----------
    epochs : int
        Training epochs per stage (150 in the paper).
    at_epochs : int or None
        Epochs of step 1 (attention transfer); ``None``: ``epochs``.
    teacher_epochs : int or None
        Epochs of the EEG baseline (the teacher) where the run trains it; ``None``: ``epochs``.
    batch_size : int
        Windows per batch (per process under ``torchrun``).
    lr : float
        Adam learning rate (1e-3 in the paper).
    lr_schedule : {"constant", "cosine"}
        ``constant`` keeps ``lr`` (the paper); ``cosine`` lowers it every epoch of a stage along half a cosine,
        from ``lr`` in its first epoch towards zero after its last (``lr * (1 + cos(pi * (e - 1) / E)) / 2``
        in epoch ``e`` of ``E``), so the last epochs take small steps and the chosen checkpoint depends less on
        where a noisy epoch happened to end.
    patience : int or None
        Stop a stage after this many epochs without a better validation score; ``None`` runs all epochs
        (the paper's protocol).
    checkpoint_metric : {"weighted_f1", "macro_f1", "kappa"}
        The validation figure that picks a classification stage's best epoch (and the label-smoothing
        control's ε). ``weighted_f1`` (default) can be maximised by a model that never predicts a rare stage;
        ``macro_f1`` weighs every stage alike, so an epoch that loses deep sleep or REM scores lower.
        Attention-transfer stages always keep the epoch with the lowest validation AT loss.
    seed : int
        Seed of the split, the initial weights and the batch order.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    amp : bool
        bf16 autocast on CUDA.
    num_workers : int
        DataLoader workers.
    num_threads : int or None
        CPU threads of PyTorch's operators; ``None`` keeps PyTorch's default (one per core). Small models
        gain little from several threads and lose a lot when other processes share the cores (threads wait
        for each other at every operator), so the quick synthetic preset uses 1.
    max_train_windows : int or None
        Use at most this many training windows per epoch (a random subset, re-drawn every epoch); ``None``
        uses all.
    ecg_rate_stretch : float
        Training augmentation of a waveform-only ECG student (``ecg_input = "raw"``): each training window's
        ECG is played faster or slower by a factor drawn log-uniformly in ``[1 / (1 + a), 1 + a]``, every epoch
        about its own centre so each epoch keeps its content (:func:`kdsleep.distill.augment.rate_stretch`);
        the heart rate moves by the same factor, so the student cannot stage from a subject's resting rate.
        ``0`` (default) leaves the ECG as recorded. The teacher's input is never changed.
    average_epochs : int or None
        A classification stage (the baselines, the students' step 2, the controls) returns the mean of its
        weights after each of its last ``average_epochs`` epochs, BatchNorm statistics included, instead of
        the weights of its best validation epoch (:class:`kdsleep.distill.trainer.WeightAverage`): the result
        no longer hangs on which single epoch scored best on a few validation nights. Its validation figures
        are recorded beside the best epoch's (``done.json``). ``None`` (default) keeps the best epoch; needs
        ``patience = none`` (every epoch is run). Attention-transfer stages are never averaged.
    teacher_cache : bool
        Compute the frozen teacher's attention maps and logits on the training windows once per run and read
        them back in every step (:mod:`kdsleep.distill.teacher_cache`, folder ``teacher-cache`` of the run),
        instead of running the teacher each step. Used only where the teacher's inputs are fixed (no
        augmentation, no random windows); the losses agree with the live teacher within the cache's float16
        tolerance. ``false`` always runs the live teacher.
    """

    TABLE: ClassVar[str] = "training"

    epochs: int = 150
    at_epochs: int | None = None
    teacher_epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    lr_schedule: str = "constant"
    patience: int | None = None
    checkpoint_metric: str = "weighted_f1"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    max_train_windows: int | None = None
    ecg_rate_stretch: float = 0.0
    average_epochs: int | None = None
    teacher_cache: bool = True

    def validate(self, source: str = "configuration") -> None:
        """Check types and ranges; raise :class:`ConfigError` naming the key and ``source``."""
        self._positive_int(source, "epochs", "batch_size")
        self._positive_int(
            source,
            "at_epochs",
            "teacher_epochs",
            "patience",
            "max_train_windows",
            "num_threads",
            "average_epochs",
            optional=True,
        )
        if self.average_epochs is not None and self.patience is not None:
            self._fail(
                source,
                "average_epochs",
                "none while patience is set (weights are averaged over the last epochs of a full stage)",
            )
        self._choice(source, "lr_schedule", LR_SCHEDULES)
        self._choice(source, "checkpoint_metric", CHECKPOINT_METRICS)
        stretch = self.ecg_rate_stretch
        if isinstance(stretch, bool) or not isinstance(stretch, (int, float)) or not 0 <= stretch < 1:
            self._fail(source, "ecg_rate_stretch", "a number in [0, 1)")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            self._fail(source, "num_workers", "an integer >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            self._fail(source, "seed", "an integer")
        self._positive_number(source, "lr")
        if not isinstance(self.device, str) or (
            self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:")
        ):
            self._fail(source, "device", "'auto', 'cpu', 'cuda' or 'cuda:<index>'")
        self._boolean(source, "amp", "teacher_cache")


@dataclass
class DistillationConfig(_Section):
    """``[distillation]``: the attention-transfer and softmax-distillation terms.

    Parameters
    ----------
    at_mode : {"canonical", "joshi"}
        Attention-transfer formula (see :func:`kdsleep.ops.attention_transfer_loss`); ``joshi`` uses the
        authors' averaging over layer groups (:meth:`UTime.joshi_tap_weights`).
    at_p : float
        Exponent of the attention maps (2).
    at_distance : {"squared_l2", "squared_mean", "squared", "l2"}
        Distance of the canonical mode (see :class:`~kdsleep.distill.losses.FeatureLoss`). ``"squared_l2"``
        (default) sums the squared differences of unit-norm maps over positions, so every layer weighs the
        same whatever its length; ``"squared_mean"`` (alias ``"squared"``) averages them, which makes a
        layer's term scale as 1 / L_j (in the paper's U-Time the bottleneck then outweighs the full-length
        layers ~3000-fold); ``"l2"`` is the paper's Eq. 3.
    temperature : float
        Softmax temperature T of the distillation term (1 in the paper).
    kl_reduction : {"row", "element"}
        Reduction of the KL term: ``"row"`` (default) averages the KL over scored epochs; ``"element"``
        divides that by the number of classes K, as ``torch.nn.KLDivLoss()`` with its default reduction does
        in the authors' code (use it with ``at_mode = "joshi"`` to reproduce them).
    """

    TABLE: ClassVar[str] = "distillation"

    at_mode: str = "canonical"
    at_p: float = 2.0
    at_distance: str = "squared_l2"
    temperature: float = 1.0
    kl_reduction: str = "row"

    def validate(self, source: str = "configuration") -> None:
        """Check types and ranges; raise :class:`ConfigError` naming the key and ``source``."""
        self._choice(source, "at_mode", AT_MODES)
        self._choice(source, "at_distance", AT_DISTANCES)
        self._choice(source, "kl_reduction", KL_REDUCTIONS)
        self._positive_number(source, "temperature", "at_p")


#: The section dataclasses by table name, in file order.
SECTION_TYPES: dict[str, type[Any]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "distillation": DistillationConfig,
}
#: Which table each key belongs to in a configuration file.
SECTIONS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in fields(cls)) for name, cls in SECTION_TYPES.items()
}
#: Key name -> its table.
_TABLE_OF: dict[str, str] = {key: table for table, keys in SECTIONS.items() for key in keys}


def _known_hint(known: set[str] | tuple[str, ...]) -> str:
    return f"; known keys: {', '.join(sorted(known))}"


def flatten_config_dict(values: dict[str, Any], source: str = "configuration") -> dict[str, Any]:
    """A flat ``{key: value}`` from a configuration dictionary with tables, top-level keys, or both.

    Raises
    ------
    ConfigError
        For an unknown table or key (named with ``source``), a key in the wrong table, or a table that is
        not a dictionary.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a table")
            for sub_key, sub_value in value.items():
                if sub_key not in SECTIONS[key]:
                    where = _TABLE_OF.get(sub_key)
                    hint = f" (it belongs in [{where}])" if where else _known_hint(SECTIONS[key])
                    raise ConfigError(f"{source}: unknown key {sub_key!r} in [{key}]{hint}")
                flat[sub_key] = sub_value
        elif key in _TABLE_OF:
            flat[key] = value
        else:
            raise ConfigError(
                f"{source}: unknown key {key!r}; expected a table {sorted(SECTIONS)} or one of the keys"
                + _known_hint(set(_TABLE_OF))
            )
    return flat


@dataclass
class TrainConfig:
    """Everything that determines a training run, in four sections.

    Build it with :meth:`from_dict` (tables and/or flat keys), :func:`load_config` (a file plus
    overrides) or from the sections; change it with :meth:`replace` (flat key names).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "configuration") -> None:
        """Check every section; raise :class:`ConfigError` naming the table, the key and ``source``."""
        for name, cls in SECTION_TYPES.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                raise ConfigError(
                    f"{source}: [{name}] must be a {cls.__name__}, got {type(section).__name__}"
                )
            section.validate(source)
        if self.training.ecg_rate_stretch and self.data.ecg_input != "raw":
            raise ConfigError(
                f"{source}: [training] ecg_rate_stretch = {self.training.ecg_rate_stretch!r} needs "
                f"[data] ecg_input = 'raw' (it stretches the waveform; got {self.data.ecg_input!r}, whose heart-rate "
                f"channel would not follow)"
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{table: {key: value}}``, the layout of a configuration file."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTION_TYPES}

    def flat(self) -> dict[str, Any]:
        """``{key: value}`` over all sections (key names are unique across them)."""
        return {k: v for section in self.to_dict().values() for k, v in section.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> TrainConfig:
        """Build from tables and/or flat keys; unknown keys are an error naming ``source``."""
        flat = flatten_config_dict(values, source)
        sections = {}
        for name, section_cls in SECTION_TYPES.items():
            section = section_cls()
            for key in SECTIONS[name]:
                if key in flat:
                    setattr(section, key, flat[key])
            sections[name] = section
        config = cls.__new__(cls)
        for name, section in sections.items():
            setattr(config, name, section)
        config.validate(source)
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some keys changed (flat key names; validated)."""
        return TrainConfig.from_dict({**self.flat(), **changes})


#: The quick synthetic default of ``kdsleep train`` with no arguments: a small U-Time at 32 Hz on the
#: synthetic nights, with a training budget that finishes the whole pipeline in minutes on two CPU cores.
SYNTHETIC_QUICKSTART: dict[str, Any] = {
    "dataset": "synthetic",
    "synthetic_subjects": 20,
    "synthetic_hours": 8.0,
    "synthetic_sfreq": 64.0,
    "sfreq": 32.0,
    "eeg_band": [0.3, 15.0],
    "ecg_band": [0.3, 15.0],
    # the student reads the heart rate detected in the ECG: on the validation nights (same teacher, seed and
    # split) it reached kappa 0.528 against 0.443 for waveform + heart rate and 0.182 for the waveform alone
    # (docs/results/synthetic_raw_ecg.md)
    "ecg_input": "ihr",
    "window_epochs": 15,
    "pools": [4, 4, 3, 2, 2],
    "filters": [8, 16, 16, 32, 32],
    "epochs": 15,
    "at_epochs": 2,
    "batch_size": 16,
    "max_train_windows": 384,
    "num_threads": 1,
    "patience": None,
}

#: The synthetic default of ``kdsleep train --ecg-input raw`` without a configuration file: the paper's
#: student, a U-Time reading only the band-passed ECG waveform, at a rate that keeps the QRS complex and the
#: muscle noise above 20 Hz (nights generated at 128 Hz, modelled at 100 Hz, ECG band 0.5-40 Hz). The first
#: pool (10) brings the 100-Hz signal to 10 Hz at once, so the network costs about three times the 32-Hz
#: preset per window; the teacher reads the EEG at the same rate (attention transfer pairs their maps).
#: Chosen on validation figures, docs/results/synthetic_raw_ecg.md. It is the quick preset with these changes.
SYNTHETIC_RAW_QUICKSTART: dict[str, Any] = {
    **SYNTHETIC_QUICKSTART,
    "synthetic_sfreq": 128.0,
    "sfreq": 100.0,
    "eeg_band": [0.3, 35.0],
    "ecg_band": [0.5, 40.0],
    "ecg_input": "raw",
    "pools": [10, 5, 3, 2, 2],
    # the teacher passes validation weighted F1 0.83 by its fourth epoch; the student learns more slowly and
    # gets twice the epochs, with a cosine learning rate that settles its last ones
    "teacher_epochs": 8,
    "epochs": 16,
    "lr_schedule": "cosine",
    # the beats of each training window played up to 10 % faster or slower: the subject's resting rate is no
    # cue (the per-night scaling of the heart-rate channel does the same for the quick preset's student)
    "ecg_rate_stretch": 0.1,
    # small batches: four times the optimiser steps of batch 16 for the same computation, which the
    # waveform-only student needs to learn in a few epochs
    "batch_size": 4,
}


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        elif suffix in (".yaml", ".yml"):
            import yaml

            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        else:
            raise ConfigError(f"{path}: configuration files must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, OSError) as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at offset {err.start}); "
            "configuration files must be saved as UTF-8"
        ) from None
    except Exception as err:  # yaml.YAMLError without importing yaml up front
        if type(err).__module__.startswith("yaml"):
            raise ConfigError(f"{path}: cannot read the configuration: {err}") from None
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of keys at the top level, got {type(data).__name__}")
    return data


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML / YAML configuration into a flat dictionary of key names (see :data:`SECTIONS`).

    Raises
    ------
    ConfigError
        For an unreadable file, an unknown table or key (named with the file), or a key in the wrong table.
    """
    path = Path(path)
    return flatten_config_dict(_read_file(path), source=str(path))


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then ``base`` (a preset), then the file, then ``overrides`` (``None`` values skipped)."""
    values: dict[str, Any] = flatten_config_dict(base or {}, "preset")
    source = "configuration"
    if path is not None:
        values.update(load_config_file(path))
        source = str(path)
        # the file is checked as written, so an error in it is reported even where a flag overrides the value
        TrainConfig.from_dict(values, source=source)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return TrainConfig.from_dict(values, source=source)
