"""``kdsleep ecg12 pretrain``: self-distillation pre-training of the encoders."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli import CLIError
from kdsleep.cli.ecg12._common import (
    add_size_arguments,
    check_dir,
    read_signals,
    set_threads,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        help="self-distillation (DINO) pre-training of the time-series and spectrogram encoders",
        description="Pre-train the encoders on unlabelled records (no labels are read) and write "
        "OUT_DIR/time.pt and OUT_DIR/spectrogram.pt for finetune and cv --pretrain-dir.",
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="folder of records (.hea + .mat)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR", help="where checkpoints go")
    parser.add_argument(
        "--modality", choices=("time", "spectrogram", "both"), default="both", help="encoder(s) to pre-train"
    )
    add_size_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    import dataclasses

    set_threads(args)

    from kdsleep.ecg12.pretrain import PretrainConfig, pretrain

    check_dir("--data-dir", args.data_dir)
    records = read_signals(args.data_dir)
    modalities = ("time", "spectrogram") if args.modality == "both" else (args.modality,)
    for modality in modalities:
        config = PretrainConfig.small(modality) if args.size == "small" else PretrainConfig.paper(modality)  # type: ignore[arg-type]
        changes: dict = {"seed": args.seed}
        if args.steps is not None:
            changes["n_steps"] = args.steps
        if args.batch_size is not None:
            changes["batch_size"] = args.batch_size
        try:
            config = dataclasses.replace(config, **changes)
        except ValueError as err:
            raise CLIError(str(err)) from None
        result = pretrain(records, config, args.out_dir / f"{modality}.pt", device=args.device)
        print(
            f"{modality}: {config.n_steps} steps on {len(records)} records in {result.seconds:.1f} s, "
            f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}; wrote {result.checkpoint}"
        )
    return 0
