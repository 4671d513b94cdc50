"""Sleep staging of a new recording with a trained model, e.g. an ECG student on an ECG-only night.

:func:`predict_recording` reads only the model's input channel from an EDF / EDF+ / BDF file, runs the
preprocessing stored in the checkpoint (the pipeline the training windows went through: resampling to the
model's rate, band-pass, per-recording robust scaling), cuts the night into consecutive windows of the
model's ``n_epochs`` epochs and returns per-epoch stages, class probabilities and onsets as a
:class:`Prediction`. No hypnogram and no EEG are needed.

Windows and the epochs two windows cover
    The rules of :mod:`kdsleep.data.windows`, the same as for validation and test: windows side by side
    and, when the night is not a whole number of windows, one more aligned to its end
    (:func:`~kdsleep.data.windows.covering_starts`), so every epoch is seen with real signal on both sides
    and nothing is zero-padded; an epoch covered by two windows takes the probabilities of the one in which
    it lies farther from the edges (:func:`~kdsleep.data.windows.owned_positions`). A night shorter than one
    window is an error.

Epochs whose raw signal is NaN or flat (a disconnected electrode, see
:func:`kdsleep.data.readers.quality.mask_bad_epochs`) get no stage: class ``-1`` and NaN probabilities,
written as ``?`` / ``Sleep stage ?``. They are never guessed.

The writers put the result next to each other in one folder: a CSV table (:func:`write_hypnogram_csv`), an
EDF+ scoring file with one ``Sleep stage ...`` annotation per epoch that the project's own
:func:`~kdsleep.data.readers.read_hypnogram` reads back (:func:`write_hypnogram_edf`, with
:func:`annotation_label_mapping` for the grouped class sets) and a PNG (:func:`plot_prediction`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kdsleep._io import write_text_atomic
from kdsleep._torch import resolve_device
from kdsleep.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from kdsleep.data.datasets.base import DEFAULT_CHANNELS
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.preprocess import DERIVED_CHANNELS, PreprocessConfig, preprocess_recording
from kdsleep.data.readers.channels import MissingChannelError, resolve_channel
from kdsleep.data.readers.edf import EdfFormatError, read_edf, read_edf_header
from kdsleep.data.recording import Hypnogram, Recording
from kdsleep.data.stages import SleepStage, get_grouping
from kdsleep.data.windows import covering_starts, owned_positions
from kdsleep.evaluation.plots import plot_hypnogram

__all__ = [
    "InferenceError",
    "Prediction",
    "annotation_descriptions",
    "annotation_label_mapping",
    "as_checkpoint",
    "check_modality",
    "load_model_checkpoint",
    "output_paths",
    "plot_prediction",
    "predict_windows",
    "predict_recording",
    "read_model_channel",
    "write_hypnogram_csv",
    "write_hypnogram_edf",
    "write_prediction",
]

logger = logging.getLogger(__name__)

#: Text written for epochs without a stage (NaN / flat signal); read back as ``SleepStage.UNSCORED``.
UNSCORED_LABEL = "Sleep stage ?"


class InferenceError(ValueError):
    """Input that prediction or export cannot use; the message names the file and what was expected.

    Attributes
    ----------
    remedy : str or None
        The argument of :func:`predict_recording` that would get past the error, when one would
        (``"allow_other_modality"`` or ``"channel"``); a front end turns it into its own hint.
    """

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy


@dataclass(frozen=True)
class Prediction:
    """Per-epoch output of :func:`predict_recording`.

    Attributes
    ----------
    stages : np.ndarray of int64, shape (n_epochs,)
        Predicted class index per epoch (the arg-max of ``probabilities``); ``-1`` where the signal was NaN
        or flat.
    probabilities : np.ndarray of float32, shape (n_epochs, n_classes)
        Softmax of the model's logits; NaN rows where ``stages`` is ``-1``.
    onsets : np.ndarray of float64, shape (n_epochs,)
        Start of every epoch in seconds after the recording start.
    class_names : tuple of str
        Name of each class index (``("W", "L", "D", "R")`` for the 4-class task of Joshi et al.).
    grouping : str
        Stage grouping of the model (``"w-l-d-r"``, ``"w-n-r"``, ``"aasm-5"``).
    epoch_seconds : float
        Epoch length in seconds (30).
    channel : str
        The file's channel the model read (``"ECG ECGI"``, or ``"A - B"`` for a re-referenced derivation).
    source : Path
        The recording.
    start : datetime or None
        Wall-clock start of the recording, from its header.
    sfreq : float
        The model's input rate in Hz after resampling (200 in the paper).
    n_windows : int
        Number of model windows run.
    """

    stages: np.ndarray
    probabilities: np.ndarray
    onsets: np.ndarray
    class_names: tuple[str, ...]
    grouping: str
    epoch_seconds: float
    channel: str
    source: Path
    start: datetime | None
    sfreq: float
    n_windows: int

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return int(self.stages.shape[0])

    @property
    def scored(self) -> np.ndarray:
        """Boolean mask of the epochs that received a stage."""
        return self.stages >= 0

    @property
    def stage_names(self) -> list[str]:
        """Class name of every epoch (``"?"`` where the signal was unusable)."""
        return [self.class_names[s] if s >= 0 else "?" for s in self.stages.tolist()]

    def stage_fractions(self) -> dict[str, float]:
        """Fraction of the staged epochs in each class."""
        scored = self.stages[self.scored]
        total = max(1, scored.size)
        return {name: float(np.sum(scored == k)) / total for k, name in enumerate(self.class_names)}


# --------------------------------------------------------------------------------------------------
# Checkpoint and channel
# --------------------------------------------------------------------------------------------------


def load_model_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a kdsleep checkpoint for prediction or export.

    Raises
    ------
    InferenceError
        When the file is missing, is not a kdsleep checkpoint or is corrupt (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InferenceError(
            f"{path}: no such checkpoint file (expected a .pt file written by kdsleep train)"
        )
    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        cause = err.__cause__
        if cause is not None and "not a readable" in str(err):
            # torch's unpickling errors run over many lines; the type is enough on one line
            message = (
                f"{path}: not a kdsleep checkpoint (torch cannot load it: {type(cause).__name__}); "
                "expected a .pt file written by kdsleep train"
            )
        else:
            message = str(err).splitlines()[0]
        raise InferenceError(message) from err


def as_checkpoint(checkpoint: Checkpoint | str | os.PathLike[str]) -> Checkpoint:
    """``checkpoint`` itself when already loaded, else :func:`load_model_checkpoint` of the file."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    return load_model_checkpoint(checkpoint)


def check_modality(checkpoint: Checkpoint, expected: str = "ecg", *, allow_other: bool = False) -> None:
    """Refuse (or, when allowed, warn about) a checkpoint that reads another modality than ``expected``.

    ``kdsleep predict`` expects an ECG student; an EEG teacher checkpoint is refused unless the caller asks
    for it explicitly (``allow_other``), because it needs an EEG channel the target recordings usually lack.

    Raises
    ------
    InferenceError
        When the modalities differ and ``allow_other`` is false.
    """
    if checkpoint.modality == expected:
        return
    where = checkpoint.path or "checkpoint"
    kind = "an EEG teacher" if checkpoint.modality == "eeg" else f"a {checkpoint.modality.upper()} model"
    message = (
        f"{where}: {kind} (modality {checkpoint.modality!r}, channel {checkpoint.channel!r}), but an "
        f"{expected.upper()} model was expected"
    )
    if not allow_other:
        raise InferenceError(message, remedy="allow_other_modality")
    warnings.warn(message + "; running it as asked", UserWarning, stacklevel=2)
    logger.warning("%s; running it as asked", message)


def _preprocess_config(checkpoint: Checkpoint) -> PreprocessConfig:
    where = checkpoint.path or "checkpoint"
    try:
        config = PreprocessConfig.from_dict(dict(checkpoint.preprocess))
    except (TypeError, ValueError) as err:
        raise InferenceError(f"{where}: unusable preprocessing settings in the checkpoint: {err}") from err
    model = checkpoint.model
    if abs(config.sfreq - model.sfreq) > 1e-9 or abs(config.epoch_length - model.epoch_seconds) > 1e-9:
        raise InferenceError(
            f"{where}: inconsistent checkpoint: preprocessing gives {config.sfreq:g} Hz, "
            f"{config.epoch_length:g}-s epochs but the model expects {model.sfreq:g} Hz, "
            f"{model.epoch_seconds:g}-s epochs"
        )
    return config


def _channel_request(
    checkpoint: Checkpoint, config: PreprocessConfig, channel: str | None
) -> tuple[str, Any]:
    """The preprocessing name of the model's channel and the reader's spec for it.

    The name decides the filter band (ECG or EEG) exactly as at training time, so it is the training
    pipeline's own name for the channel (``"ecg"`` / ``"eeg"`` in the cache) whatever the file calls it. It
    comes from the checkpoint's stored inputs (the recorded channel a derived input such as ``ihr`` is
    computed from), not from the look of the channel's label. A checkpoint whose channel is that name
    itself was trained on a dataset's default candidates, and is read through the same candidates.
    """
    inputs = list(checkpoint.inputs) or [checkpoint.modality]
    name = DERIVED_CHANNELS.get(inputs[0], inputs[0])
    if name not in config.channels:
        where = checkpoint.path or "checkpoint"
        raise InferenceError(
            f"{where}: the model reads {name!r}, which is not among the preprocessed channels "
            f"{list(config.channels)} stored with it"
        )
    if channel is not None:
        return name, channel
    specs = dict(config.channel_specs or ())
    if name in specs:
        return name, specs[name]
    if checkpoint.channel.strip().lower() == name.lower() and name.lower() in DEFAULT_CHANNELS:
        return name, list(DEFAULT_CHANNELS[name.lower()])
    return name, checkpoint.channel


def read_model_channel(
    checkpoint: Checkpoint, recording_path: str | os.PathLike[str], channel: str | None = None
) -> tuple[Recording, str, str]:
    """Read only the model's input channel from an EDF / EDF+ / BDF file.

    Parameters
    ----------
    checkpoint : Checkpoint
        The model and its training settings.
    recording_path : path-like
        The recording.
    channel : str, optional
        Channel name in the file (resolved through the readers' aliases); default the checkpoint's
        channel, e.g. ECG lead I with its usual spellings (``ECG I``, ``ECG ECGI``, ``EKG``, ...).

    Returns
    -------
    (Recording, str, str)
        The recording with one channel under the training pipeline's name, that name, and the file's label
        of the channel read (``"A - B"`` for a re-referenced derivation).

    Raises
    ------
    InferenceError
        For a missing, unreadable or non-EDF file, or a file without the channel (the message lists the
        channels it has).
    """
    path = Path(recording_path)
    config = _preprocess_config(checkpoint)
    name, spec = _channel_request(checkpoint, config, channel)
    if path.is_dir():
        raise InferenceError(f"{path}: is a folder, not a recording; give the EDF, EDF+ or BDF file itself")
    if not path.is_file():
        raise InferenceError(f"{path}: no such recording (expected an EDF, EDF+ or BDF file)")
    try:
        source = resolve_channel(spec, read_edf_header(path).signal_labels, source=path)
        # the resolved label again as the only candidate ("A - B" for a derivation), so it is not resolved twice
        recording = read_edf(path, {name: [str(source)]}, ecg_polarity=config.ecg_polarity)
    except MissingChannelError as err:
        asked = channel if channel is not None else checkpoint.channel
        raise InferenceError(
            f"{path}: no channel {asked!r} for the {checkpoint.modality.upper()} model (tried "
            f"{err.candidates}); available channels: {err.available}",
            remedy="channel" if channel is None else None,
        ) from err
    except EdfFormatError as err:
        raise InferenceError(f"{err} (expected an EDF, EDF+ or BDF recording)") from err
    except (OSError, ValueError) as err:
        raise InferenceError(f"{path}: cannot read the recording as EDF/BDF: {err}") from err
    return recording, name, str(source)


# --------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------


def predict_windows(
    model: torch.nn.Module,
    data: np.ndarray,
    starts: np.ndarray,
    window_epochs: int,
    n_classes: int,
    *,
    device: torch.device,
    batch_size: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Class probabilities of every epoch of ``data`` ``(n_epochs, n_chans, samples_per_epoch)``.

    The model runs on the windows starting at ``starts`` (:func:`~kdsleep.data.windows.covering_starts`),
    ``batch_size`` at a time; an epoch in two windows takes the probabilities of the window that owns it
    (:func:`~kdsleep.data.windows.owned_positions`). Rows of epochs no window covers are NaN.
    """
    n_total = data.shape[0]
    probabilities = np.full((n_total, n_classes), np.nan, dtype=np.float32)
    # the one merge rule of kdsleep.data.windows, applied window by window as the batches come
    owned = owned_positions(starts, window_epochs)
    with tqdm(total=len(starts), desc=desc, unit="window", disable=not progress, leave=False) as bar:
        for first in range(0, len(starts), batch_size):
            batch_starts = starts[first : first + batch_size]
            # (window_epochs, C, S) -> (C, window_epochs * S): the epochs laid end to end, as in training
            windows = np.stack(
                [
                    np.moveaxis(data[s : s + window_epochs], 1, 0).reshape(data.shape[1], -1)
                    for s in batch_starts
                ]
            )
            with torch.inference_mode():
                logits = model(torch.from_numpy(windows).to(device=device, dtype=torch.float32))
                probs = torch.softmax(logits.float(), dim=1).cpu().numpy()  # (B, K, window_epochs)
            for s, p, mask in zip(batch_starts, probs, owned[first : first + batch_size], strict=True):
                probabilities[s + np.flatnonzero(mask)] = p[:, mask].T
            bar.update(len(batch_starts))
    return probabilities


def predict_recording(
    checkpoint: Checkpoint | str | os.PathLike[str],
    recording_path: str | os.PathLike[str],
    *,
    channel: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    expected_modality: str | None = "ecg",
    allow_other_modality: bool = False,
    progress: bool = True,
) -> Prediction:
    """Stage every 30-s epoch of a recording with a trained model.

    Parameters
    ----------
    checkpoint : Checkpoint or path-like
        A checkpoint from :func:`kdsleep.checkpoint.load_checkpoint`, or its file.
    recording_path : path-like
        EDF / EDF+ / BDF file that holds the model's channel; nothing else is read (an ECG-only night
        without hypnogram is enough for an ECG student).
    channel : str, optional
        Channel of the file to use instead of the checkpoint's (resolved through the readers' aliases).
    device : {"cpu", "cuda"} or torch.device
        Where the model runs.
    batch_size : int
        Windows per forward pass (4: a few hundred MB of activations for 35-epoch windows at 200 Hz).
    expected_modality : {"ecg", "eeg"} or None
        The model kind the caller expects; ``None`` accepts any (default "ecg": ECG-only inference).
    allow_other_modality : bool
        Run a checkpoint of another modality anyway (with a warning) instead of refusing it.
    progress : bool
        Show a progress bar over windows.

    Returns
    -------
    Prediction
        One entry per whole epoch of the recording (a trailing partial epoch is dropped).

    Raises
    ------
    InferenceError
        For a file that is not a kdsleep checkpoint, a modality mismatch, a recording without the channel,
        a recording shorter than one model window, or an unusable signal.
    """
    checkpoint = as_checkpoint(checkpoint)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if expected_modality is not None:
        check_modality(checkpoint, expected_modality, allow_other=allow_other_modality)
    model = checkpoint.model
    where = checkpoint.path or "checkpoint"
    inputs = list(checkpoint.inputs)
    unknown = [c for c in inputs[1:] if c not in DERIVED_CHANNELS] + (
        [inputs[0]] if len(inputs) > 1 and inputs[0] in DERIVED_CHANNELS and inputs[0] != "ihr" else []
    )
    if len(inputs) != model.n_chans or unknown:
        raise InferenceError(
            f"{where}: the model reads {model.n_chans} channels {inputs}; prediction supports one recorded "
            f"channel plus channels derived from it ({sorted(DERIVED_CHANNELS)})"
        )
    try:
        torch_device = resolve_device(device)
    except ValueError as err:
        raise InferenceError(str(err)) from err
    config = _preprocess_config(checkpoint)
    path = Path(recording_path)
    recording, name, label = read_model_channel(checkpoint, path, channel)
    signal = recording[name]
    window_epochs = model.n_epochs
    window_seconds = window_epochs * model.epoch_seconds
    n_whole = int(math.floor(signal.duration / config.epoch_length + 1e-9))
    if n_whole < window_epochs:
        raise InferenceError(
            f"{path}: the recording lasts {signal.duration:g} s ({n_whole} whole {config.epoch_length:g}-s "
            f"epochs), shorter than one model window of {window_epochs} epochs ({window_seconds:g} s)"
        )
    logger.info(
        "%s: %s read at %g Hz, %.2f h; preprocessing to %g Hz",
        path,
        name,
        signal.sfreq,
        signal.duration / 3600,
        config.sfreq,
    )
    # The training pipeline itself, on an all-unscored grid: the same resampling, filter and scaling, and
    # its raw-signal check marks NaN / flat epochs as artefact.
    grid = Hypnogram(np.full(n_whole, int(SleepStage.UNSCORED), dtype=np.int8), config.epoch_length)
    # derived inputs (heart rate) are computed from the channel read, under the name they derive from
    derived = tuple(c for c in inputs if c in DERIVED_CHANNELS)
    if derived and name != DERIVED_CHANNELS[derived[0]]:
        raise InferenceError(
            f"{where}: the model's channel is stored as {name!r}, but {derived[0]!r} derives from "
            f"{DERIVED_CHANNELS[derived[0]]!r}"
        )
    single = dataclasses.replace(
        config,
        channels=(name, *derived),
        channel_specs=None,
        # the channel read is filtered as what the model reads (an ECG student's heart rate derives from ECG)
        modalities=((name, checkpoint.modality), *((d, "hr") for d in derived)),
    )
    try:
        epochs = preprocess_recording(recording, grid, single)
    except ValueError as err:
        raise InferenceError(f"{path}: cannot preprocess channel {name!r}: {err}") from err
    order = [single.channels.index(c if c in DERIVED_CHANNELS else name) for c in inputs]
    data = epochs.data if order == list(range(len(single.channels))) else epochs.data[:, order]
    if epochs.n_epochs < window_epochs:
        raise InferenceError(
            f"{path}: only {epochs.n_epochs} whole epochs after resampling, shorter than one model window of "
            f"{window_epochs} epochs ({window_seconds:g} s)"
        )
    unusable = epochs.bad | (epochs.stages == int(SleepStage.ARTEFACT))
    starts = covering_starts(epochs.n_epochs, window_epochs)
    model = model.to(torch_device).eval()
    probabilities = predict_windows(
        model,
        data,
        starts,
        window_epochs,
        model.n_outputs,
        device=torch_device,
        batch_size=batch_size,
        progress=progress,
        desc=f"staging {path.name}",
    )
    stages = probabilities.argmax(axis=1).astype(np.int64)
    stages[unusable] = -1
    probabilities[unusable] = np.nan
    if unusable.any():
        logger.warning(
            "%s: %d of %d epochs have NaN or flat signal and get no stage",
            path,
            int(unusable.sum()),
            unusable.size,
        )
    return Prediction(
        stages=stages,
        probabilities=probabilities,
        onsets=np.asarray(epochs.onsets, dtype=np.float64),
        class_names=tuple(checkpoint.class_names),
        grouping=checkpoint.grouping,
        epoch_seconds=float(config.epoch_length),
        channel=label,
        source=path,
        start=recording.start,
        sfreq=float(config.sfreq),
        n_windows=int(len(starts)),
    )


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def annotation_descriptions(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """EDF+ annotation text of each class: ``"Sleep stage W"``, ``"Sleep stage N2"``, ``"Sleep stage L"``."""
    return [f"Sleep stage {name}" for name in class_names]


def annotation_label_mapping(grouping: str, class_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Label mapping that reads the scoring files of :func:`write_hypnogram_edf` back.

    The AASM names (``Sleep stage W/N1/N2/N3/R``) are known to the readers' ``"auto"`` mapping; the grouped
    classes (``L``, ``D``, ``N``) are not sleep stages of their own, so each is read as one member stage of
    its class (``L`` as N1, ``D`` as N3, ``N`` as N1). Grouping the result again with ``grouping`` gives back
    the written classes exactly.

    Parameters
    ----------
    grouping : str
        Stage grouping of the prediction.
    class_names : sequence of str
        Its class names, in class-index order.

    Returns
    -------
    dict of str to int
        Annotation text to :class:`~kdsleep.data.stages.SleepStage` value, for the ``mapping`` argument of
        :func:`~kdsleep.data.readers.read_hypnogram`.
    """
    stage_grouping = get_grouping(grouping)
    if list(stage_grouping.class_names) != list(class_names):
        raise ValueError(
            f"class names {list(class_names)} do not match grouping {stage_grouping.name!r} "
            f"{list(stage_grouping.class_names)}"
        )
    mapping: dict[str, int] = {UNSCORED_LABEL: int(SleepStage.UNSCORED)}
    for text, index in zip(annotation_descriptions(class_names), range(len(class_names)), strict=True):
        members = sorted(int(s) for s, k in stage_grouping.classes.items() if k == index)
        mapping[text] = members[0]
    return mapping


def output_paths(
    recording_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Where :func:`write_prediction` puts its files: ``<stem>_hypnogram.{csv,edf,png}`` in ``out_dir``.

    ``out_dir`` defaults to the recording's folder, so the scoring file lies next to the recording.
    """
    recording_path = Path(recording_path)
    folder = Path(out_dir) if out_dir is not None else recording_path.parent
    stem = f"{recording_path.stem}_hypnogram"
    return {kind: folder / f"{stem}.{kind}" for kind in ("csv", "edf", "png")}


def _format_seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def write_hypnogram_csv(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """Write ``epoch, onset_s, stage, p_<class>...`` rows atomically.

    ``stage`` is the class name (``?`` for epochs without a stage, whose probabilities are left empty);
    probabilities have six decimals.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "onset_s", "stage", *(f"p_{name}" for name in prediction.class_names)])
    for i, (onset, name, probs) in enumerate(
        zip(prediction.onsets, prediction.stage_names, prediction.probabilities, strict=True)
    ):
        cells = ["" if not np.isfinite(p) else f"{p:.6f}" for p in probs]
        writer.writerow([i, _format_seconds(float(onset)), name, *cells])
    return write_text_atomic(path, buffer.getvalue())


def write_hypnogram_edf(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """Write an annotation-only EDF+ scoring file, one ``Sleep stage <class>`` annotation per epoch.

    The file's start time is the recording's (when EDF can store it), so the scoring lines up with the
    signal as HMC and Sleep-EDF scoring files do. Epochs without a stage are written as
    ``Sleep stage ?``. Read it back with :func:`~kdsleep.data.readers.read_hypnogram` and
    :func:`annotation_label_mapping`.
    """
    descriptions = annotation_descriptions(prediction.class_names)
    annotations = [
        (float(onset), prediction.epoch_seconds, descriptions[s] if s >= 0 else UNSCORED_LABEL)
        for onset, s in zip(prediction.onsets, prediction.stages.tolist(), strict=True)
    ]
    start = prediction.start
    if start is not None and not 1985 <= start.year <= 2084:
        logger.warning("%s: start %s cannot be stored in EDF (1985-2084); writing 2000-01-01", path, start)
        start = None
    return write_edf(
        path,
        [],
        [],
        [],
        units=[],
        start=start,
        annotations=annotations,
        recording_id=None,
    )


def plot_prediction(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    """PNG of the predicted hypnogram (see :func:`kdsleep.evaluation.plots.plot_hypnogram`)."""
    title = (
        f"{prediction.source.name}: predicted hypnogram from {prediction.channel} "
        f"({prediction.n_epochs} epochs of {prediction.epoch_seconds:g} s)"
    )
    return plot_hypnogram(
        None,
        prediction.stages,
        path,
        prediction.class_names,
        epoch_seconds=prediction.epoch_seconds,
        title=title,
    )


def write_prediction(
    prediction: Prediction, out_dir: str | os.PathLike[str] | None = None, *, plot: bool = True
) -> dict[str, Path]:
    """Write the CSV, the EDF+ scoring file and (unless ``plot=False``) the PNG; returns their paths.

    All or none: every file is first written under a hidden staging name in the output folder and the
    staged files are renamed into place only once all of them are complete, so a failure (a full disk, an
    unwritable name) leaves the folder as it was, never a new CSV beside an old EDF.
    """
    paths = output_paths(prediction.source, out_dir)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    kinds = ["csv", "edf", "png"] if plot else ["csv", "edf"]
    writers = {"csv": write_hypnogram_csv, "edf": write_hypnogram_edf, "png": plot_prediction}
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    staged = {kind: paths[kind].with_name(f".{paths[kind].stem}.staging-{tag}.{kind}") for kind in kinds}
    try:
        for kind in kinds:
            writers[kind](prediction, staged[kind])
        for kind in kinds:
            os.replace(staged[kind], paths[kind])
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    return {kind: paths[kind] for kind in kinds}
