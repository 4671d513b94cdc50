"""``kdsleep export``: write a trained model as ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript (dynamic batch, input spec as metadata)",
        description=(
            "Export a trained U-Time to ONNX or TorchScript. The exported model takes preprocessed signals "
            "(batch, n_chans, n_times) and returns logits (batch, n_classes, n_epochs); the batch size is "
            "free. Class names, stage grouping, input channel, sampling rate, window and preprocessing "
            "settings are stored in the file (ONNX metadata_props; TorchScript extra file kdsleep.json). "
            "The export is compared with PyTorch on random input and rejected if the logits differ by "
            "more than 1e-4."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, metavar="CKPT", help="checkpoint (.pt)")
    parser.add_argument(
        "--format",
        metavar="FORMAT",
        help="onnx or torchscript (default: from the --out suffix, .onnx -> onnx, .pt/.ts -> torchscript)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="exported file (default: the checkpoint's name with .onnx or .torchscript.pt)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument(
        "--no-check", action="store_true", help="do not compare the export with PyTorch before keeping it"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.cli import CLIError
    from kdsleep.export import EXPORT_FORMATS, export_model, format_from_path, read_export_metadata
    from kdsleep.inference import InferenceError, load_model_checkpoint

    fmt = args.format
    if fmt is None:
        fmt = format_from_path(args.out) if args.out is not None else None
        if fmt is None:
            raise CLIError(
                f"--format is required (one of {', '.join(EXPORT_FORMATS)})"
                + (f"; the suffix of --out {args.out} does not tell" if args.out is not None else "")
            )
    fmt = fmt.strip().lower()
    if fmt not in EXPORT_FORMATS:
        raise CLIError(f"unknown export format {args.format!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    out = args.out
    if out is None:
        out = args.model.with_suffix(".onnx" if fmt == "onnx" else ".torchscript.pt")
    if out.exists() and out.is_dir():
        raise CLIError(f"--out {out} is a folder; expected a file name")
    if out.resolve() == args.model.resolve():
        raise CLIError(f"--out {out} is the checkpoint itself; choose another file name")
    try:
        checkpoint = load_model_checkpoint(args.model)
        path = export_model(checkpoint, out, fmt, opset_version=args.opset, check=not args.no_check)
        metadata = read_export_metadata(path)
    except InferenceError as err:
        raise CLIError(str(err)) from err
    spec = metadata["input"]
    print(
        f"wrote {fmt} model: {path}\n"
        f"  input  {spec['name']!r} (batch, {spec['n_chans']}, {spec['n_times']}): {spec['n_epochs']} epochs x "
        f"{spec['epoch_seconds']:g} s at {spec['sfreq']:g} Hz of {spec['channel']!r}, preprocessed as in training\n"
        f"  output {metadata['output']['name']!r} (batch, {len(metadata['class_names'])}, {spec['n_epochs']}) "
        f"logits over {', '.join(metadata['class_names'])}"
    )
    return 0
