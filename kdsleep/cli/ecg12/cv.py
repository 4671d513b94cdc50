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
    parser.add_argument(
        "--pretrain-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="checkpoints time.pt/spectrogram.pt written by 'kdsleep ecg12 pretrain' (not a folder of records); "
        "used in every round, so they must not have been trained on these records",
    )
    parser.add_argument(
        "--unlabelled-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="extra records for pre-training (labels never read): each round pre-trains both encoders on its "
        "training records plus these; copies of labelled records are dropped",
    )
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="pre-train both encoders in each round on that round's training records (implied by --unlabelled-dir)",
    )
    parser.add_argument(
        "--transductive",
        action="store_true",
        help="pre-train once on every record, test folds included (signals only, never labels), instead of per "
        "round; the report names the mode 'transductive'",
    )
    parser.add_argument(
        "--patient-map",
        type=Path,
        default=None,
        metavar="CSV",
        help="record-to-patient table (columns record,patient, or PTB-XL's ptbxl_database.csv) keeping each "
        "patient's records in one fold; without it folds are by record (the challenge headers name no patient)",
    )
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep records with identical signals (default: all but one copy are dropped before the folds)",
    )
    parser.add_argument("--n-folds", type=int, default=10, help="folds (10)")
    parser.add_argument("--rounds", type=int, default=None, help="run only the first N rounds (default all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test on a CPU in minutes: small models, 60 pre-training steps per modality in each round and "
        "200 fine-tuning steps, 3 of 10 rounds",
    )
    add_size_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.ecg12.cv import CVSettings, run_cv
    from kdsleep.ecg12.reader import HeaderError, read_patient_map

    set_threads(args)
    if args.pretrain_dir is not None and (args.unlabelled_dir or args.pretrain or args.transductive):
        raise CLIError(
            "--pretrain-dir gives finished encoders; it cannot be combined with --unlabelled-dir, --pretrain or "
            "--transductive, which pre-train inside the cross-validation"
        )
    patient_ids = None
    if args.patient_map is not None:
        try:
            patient_ids = read_patient_map(args.patient_map)
        except (HeaderError, OSError) as err:
            raise CLIError(f"--patient-map {args.patient_map}: {err}") from err

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
        pretrain=True if (args.pretrain or args.transductive) else None,
        transductive=args.transductive,
        drop_duplicates=not args.keep_duplicates,
    )
    records = read_signals(args.data_dir)
    if len(records) < args.n_folds:
        raise CLIError(f"--data-dir {args.data_dir}: {len(records)} records for {args.n_folds} folds")
    unlabelled = read_signals(args.unlabelled_dir) if args.unlabelled_dir and not pretrained else None
    try:
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
            patient_ids=patient_ids,
        )
    except ValueError as err:
        raise CLIError(str(err)) from err
    s = report["summary"]

    def fmt(stat: dict) -> str:
        return "n/a" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"

    print(f"rounds: {len(report['folds'])} of {args.n_folds}; wall time {report['seconds']:.0f} s")
    print(
        f"pre-training: {report['pretraining']['mode']}; folds grouped by {report['grouping']['unit']}; "
        f"duplicates dropped: {report['duplicates']['n_dropped_labelled']} labelled, "
        f"{report['duplicates']['n_dropped_unlabelled']} unlabelled"
    )
    print(f"challenge metric: {fmt(s['challenge_metric'])}")
    print(f"macro F1: {fmt(s['macro_f1'])}")
    print(f"macro AUROC: {fmt(s['macro_auroc'])}")
    print(f"report: {args.out_dir / 'report.md'}")
    return 0
