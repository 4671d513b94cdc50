"""Export a trained U-Time for deployment: ONNX or TorchScript, with the input spec stored in the file.

The exported graph maps signals ``(batch, n_chans, n_times)`` (``n_times = n_epochs * sfreq *
epoch_seconds``, already preprocessed as at training time) to logits ``(batch, n_classes, n_epochs)``; the
batch dimension is dynamic, the window length is fixed. Everything a runtime needs to feed the model and read
its output is stored as metadata (:func:`export_metadata`): the class names, the stage grouping, the input
channel, sampling rate and window, the preprocessing settings and where the model came from. ONNX keeps it
in ``metadata_props`` (one JSON value per key), TorchScript in the ``_extra_files`` entry ``kdsleep.json``;
:func:`read_export_metadata` reads either.

:func:`export_model` checks the exported file against the PyTorch model on random input
(:func:`verify_export`) and refuses to leave a file whose outputs differ by more than ``1e-4``.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsleep._io import write_bytes_atomic
from kdsleep.checkpoint import Checkpoint
from kdsleep.inference import InferenceError, as_checkpoint
from kdsleep.models import UTime

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "export_metadata",
    "export_model",
    "format_from_path",
    "read_export_metadata",
    "run_exported",
    "verify_export",
]

logger = logging.getLogger(__name__)

#: Supported formats and their usual file suffixes.
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".ts", ".torchscript"),
}
#: Name of the TorchScript extra file that holds the metadata.
TORCHSCRIPT_METADATA_FILE = "kdsleep.json"
#: Input and output names of the exported graph.
INPUT_NAME = "signal"
OUTPUT_NAME = "logits"
#: Largest absolute difference between exported and PyTorch logits that :func:`export_model` accepts.
DEFAULT_TOLERANCE = 1e-4
#: ONNX opset of the export (17: supported by onnxruntime releases of the last years).
DEFAULT_OPSET = 17


class ExportError(InferenceError):
    """An export that cannot be made or does not reproduce the model."""


def _check_format(fmt: str) -> str:
    key = str(fmt).strip().lower()
    if key not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    return key


def format_from_path(path: str | os.PathLike[str]) -> str | None:
    """The export format a file suffix stands for (``.onnx`` -> onnx, ``.pt``/``.ts`` -> torchscript), or None."""
    suffix = Path(path).suffix.lower()
    for fmt, suffixes in EXPORT_FORMATS.items():
        if suffix in suffixes:
            return fmt
    return None


def export_metadata(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a runtime needs to know about an exported model.

    Returns
    -------
    dict
        ``class_names``, ``grouping``, ``modality``, ``input`` (``name``, ``layout``, ``channel``, ``n_chans``,
        ``sfreq``, ``n_epochs``, ``epoch_seconds``, ``n_times``), ``output`` (``name``, ``layout``, ``kind``),
        ``preprocess`` (the training pipeline's settings, to apply before the model), ``model_config``,
        ``variant``, ``kdsleep_version``, ``git_commit``.
    """
    model = checkpoint.model
    return {
        "format": "kdsleep-export",
        "class_names": list(checkpoint.class_names),
        "grouping": checkpoint.grouping,
        "modality": checkpoint.modality,
        "input": {
            "name": INPUT_NAME,
            "layout": "(batch, n_chans, n_times)",
            "channel": checkpoint.channel,
            "n_chans": model.n_chans,
            "channels": list(checkpoint.inputs),
            "sfreq": model.sfreq,
            "n_epochs": model.n_epochs,
            "epoch_seconds": model.epoch_seconds,
            "n_times": model.n_times,
        },
        "output": {
            "name": OUTPUT_NAME,
            "layout": "(batch, n_classes, n_epochs)",
            "kind": "logits (apply softmax over the class axis for probabilities)",
        },
        "preprocess": dict(checkpoint.preprocess),
        "model_config": model.get_config(),
        "variant": dict(checkpoint.variant),
        "kdsleep_version": checkpoint.kdsleep_version,
        "git_commit": checkpoint.git_commit,
    }


def _eager_copy(model: UTime) -> UTime:
    # Export from a CPU copy in eval mode: batch norm uses its running statistics, the caller's model stays put.
    return copy.deepcopy(model).cpu().eval()


def _onnx_bytes(model: UTime, metadata: dict[str, Any], opset_version: int) -> bytes:
    try:
        import onnx
    except ImportError as err:
        raise ExportError("ONNX export needs the 'onnx' package (pip install onnx)") from err
    example = torch.randn(2, model.n_chans, model.n_times)
    with tempfile.TemporaryDirectory(prefix="kdsleep-onnx-") as folder, warnings.catch_warnings():
        # The TorchScript-based exporter announces its own deprecation; the exported graph is checked below.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        graph_file = Path(folder) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            graph_file,
            dynamo=False,  # the torch.export-based exporter needs onnxscript as well
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset_version,
        )
        proto = onnx.load(str(graph_file))
    onnx.helper.set_model_props(proto, {key: json.dumps(value) for key, value in metadata.items()})
    proto.doc_string = (
        f"kdsleep U-Time ({metadata['modality'].upper()}, {metadata['input']['channel']}): "
        f"{metadata['input']['n_epochs']} epochs of {metadata['input']['epoch_seconds']:g} s at "
        f"{metadata['input']['sfreq']:g} Hz -> logits over {', '.join(metadata['class_names'])}"
    )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _torchscript_bytes(model: UTime, metadata: dict[str, Any]) -> bytes:
    with warnings.catch_warnings():
        # torch.jit announces its deprecation in recent releases; the scripted module is checked below.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        scripted = torch.jit.script(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


def export_model(
    checkpoint: Checkpoint | str | os.PathLike[str],
    path: str | os.PathLike[str],
    format: str = "onnx",
    *,
    opset_version: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Path:
    """Export a checkpoint's model to ONNX or TorchScript, atomically.

    Parameters
    ----------
    checkpoint : Checkpoint or path-like
        A loaded checkpoint or its file.
    path : path-like
        The exported file (conventionally ``.onnx`` or ``.pt``).
    format : {"onnx", "torchscript"}
        Export format.
    opset_version : int
        ONNX opset (17).
    check : bool
        Compare the export with the PyTorch model on random input before keeping it (needs
        ``onnxruntime`` for ONNX; skipped with a warning when it is absent).
    tolerance : float
        Largest accepted absolute difference of the logits (1e-4).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        For an unknown format, a missing ``onnx`` package, or an export that does not reproduce the model.
    """

    fmt = _check_format(format)
    checkpoint = as_checkpoint(checkpoint)
    path = Path(path)
    model = _eager_copy(checkpoint.model)
    metadata = export_metadata(checkpoint)
    data = (
        _onnx_bytes(model, metadata, opset_version) if fmt == "onnx" else _torchscript_bytes(model, metadata)
    )
    # Verify from a temporary file in the target folder, so a failing export never replaces a good one.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.checking")
    write_bytes_atomic(staging, data)
    try:
        if check:
            difference = verify_export(staging, model, format=fmt)
            if difference is None:
                logger.warning(
                    "%s: onnxruntime is not installed; the export was not checked against PyTorch", path
                )
            elif difference > tolerance:
                raise ExportError(
                    f"{path}: exported {fmt} model differs from PyTorch by {difference:.3g} (tolerance {tolerance:g})"
                )
            else:
                logger.info("%s: %s export matches PyTorch (max |difference| %.2e)", path, fmt, difference)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def _load_onnx_session(path: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_exported(path: str | os.PathLike[str], signals: np.ndarray, format: str | None = None) -> np.ndarray:
    """Run an exported model on ``signals`` (batch, n_chans, n_times) and return its logits.

    ``format`` defaults to the file's suffix. ONNX files run on onnxruntime's CPU provider.
    """
    path = Path(path)
    fmt = _check_format(format or _sniff_format(path))
    x = np.ascontiguousarray(signals, dtype=np.float32)
    if fmt == "onnx":
        session = _load_onnx_session(path)
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return np.asarray(logits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def _sniff_format(path: Path) -> str:
    fmt = format_from_path(path)
    if fmt is not None:
        return fmt
    with open(path, "rb") as fh:
        head = fh.read(4)
    # TorchScript archives are zip files; anything else is taken for an ONNX protobuf
    return "torchscript" if head.startswith(b"PK") else "onnx"


def verify_export(
    path: str | os.PathLike[str],
    model: UTime,
    *,
    format: str | None = None,
    batch_sizes: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> float | None:
    """Largest absolute difference between the exported model's logits and ``model``'s on random input.

    Batch sizes other than the export example's (2) exercise the dynamic batch dimension.

    Returns
    -------
    float or None
        The difference, or ``None`` for an ONNX file when onnxruntime is not installed.
    """
    path = Path(path)
    fmt = _check_format(format or _sniff_format(path))
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
    reference = _eager_copy(model)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batch_sizes:
        x = torch.randn(batch, reference.n_chans, reference.n_times, generator=generator)
        with torch.inference_mode():
            expected = reference(x).numpy()
        got = run_exported(path, x.numpy(), fmt)
        if got.shape != expected.shape:
            raise ExportError(f"{path}: exported model returns shape {got.shape}, expected {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata stored by :func:`export_model`, from an ONNX or TorchScript file.

    Raises
    ------
    ExportError
        When the file holds no kdsleep metadata.
    """
    path = Path(path)
    fmt = _sniff_format(path)
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        metadata = {prop.key: json.loads(prop.value) for prop in proto.metadata_props}
    else:
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        metadata = json.loads(extra[TORCHSCRIPT_METADATA_FILE] or "{}")
    if metadata.get("format") != "kdsleep-export":
        raise ExportError(f"{path}: no kdsleep metadata found (expected a file written by kdsleep export)")
    return metadata
