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

The result is written by :mod:`kdsleep.prediction` (CSV, EDF+ scoring file, PNG).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kdsleep._torch import resolve_device
from kdsleep.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from kdsleep.data.datasets.base import DEFAULT_CHANNELS
from kdsleep.data.preprocess import DERIVED_CHANNELS, PreprocessConfig, preprocess_recording
from kdsleep.data.readers.channels import MissingChannelError, resolve_channel
from kdsleep.data.readers.edf import EdfFormatError, read_edf, read_edf_header
from kdsleep.data.recording import Hypnogram, Recording
from kdsleep.data.stages import SleepStage
from kdsleep.data.windows import covering_starts, owned_positions
from kdsleep.prediction import Prediction

__all__ = [
    "InferenceError",
    "as_checkpoint",
    "check_modality",
    "load_model_checkpoint",
    "predict_windows",
    "predict_recording",
    "read_model_channel",
]

logger = logging.getLogger(__name__)


class InferenceError(ValueError):
    """Input that prediction or export cannot use; the message names the file and what was expected.

    Attributes
    ----------
    remedy : str or None
        The arguments of :func:`predict_recording` (or of :func:`kdsleep.beats_inference.predict_beats`)
        that would get past the error, comma-separated, when some would (``"allow_other_modality"``,
        ``"channel"``, ``"format"``, ``"rr_unit"``, ``"column"``, ``"duration"``); a front end turns them
        into its own hint.
    """

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy


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
