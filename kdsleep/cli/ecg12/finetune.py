"""``kdsleep ecg12 finetune``: train the gate-fusion classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli import CLIError
from kdsleep.cli.ecg12._common import (
    add_size_arguments,
    check_dir,
    finetune_config,
    pretrained_paths,
    read_signals,
    scoring_tables,
    set_threads,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "finetune",
        help="train the gate-fusion classifier on labelled records",
        description="Train the gate-fusion classifier on labelled records. A stratified share of them "
        "(--validation-fraction) is held out to select the step and the per-class decision thresholds.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="labelled records")
    parser.add_argument(
        "--scoring-dir", type=Path, required=True, metavar="DIR", help="challenge scoring tables"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="classifier checkpoint to write"
    )
    parser.add_argument("--pretrain-dir", type=Path, default=None, metavar="DIR", help="output of pretrain")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of records held out for validation (0.1)",
    )
    add_size_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    set_threads(args)

    from kdsleep.ecg12.finetune import finetune
    from kdsleep.ecg12.folds import iterative_stratification

    check_dir("--data-dir", args.data_dir)
    if not 0.0 < args.validation_fraction < 0.5:
        raise CLIError(f"--validation-fraction must be in (0, 0.5), got {args.validation_fraction}")
    tables = scoring_tables(args.scoring_dir)
    pretrained = pretrained_paths(args.pretrain_dir)
    records = read_signals(args.data_dir)
    if len(records) < 3:
        raise CLIError(f"--data-dir {args.data_dir}: {len(records)} usable records, at least 3 are needed")
    labels = np.stack([tables.encode(r.dx_codes) for r in records])
    n_parts = max(2, round(1.0 / args.validation_fraction))
    parts = iterative_stratification(labels, n_parts, args.seed)
    validation = np.flatnonzero(parts == 0)
    train = np.flatnonzero(parts != 0)
    try:
        result = finetune(
            [records[i] for i in train],
            labels[train],
            [records[i] for i in validation],
            labels[validation],
            finetune_config(args),
            pretrained=pretrained,
            classes=tables.classes,
            checkpoint_path=args.out,
            device=args.device,
        )
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(
        f"trained on {len(train)} records, validated on {len(validation)}; best step {result.best_step}; "
        f"wrote {result.checkpoint}"
    )
    return 0
