"""``kdsleep ecg12``: 12-lead ECG arrhythmia classification on PhysioNet/CinC 2020 data.

Each action is a sub-command of its own (``kdsleep ecg12 score ...``), registered in :data:`ACTIONS` as a
pair of functions: one that adds its parser, one that runs it and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from kdsleep.cli import CLIError

logger = logging.getLogger(__name__)

AddParser = Callable[[argparse._SubParsersAction], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------------------------
# kdsleep ecg12 score
# ---------------------------------------------------------------------------------------------------------


def _add_score_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score",
        help="score a classifier's outputs with the official PhysioNet/CinC 2020 metrics",
        description=(
            "Score a classifier's outputs as the official PhysioNet/CinC Challenge 2020 evaluation does, and print "
            "its figures: AUROC, AUPRC, Accuracy, F-measure, Fbeta-measure, Gbeta-measure, Challenge metric. "
            "LABEL_DIR holds one header (.hea) per recording, with a '#Dx:' line of SNOMED CT codes; OUTPUT_DIR "
            "holds one CSV per recording, same name, in the challenge's format: line 1 '#record', line 2 the "
            "class codes, line 3 the binary outputs (0/1), line 4 the probabilities."
        ),
    )
    parser.add_argument(
        "label_dir", metavar="LABEL_DIR", type=Path, help="folder of header files with #Dx lines"
    )
    parser.add_argument(
        "output_dir", metavar="OUTPUT_DIR", type=Path, help="folder of the classifier's CSV outputs"
    )
    parser.add_argument(
        "--scoring-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder with the challenge's weights.csv and dx_mapping_scored.csv",
    )
    parser.add_argument(
        "--normal-class",
        default=None,
        metavar="CODE",
        help="SNOMED CT code of normal sinus rhythm (default 426783006)",
    )
    parser.add_argument("--scores", type=Path, metavar="CSV", help="also write the figures to this file")
    parser.add_argument(
        "--class-scores",
        type=Path,
        metavar="CSV",
        help="write per-class AUROC, AUPRC and F-measure to this file",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="read a malformed output file as all-negative with a warning, as the official evaluation does, "
        "instead of stopping with an error",
    )
    return parser


def _run_score(args: argparse.Namespace) -> int:
    import numpy as np

    from kdsleep.ecg12.reader import HeaderError, read_dx_codes
    from kdsleep.ecg12.scoring import (
        NORMAL_SINUS_RHYTHM,
        ChallengeOutputError,
        ScoringTableError,
        evaluate,
        load_scoring_tables,
        read_challenge_output,
        write_text_atomic,
    )

    try:
        tables = load_scoring_tables(args.scoring_dir, args.normal_class or NORMAL_SINUS_RHYTHM)
    except ScoringTableError as err:
        raise CLIError(str(err)) from None
    for name, folder in (("LABEL_DIR", args.label_dir), ("OUTPUT_DIR", args.output_dir)):
        if not folder.is_dir():
            raise CLIError(f"{name} {folder} is not a folder")
    label_files = sorted(
        p
        for p in args.label_dir.iterdir()
        if p.is_file() and p.suffix.lower() == ".hea" and not p.name.startswith(".")
    )
    if not label_files:
        raise CLIError(f"no header files (.hea) in LABEL_DIR {args.label_dir}")
    missing = [p for p in label_files if not (args.output_dir / (p.stem + ".csv")).is_file()]
    if missing:
        shown = ", ".join(p.stem + ".csv" for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CLIError(
            f"{len(missing)} of {len(label_files)} recordings have no output file in {args.output_dir}: {shown} "
            f"(expected one CSV per header, e.g. {missing[0].stem}.csv for {missing[0].name})"
        )

    labels = np.zeros((len(label_files), tables.n_classes), dtype=bool)
    binary = np.zeros_like(labels)
    scalar = np.zeros(labels.shape, dtype=np.float64)
    for i, label_file in enumerate(label_files):
        try:
            codes = read_dx_codes(label_file)
        except HeaderError as err:
            raise CLIError(str(err)) from None
        if codes is None:
            raise CLIError(f"{label_file}: field 'Dx': no '#Dx:' line with the recording's diagnoses")
        labels[i] = tables.encode(codes)
        try:
            binary[i], scalar[i] = read_challenge_output(
                args.output_dir / (label_file.stem + ".csv"), tables, strict=not args.lenient
            )
        except ChallengeOutputError as err:
            raise CLIError(str(err)) from None
    logger.debug("scored %d recordings over %d classes", len(label_files), tables.n_classes)

    scores = evaluate(labels, binary, scalar, tables)
    print(scores.summary())
    if args.scores is not None:
        write_text_atomic(args.scores, scores.summary() + "\n")
    if args.class_scores is not None:
        write_text_atomic(args.class_scores, scores.class_summary() + "\n")
    return 0


# ---------------------------------------------------------------------------------------------------------
# Training: pretrain, finetune, cv, predict
# ---------------------------------------------------------------------------------------------------------


def _add_size_arguments(parser: argparse.ArgumentParser) -> None:
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


def _set_threads(args: argparse.Namespace) -> None:
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


def _check_dir(name: str, folder: Path | None) -> None:
    if folder is not None and not folder.is_dir():
        raise CLIError(f"{name} {folder} is not a folder")


def _read_signals(folder: Path):
    from kdsleep.ecg12.pretrain import read_signals
    from kdsleep.ecg12.reader import HeaderError

    try:
        return read_signals(folder)
    except (HeaderError, ValueError) as err:
        raise CLIError(str(err)) from None


def _tables(scoring_dir: Path):
    from kdsleep.ecg12.scoring import ScoringTableError, load_scoring_tables

    try:
        return load_scoring_tables(scoring_dir)
    except ScoringTableError as err:
        raise CLIError(str(err)) from None


def _pretrained_paths(pretrain_dir: Path | None) -> dict[str, Path] | None:
    if pretrain_dir is None:
        return None
    _check_dir("--pretrain-dir", pretrain_dir)
    paths = {m: pretrain_dir / f"{m}.pt" for m in ("time", "spectrogram")}
    found = {m: p for m, p in paths.items() if p.is_file()}
    if not found:
        raise CLIError(f"--pretrain-dir {pretrain_dir}: neither time.pt nor spectrogram.pt found")
    return found


def _finetune_config(args: argparse.Namespace, quick: bool = False):
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


def _add_pretrain_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    _add_size_arguments(parser)
    return parser


def _run_pretrain(args: argparse.Namespace) -> int:
    import dataclasses

    _set_threads(args)

    from kdsleep.ecg12.pretrain import PretrainConfig, pretrain

    _check_dir("--data-dir", args.data_dir)
    records = _read_signals(args.data_dir)
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


def _add_finetune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    _add_size_arguments(parser)
    return parser


def _run_finetune(args: argparse.Namespace) -> int:
    import numpy as np

    _set_threads(args)

    from kdsleep.ecg12.finetune import finetune
    from kdsleep.ecg12.folds import iterative_stratification

    _check_dir("--data-dir", args.data_dir)
    if not 0.0 < args.validation_fraction < 0.5:
        raise CLIError(f"--validation-fraction must be in (0, 0.5), got {args.validation_fraction}")
    tables = _tables(args.scoring_dir)
    pretrained = _pretrained_paths(args.pretrain_dir)
    records = _read_signals(args.data_dir)
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
            _finetune_config(args),
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


def _add_cv_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    _add_size_arguments(parser)
    return parser


def _run_cv(args: argparse.Namespace) -> int:
    from kdsleep.ecg12.cv import CVSettings, run_cv

    _set_threads(args)

    for name, folder in (("--data-dir", args.data_dir), ("--unlabelled-dir", args.unlabelled_dir)):
        _check_dir(name, folder)
    tables = _tables(args.scoring_dir)
    pretrained = _pretrained_paths(args.pretrain_dir)
    if args.n_folds < 3:
        raise CLIError(f"--n-folds must be at least 3 (train, validation, test), got {args.n_folds}")
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else None)
    pretrain_steps = (
        args.steps if args.steps is not None else (CVSettings.quick().pretrain_steps if args.quick else None)
    )
    settings = CVSettings(
        n_folds=args.n_folds,
        rounds=rounds,
        finetune=_finetune_config(args, quick=args.quick),
        pretrain_steps=pretrain_steps,
        seed=args.seed,
    )
    records = _read_signals(args.data_dir)
    if len(records) < args.n_folds:
        raise CLIError(f"--data-dir {args.data_dir}: {len(records)} records for {args.n_folds} folds")
    unlabelled = _read_signals(args.unlabelled_dir) if args.unlabelled_dir and not pretrained else None
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


def _add_predict_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="classify records and write challenge-format CSV outputs (scorable by 'kdsleep ecg12 score')",
        description="Classify every record of DATA_DIR with a finetune checkpoint; one CSV per record in OUTPUT_DIR.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="FILE", help="finetune checkpoint")
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="records to classify")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR", help="where CSV files go")
    return parser


def _run_predict(args: argparse.Namespace) -> int:
    from kdsleep.ecg12.predict import predict_folder

    _check_dir("--data-dir", args.data_dir)
    try:
        predictions = predict_folder(args.checkpoint, args.data_dir, args.output_dir)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {len(predictions.files)} output files to {args.output_dir}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# Registry and entry points
# ---------------------------------------------------------------------------------------------------------

#: Sub-commands of ``kdsleep ecg12``: name -> (add its parser, run it).
ACTIONS: dict[str, tuple[AddParser, Run]] = {
    "score": (_add_score_parser, _run_score),
    "pretrain": (_add_pretrain_parser, _run_pretrain),
    "finetune": (_add_finetune_parser, _run_finetune),
    "cv": (_add_cv_parser, _run_cv),
    "predict": (_add_predict_parser, _run_predict),
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ecg12",
        help="12-lead ECG arrhythmia classification (PhysioNet/CinC 2020)",
        description="12-lead ECG arrhythmia classification on PhysioNet/CinC 2020 data.",
    )
    actions = parser.add_subparsers(dest="ecg12_command", metavar="ACTION")
    for add, run_action in ACTIONS.values():
        sub = add(actions)
        sub.set_defaults(_ecg12_run=run_action)
    parser.set_defaults(_ecg12_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "_ecg12_run", None)
    if action is None:
        args._ecg12_parser.print_help()
        return 2
    return int(action(args) or 0)


__all__ = ["ACTIONS", "add_parser", "run"]
