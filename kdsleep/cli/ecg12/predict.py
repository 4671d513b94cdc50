"""``kdsleep ecg12 predict``: classify records into challenge-format outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli import CLIError
from kdsleep.cli.ecg12._common import (
    check_dir,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="classify records and write challenge-format CSV outputs (scorable by 'kdsleep ecg12 score')",
        description="Classify every record of DATA_DIR with a finetune checkpoint; one CSV per record in OUTPUT_DIR.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="FILE", help="finetune checkpoint")
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="records to classify")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR", help="where CSV files go")
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.ecg12.predict import predict_folder

    check_dir("--data-dir", args.data_dir)
    try:
        predictions = predict_folder(args.checkpoint, args.data_dir, args.output_dir)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {len(predictions.files)} output files to {args.output_dir}")
    return 0
