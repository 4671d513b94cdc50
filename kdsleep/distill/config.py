"""The training configuration: one dataclass, read from TOML or YAML plus command-line overrides.

A configuration file holds top-level keys and/or the tables ``[data]``, ``[model]``, ``[training]`` and
``[distillation]``; every key must be a field of :class:`TrainConfig` (the table it sits in is only for
reading comfort, but a key must sit in its own table or at the top). Unknown keys are rejected with an
error that names the key and the file.

Three presets exist: :data:`PAPER` (the paper's protocol, the dataclass defaults: 200 Hz, 35-epoch windows,
full-size U-Time, 150 epochs); :data:`SYNTHETIC_QUICKSTART`, applied by ``kdsleep train`` when it runs on
the generated synthetic data without a configuration file (a small U-Time at 32 Hz on the synthetic
nights, so that the whole pipeline finishes in minutes on a laptop CPU); and
:data:`SYNTHETIC_RAW_QUICKSTART`, applied instead when such a run asks for the paper's raw-ECG student
(``--ecg-input raw``): a small U-Time at 100 Hz, where the QRS complex survives.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kdsleep.data.stages import get_grouping

__all__ = [
    "AT_DISTANCES",
    "AT_MODES",
    "KL_REDUCTIONS",
    "DATASETS",
    "ECG_INPUTS",
    "SECTIONS",
    "SYNTHETIC_QUICKSTART",
    "SYNTHETIC_RAW_QUICKSTART",
    "ConfigError",
    "TrainConfig",
    "load_config",
    "load_config_file",
]

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


@dataclass
class TrainConfig:
    """Everything that determines a training run.

    Data
    ----
    dataset : str
        ``synthetic`` (generated on first use), ``mass``, ``hmc``, ``sleep-edf``, ``slpdb``, ``shhs``,
        ``generic`` or ``auto``.
    data_dir : str or None
        Dataset folder (for ``synthetic``: where the nights are written, default
        ``$KDSLEEP_HOME/synthetic-<subjects>x<hours>h-seed<seed>``, ``KDSLEEP_HOME`` defaulting to
        ``~/.cache/kdsleep``).
    cache_dir : str or None
        Preprocessed cache folder (default ``<data_dir>/.kdsleep-cache``, or ``$KDSLEEP_HOME/cache`` for
        a read-only dataset folder).
    synthetic_subjects, synthetic_hours, synthetic_sfreq : int, float, float
        Size of the generated synthetic dataset.
    grouping : str
        Stage grouping: ``w-l-d-r`` (4 classes, paper), ``w-n-r`` (3, paper) or ``aasm-5``.
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

    Model
    -----
    window_epochs : int
        Epochs per input window (35 as in U-Time).
    pools, filters : list of int or None
        U-Time pools and filters (``None``: [10, 5, 5, 4, 3] and [16, 32, 64, 128, 256]).

    Training
    --------
    epochs : int
        Training epochs per stage (150 in the paper).
    at_epochs : int or None
        Epochs of step 1 (attention transfer); ``None``: ``epochs``.
    batch_size : int
        Windows per batch (per process under ``torchrun``).
    lr : float
        Adam learning rate (1e-3 in the paper).
    patience : int or None
        Stop a stage after this many epochs without a better validation score; ``None`` runs all epochs
        (the paper's protocol).
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
    teacher_cache : bool
        Compute the frozen teacher's attention maps and logits on the training windows once per run and read
        them back in every step (:mod:`kdsleep.distill.teacher_cache`, folder ``teacher-cache`` of the run),
        instead of running the teacher each step. Used only where the teacher's inputs are fixed (no
        augmentation, no random windows); the losses agree with the live teacher within the cache's float16
        tolerance. ``false`` always runs the live teacher.

    Distillation
    ------------
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

    # data
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
    # model
    window_epochs: int = 35
    pools: list[int] | None = None
    filters: list[int] | None = None
    # training
    epochs: int = 150
    at_epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    max_train_windows: int | None = None
    teacher_cache: bool = True
    # distillation
    at_mode: str = "canonical"
    at_p: float = 2.0
    at_distance: str = "squared_l2"
    temperature: float = 1.0
    kl_reduction: str = "row"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "configuration") -> None:
        """Check types and ranges; raise :class:`ConfigError` naming the field and ``source``."""

        def fail(name: str, expected: str) -> None:
            raise ConfigError(f"{source}: {name} = {getattr(self, name)!r}, expected {expected}")

        if self.dataset not in DATASETS:
            fail("dataset", f"one of {list(DATASETS)}")
        try:
            self.grouping = get_grouping(self.grouping).name
        except ValueError as err:
            raise ConfigError(f"{source}: grouping: {err}") from None
        for name in ("synthetic_subjects", "window_epochs", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "a positive integer")
        for name in ("at_epochs", "patience", "max_train_windows", "num_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                fail(name, "a positive integer or none")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            fail("num_workers", "an integer >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            fail("seed", "an integer")
        for name in ("sfreq", "lr", "synthetic_hours", "synthetic_sfreq", "temperature", "at_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                fail(name, "a positive number")
        if len(self.split_fractions) != 3 or any(not 0 <= f for f in self.split_fractions):
            fail("split_fractions", "three non-negative fractions (train, validation, test)")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            fail("split_fractions", "fractions that sum to 1")
        for name in ("eeg_band", "ecg_band"):
            band = getattr(self, name)
            if not isinstance(band, (list, tuple)) or len(band) != 2:
                fail(name, "[low, high] in Hz")
        for name in ("pools", "filters"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value)
            ):
                fail(name, "a list of positive integers or none")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            fail("device", "'auto', 'cpu' or 'cuda'")
        if self.ecg_input not in ECG_INPUTS:
            fail("ecg_input", f"one of {list(ECG_INPUTS)}")
        if self.at_mode not in AT_MODES:
            fail("at_mode", " or ".join(repr(m) for m in AT_MODES))
        if self.at_distance not in AT_DISTANCES:
            fail("at_distance", " or ".join(repr(d) for d in AT_DISTANCES))
        if self.kl_reduction not in KL_REDUCTIONS:
            fail("kl_reduction", " or ".join(repr(r) for r in KL_REDUCTIONS))
        if not isinstance(self.amp, bool):
            fail("amp", "true or false")
        if not isinstance(self.teacher_cache, bool):
            fail("teacher_cache", "true or false")

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> TrainConfig:
        """Build from a flat dictionary; unknown keys are an error naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}" + _known_hint(known))
        config = cls.__new__(cls)
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(config, f.name, values.get(f.name, default))
        config.validate(source)
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _known_hint(known: set[str]) -> str:
    return f"; known keys: {', '.join(sorted(known))}"


#: Which table each key belongs to in a configuration file.
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": (
        "dataset",
        "data_dir",
        "cache_dir",
        "synthetic_subjects",
        "synthetic_hours",
        "synthetic_sfreq",
        "grouping",
        "eeg_channel",
        "ecg_channel",
        "ecg_input",
        "sfreq",
        "eeg_band",
        "ecg_band",
        "split_fractions",
        "split_file",
    ),
    "model": ("window_epochs", "pools", "filters"),
    "training": (
        "epochs",
        "at_epochs",
        "batch_size",
        "lr",
        "patience",
        "seed",
        "device",
        "amp",
        "num_workers",
        "num_threads",
        "max_train_windows",
        "teacher_cache",
    ),
    "distillation": ("at_mode", "at_p", "at_distance", "temperature", "kl_reduction"),
}

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
    # the student reads the ECG waveform and the heart rate detected in it: with the raw waveform alone a
    # 15-epoch budget left the student's kappa between 0.13 and 0.35 from one run to the next
    "ecg_input": "both",
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
#: Chosen on validation figures, docs/results/synthetic_raw_ecg.md.
SYNTHETIC_RAW_QUICKSTART: dict[str, Any] = {
    "dataset": "synthetic",
    "synthetic_subjects": 20,
    "synthetic_hours": 8.0,
    "synthetic_sfreq": 128.0,
    "sfreq": 100.0,
    "eeg_band": [0.3, 35.0],
    "ecg_band": [0.5, 40.0],
    "ecg_input": "raw",
    "window_epochs": 15,
    "pools": [10, 5, 3, 2, 2],
    "filters": [8, 16, 16, 32, 32],
    "epochs": 8,
    "at_epochs": 2,
    # small batches: four times the optimiser steps of batch 16 for the same computation, which the
    # waveform-only student needs to learn in a few epochs
    "batch_size": 4,
    "max_train_windows": 384,
    "num_threads": 1,
    "patience": None,
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
    """Read a TOML / YAML configuration into a flat dictionary of :class:`TrainConfig` fields.

    Raises
    ------
    ConfigError
        For an unreadable file, an unknown table or key (named with the file), or a key in the wrong table.
    """
    path = Path(path)
    data = _read_file(path)
    known = {f.name for f in fields(TrainConfig)}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] must be a table")
            for sub_key, sub_value in value.items():
                if sub_key not in SECTIONS[key]:
                    where = next((s for s, keys in SECTIONS.items() if sub_key in keys), None)
                    hint = f" (it belongs in [{where}])" if where else _known_hint(set(SECTIONS[key]))
                    raise ConfigError(f"{path}: unknown key {sub_key!r} in [{key}]{hint}")
                flat[sub_key] = sub_value
        elif key in known:
            flat[key] = value
        else:
            raise ConfigError(
                f"{path}: unknown key {key!r}; expected a table {sorted(SECTIONS)} or one of the keys"
                + _known_hint(known)
            )
    return flat


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then ``base`` (a preset), then the file, then ``overrides`` (``None`` values skipped)."""
    values: dict[str, Any] = dict(base or {})
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
