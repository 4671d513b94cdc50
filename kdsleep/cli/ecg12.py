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
# Registry and entry points
# ---------------------------------------------------------------------------------------------------------

#: Sub-commands of ``kdsleep ecg12``: name -> (add its parser, run it).
ACTIONS: dict[str, tuple[AddParser, Run]] = {
    "score": (_add_score_parser, _run_score),
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
