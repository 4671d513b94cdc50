"""``kdsleep predict``: stage a recording with a trained model (ECG-only inference with an ECG student)."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="stage a recording (EDF/BDF) with a trained model: hypnogram as CSV, EDF+ and PNG",
        description=(
            "Read the model's channel (ECG lead I for an ECG student) from an EDF, EDF+ or BDF recording, "
            "preprocess it as at training time, stage every 30-s epoch and write <name>_hypnogram.csv "
            "(epoch, onset_s, stage, one probability column per class), <name>_hypnogram.edf (EDF+ "
            "'Sleep stage ...' annotations) and <name>_hypnogram.png. No EEG and no scoring are needed."
        ),
    )
    parser.add_argument("recording", type=Path, metavar="RECORDING", help="EDF, EDF+ or BDF file")
    parser.add_argument("--model", required=True, type=Path, metavar="CKPT", help="checkpoint (.pt)")
    parser.add_argument(
        "--channel",
        metavar="NAME",
        help="channel of the recording to use (default: the model's, e.g. ECG lead I; aliases such as "
        "'ECG I', 'ECG ECGI', 'EKG' are found)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: the recording's folder)"
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


def run(args: argparse.Namespace) -> int:
    from kdsleep.cli import CLIError
    from kdsleep.inference import InferenceError, load_model_checkpoint, predict_recording, write_prediction

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    try:
        checkpoint = load_model_checkpoint(args.model)
        print(
            f"model {args.model}: {checkpoint.modality.upper()} U-Time on {checkpoint.channel!r}, "
            f"{checkpoint.n_classes} classes ({'-'.join(checkpoint.class_names)}), windows of "
            f"{checkpoint.n_epochs} x {checkpoint.epoch_seconds:g} s at {checkpoint.sfreq:g} Hz"
        )
        with warnings.catch_warnings():
            # the modality warning is printed by logging; no need for Python's warning line as well
            warnings.simplefilter("ignore", category=UserWarning)
            prediction = predict_recording(
                checkpoint,
                args.recording,
                channel=args.channel,
                device=args.device,
                batch_size=args.batch_size,
                allow_other_modality=args.allow_eeg,
            )
    except InferenceError as err:
        hints = {
            "allow_other_modality": "; pass --allow-eeg to run it anyway",
            "channel": "; choose one with --channel NAME",
        }
        raise CLIError(str(err) + hints.get(err.remedy or "", "")) from err
    try:
        paths = write_prediction(prediction, args.out, plot=not args.no_plot)
    except OSError as err:
        raise CLIError(f"cannot write the hypnogram to {args.out or args.recording.parent}: {err}") from err
    hours = prediction.n_epochs * prediction.epoch_seconds / 3600
    fractions = ", ".join(f"{name} {share:.0%}" for name, share in prediction.stage_fractions().items())
    unscored = int((~prediction.scored).sum())
    print(
        f"{args.recording}: {prediction.n_epochs} epochs ({hours:.2f} h) from {prediction.channel!r} in "
        f"{prediction.n_windows} windows; {fractions}"
        + (f"; {unscored} epochs without stage (NaN/flat signal)" if unscored else "")
    )
    for kind, path in paths.items():
        print(f"wrote {kind.upper()}: {path}")
    return 0
