"""``kdsleep ecg12 cv``: cross-validation with the challenge metric."""

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
        "cv",
        help="10-fold cross-validation with the challenge metric, macro F1 and per-class F1/AUROC",
        description="Cross-validate the gate-fusion classifier: folds by iterative multi-label stratification, "
        "test fold k, validation fold k+1 (thresholds, model selection), the rest for training. Writes "
        "report.md and report.json (mean ± SD over folds) and each fold's test outputs in the challenge format.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="labelled records")
    parser.add_argument(
        "--scoring-dir", type=Path, required=True, metavar="DIR", help="challenge scoring tables"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("ecg12_cv"), metavar="DIR", help="(default ecg12_cv)"
    )
    parser.add_argument("--pretrain-dir", type=Path, default=None, metavar="DIR", help="output of pretrain")
    parser.add_argument(
        "--unlabelled-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="pre-train both encoders on these records first (when --pretrain-dir is not given)",
    )
    parser.add_argument("--n-folds", type=int, default=10, help="folds (10)")
    parser.add_argument("--rounds", type=int, default=None, help="run only the first N rounds (default all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test on a CPU in under a minute: small models, 60 pre-training and 200 fine-tuning steps, 3 of 10 rounds",
    )
    add_size_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.ecg12.cv import CVSettings, run_cv

    set_threads(args)

    for name, folder in (("--data-dir", args.data_dir), ("--unlabelled-dir", args.unlabelled_dir)):
        check_dir(name, folder)
    tables = scoring_tables(args.scoring_dir)
    pretrained = pretrained_paths(args.pretrain_dir)
    if args.n_folds < 3:
        raise CLIError(f"--n-folds must be at least 3 (train, validation, test), got {args.n_folds}")
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else None)
    pretrain_steps = (
        args.steps if args.steps is not None else (CVSettings.quick().pretrain_steps if args.quick else None)
    )
    settings = CVSettings(
        n_folds=args.n_folds,
        rounds=rounds,
        finetune=finetune_config(args, quick=args.quick),
        pretrain_steps=pretrain_steps,
        seed=args.seed,
    )
    records = read_signals(args.data_dir)
    if len(records) < args.n_folds:
        raise CLIError(f"--data-dir {args.data_dir}: {len(records)} records for {args.n_folds} folds")
    unlabelled = read_signals(args.unlabelled_dir) if args.unlabelled_dir and not pretrained else None
    report = run_cv(
        records,
        tables,
        args.out_dir,
        settings,
        pretrained=pretrained,
        unlabelled=unlabelled,
        data_dir=args.data_dir,
        quick=args.quick,
        device=args.device,
    )
    s = report["summary"]

    def fmt(stat: dict) -> str:
        return "n/a" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"

    print(f"rounds: {len(report['folds'])} of {args.n_folds}; wall time {report['seconds']:.0f} s")
    print(f"challenge metric: {fmt(s['challenge_metric'])}")
    print(f"macro F1: {fmt(s['macro_f1'])}")
    print(f"macro AUROC: {fmt(s['macro_auroc'])}")
    print(f"report: {args.out_dir / 'report.md'}")
    return 0
