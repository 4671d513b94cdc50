"""Arguments and argument checks shared by the ``kdsleep ecg12`` training sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli import CLIError


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        choices=("small", "paper"),
        default="small",
        help="encoder sizes: 'small' trains on a CPU; 'paper' is XResNet-50 + SE-ResNet-34 with a 65 536-output "
        "head (for the whole challenge dataset on a GPU) (default small)",
    )
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N", help="windows per step")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of torch (default 1 for --size small, torch's default otherwise)",
    )


def set_threads(args: argparse.Namespace) -> None:
    import torch

    # Small models gain nothing from intra-op threads, and on a busy CPU the threads' spin-waits made each
    # step up to ten times slower.
    threads = (
        args.threads
        if args.threads is not None
        else (1 if args.size == "small" or getattr(args, "quick", False) else None)
    )
    if threads is not None:
        if threads < 1:
            raise CLIError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)


def check_dir(name: str, folder: Path | None) -> None:
    if folder is not None and not folder.is_dir():
        raise CLIError(f"{name} {folder} is not a folder")


def read_signals(folder: Path):
    from kdsleep.ecg12.pretrain import read_signals
    from kdsleep.ecg12.reader import HeaderError

    try:
        return read_signals(folder)
    except (HeaderError, ValueError) as err:
        raise CLIError(str(err)) from None


def scoring_tables(scoring_dir: Path):
    from kdsleep.ecg12.scoring import ScoringTableError, load_scoring_tables

    try:
        return load_scoring_tables(scoring_dir)
    except ScoringTableError as err:
        raise CLIError(str(err)) from None


def pretrained_paths(pretrain_dir: Path | None) -> dict[str, Path] | None:
    if pretrain_dir is None:
        return None
    check_dir("--pretrain-dir", pretrain_dir)
    paths = {m: pretrain_dir / f"{m}.pt" for m in ("time", "spectrogram")}
    found = {m: p for m, p in paths.items() if p.is_file()}
    if not found:
        raise CLIError(f"--pretrain-dir {pretrain_dir}: neither time.pt nor spectrogram.pt found")
    return found


def finetune_config(args: argparse.Namespace, quick: bool = False):
    import dataclasses

    from kdsleep.ecg12.cv import CVSettings
    from kdsleep.ecg12.finetune import FinetuneConfig

    config = FinetuneConfig.small() if args.size == "small" else FinetuneConfig.paper()
    if quick:
        config = CVSettings.quick().finetune
    changes: dict = {"seed": args.seed}
    if args.steps is not None:
        changes.update(n_steps=args.steps, eval_every=max(1, min(config.eval_every, args.steps // 4 or 1)))
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as err:
        raise CLIError(str(err)) from None
