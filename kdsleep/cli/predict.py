"""``kdsleep predict``: stage a recording with a trained model (ECG-only inference with an ECG student), or a
night of heartbeat times (``--beats``) with a heart-rate model."""

from __future__ import annotations

import argparse
import logging
import os
import re
import warnings
from datetime import datetime
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="stage a recording (EDF/BDF) or a night of heartbeats (--beats) with a trained model: hypnogram "
        "as CSV, EDF+ and PNG",
        description=(
            "Read the model's channel (ECG lead I for an ECG student) from an EDF, EDF+ or BDF recording, "
            "preprocess it as at training time, stage every 30-s epoch and write <name>_hypnogram.csv "
            "(epoch, onset_s, stage, one probability column per class), <name>_hypnogram.edf (EDF+ "
            "'Sleep stage ...' annotations) and <name>_hypnogram.png. No EEG and no scoring are needed. With "
            "--beats FILE, a heart-rate model stages the night from heartbeat times instead (see 'heartbeat input' "
            "below) and a one-line sleep summary is printed: total sleep time, sleep efficiency, sleep onset and "
            "REM latency, minutes per stage."
        ),
    )
    parser.add_argument(
        "recording", nargs="?", type=Path, metavar="RECORDING", help="EDF, EDF+ or BDF file (or use --beats)"
    )
    parser.add_argument(
        "--model",
        metavar="CKPT|NAME",
        help="checkpoint (.pt) or the name of a shipped model (an unknown name lists the shipped ones); with "
        "--beats the default is the shipped hr-slpdb-3class",
    )
    beats = parser.add_argument_group(
        "heartbeat input",
        "Stage a night from heartbeat times with a heart-rate model: WFDB beat annotations (.ecg, .atr, .qrs, "
        "...), a CSV/text file of R-peak times in seconds or of RR intervals (ms or s; chest-strap exports with "
        "one RR in ms per line), or an EDF whose ECG goes through the beat detector.",
    )
    beats.add_argument("--beats", type=Path, metavar="FILE", help="heartbeat file (instead of RECORDING)")
    beats.add_argument(
        "--beats-format",
        choices=("auto", "wfdb", "peaks", "rr", "edf"),
        default="auto",
        help="format of --beats (default auto: from the extension and content)",
    )
    beats.add_argument(
        "--rr-unit", choices=("auto", "ms", "s"), default="auto", help="unit of RR intervals (default auto)"
    )
    beats.add_argument("--beats-column", metavar="NAME|INDEX", help="column of a table with several columns")
    beats.add_argument(
        "--start",
        metavar="DATETIME",
        help="recording start, e.g. 2024-03-01T23:05:00 (default: from the file where it has one)",
    )
    beats.add_argument(
        "--duration",
        metavar="LENGTH",
        help="recording length in s, or with a unit: 7.5h, 450min (default: from the file, else the last beat)",
    )
    beats.add_argument(
        "--max-gap-min",
        type=float,
        default=5.0,
        metavar="MIN",
        help="stretches without a valid heart rate longer than this are left unstaged (default 5)",
    )
    parser.add_argument(
        "--channel",
        metavar="NAME",
        help="channel of the recording to use (default: the model's, e.g. ECG lead I; aliases such as "
        "'ECG I', 'ECG ECGI', 'EKG' are found)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: the recording's folder, or the current folder when that one is read-only)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--batch-size", type=int, default=4, help="model windows per forward pass (default 4)"
    )
    parser.add_argument(
        "--allow-eeg",
        action="store_true",
        help="run an EEG teacher checkpoint too (refused by default: predict expects an ECG student)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser


def _writable_folder(folder: Path) -> bool:
    """Whether ``folder`` takes new files: writable to this user and not marked read-only for everyone
    (a data folder set to ``r-x`` is respected even when running as root)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & 0o222)


def _parse_duration(text: str | None) -> float | None:
    from kdsleep.cli import CLIError

    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(h|min|m|s)?\s*", text)
    if not match:
        raise CLIError(
            f"--duration {text!r}: expected seconds or a length with a unit, e.g. 28800, 8h, 480min"
        )
    value = float(match.group(1)) * {"h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, None: 1.0}[match.group(2)]
    if value <= 0:
        raise CLIError(f"--duration {text!r}: expected a positive length")
    return value


def _parse_start(text: str | None) -> datetime | None:
    from kdsleep.cli import CLIError

    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CLIError(f"--start {text!r}: expected an ISO date and time, e.g. 2024-03-01T23:05:00") from None


#: What the library's ``remedy`` arguments are called on this command line.
_FLAGS = {
    "allow_other_modality": "pass --allow-eeg to run it anyway",
    "channel": "--channel NAME",
    "format": "--beats-format {wfdb,peaks,rr,edf}",
    "rr_unit": "--rr-unit {ms,s}",
    "column": "--beats-column NAME|INDEX",
    "duration": "--duration",
    "model": "--model CKPT or NAME",
}


def _hint(remedy: str | None) -> str:
    """`` [--flag ...]`` for the arguments an error names as its remedy (comma-separated), or nothing."""
    flags = [_FLAGS[r] for r in (remedy or "").split(",") if r in _FLAGS]
    if not flags:
        return ""
    if flags == [_FLAGS["allow_other_modality"]]:
        return "; " + flags[0]
    return f" [{'; '.join(flags)}]"


def run(args: argparse.Namespace) -> int:
    from kdsleep._preflight import unwritable_output
    from kdsleep.cli import CLIError
    from kdsleep.evaluation.summary import summarize_prediction
    from kdsleep.hr_bundle import HRStagerBundle
    from kdsleep.inference import InferenceError, predict_recording
    from kdsleep.models import pretrained
    from kdsleep.models.pretrained import resolve_model
    from kdsleep.prediction import output_paths, write_prediction

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    if (args.recording is None) == (args.beats is None):
        raise CLIError(
            "give either a RECORDING (EDF/BDF) or --beats FILE, not both"
            if args.beats
            else "no input: give a RECORDING (EDF/BDF) or --beats FILE"
        )
    if not args.max_gap_min > 0:
        raise CLIError(f"--max-gap-min must be > 0, got {args.max_gap_min}")
    start = _parse_start(args.start)
    duration = _parse_duration(args.duration)
    source = args.beats if args.beats is not None else args.recording
    out = args.out
    if out is None and not _writable_folder(source.resolve().parent):
        out = Path.cwd()
        logger.info("%s: its folder is not writable; writing the hypnogram to %s", source, out)
    outputs = output_paths(source, out)
    if problem := unwritable_output(p for kind, p in outputs.items() if kind != "png" or not args.no_plot):
        raise CLIError(f"{problem} (checked before staging; nothing was written)")
    try:
        checkpoint = resolve_model(args.model)
        label = args.model if args.model is not None else f"{pretrained.DEFAULT_MODEL} (default)"
        if isinstance(checkpoint, HRStagerBundle):
            if args.beats is None:
                raise CLIError(
                    f"model {label} stages from heartbeat times: pass --beats {args.recording} (beats are "
                    "detected in its ECG) or a U-Time checkpoint with --model"
                )
            print(f"model {label}: {checkpoint.describe()}")
        else:
            print(
                f"model {label}: {checkpoint.modality.upper()} U-Time on "
                f"{', '.join(checkpoint.inputs) or checkpoint.channel!r}, {checkpoint.n_classes} classes "
                f"({'-'.join(checkpoint.class_names)}), windows of {checkpoint.n_epochs} x "
                f"{checkpoint.epoch_seconds:g} s at {checkpoint.sfreq:g} Hz"
            )
        with warnings.catch_warnings():
            # the modality warning is printed by logging; no need for Python's warning line as well
            warnings.simplefilter("ignore", category=UserWarning)
            if args.beats is not None:
                from kdsleep.beats_inference import predict_beats

                column = args.beats_column
                prediction = predict_beats(
                    checkpoint,
                    args.beats,
                    format=args.beats_format,
                    rr_unit=args.rr_unit,
                    column=int(column) if column is not None and column.isdigit() else column,
                    channel=args.channel,
                    start=start,
                    duration=duration,
                    max_gap_min=args.max_gap_min,
                    device=args.device,
                    batch_size=args.batch_size,
                )
            else:
                assert not isinstance(checkpoint, HRStagerBundle)  # refused above without --beats
                prediction = predict_recording(
                    checkpoint,
                    args.recording,
                    channel=args.channel,
                    device=args.device,
                    batch_size=args.batch_size,
                    allow_other_modality=args.allow_eeg,
                )
    except InferenceError as err:
        raise CLIError(str(err) + _hint(err.remedy)) from err
    try:
        paths = write_prediction(prediction, out, plot=not args.no_plot)
    except OSError as err:
        raise CLIError(f"cannot write the hypnogram to {args.out or source.parent}: {err}") from err
    hours = prediction.n_epochs * prediction.epoch_seconds / 3600
    fractions = ", ".join(f"{name} {share:.0%}" for name, share in prediction.stage_fractions().items())
    unscored = int((~prediction.scored).sum())
    why = "signal gaps" if args.beats is not None else "NaN/flat signal"
    print(
        f"{source}: {prediction.n_epochs} epochs ({hours:.2f} h) from {prediction.channel!r} in "
        f"{prediction.n_windows} window{'s' if prediction.n_windows != 1 else ''}; {fractions}"
        + (f"; {unscored} epochs without stage ({why})" if unscored else "")
    )
    print(f"summary: {summarize_prediction(prediction).one_line()}")
    for kind, path in paths.items():
        print(f"wrote {kind.upper()}: {path}")
    return 0
