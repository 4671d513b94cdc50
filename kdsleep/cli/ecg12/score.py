"""``kdsleep ecg12 score``: score a folder of classifier outputs with the official challenge metrics."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kdsleep.cli import CLIError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
        "instead of stopping with an error; implausible outputs (probabilities outside [0, 1], a '#record' "
        "line naming another record, a repeated class, no scored class) are warnings instead of errors",
    )
    return parser


def _prepare_output(flag: str, path: Path | None) -> None:
    """Create the folder of an output file up front, so that a bad path fails before any scoring."""
    if path is None:
        return
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'scores.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(
            f"{flag} {path}: cannot create its folder {path.parent}: {err.strerror or err}"
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise CLIError(f"{flag} {path}: its folder {path.parent} is not writable")


def run(args: argparse.Namespace) -> int:
    from kdsleep._io import write_text_atomic
    from kdsleep.ecg12.score_folder import ScoreFolderError, score_folder
    from kdsleep.ecg12.scoring import NORMAL_SINUS_RHYTHM, ScoringTableError, load_scoring_tables

    try:
        tables = load_scoring_tables(args.scoring_dir, args.normal_class or NORMAL_SINUS_RHYTHM)
    except ScoringTableError as err:
        raise CLIError(str(err)) from None
    _prepare_output("--scores", args.scores)
    _prepare_output("--class-scores", args.class_scores)
    try:
        result = score_folder(args.label_dir, args.output_dir, tables, strict=not args.lenient)
    except ScoreFolderError as err:
        raise CLIError(str(err)) from None
    scores = result.scores
    print(scores.summary())
    for flag, path, text in (
        ("--scores", args.scores, scores.summary()),
        ("--class-scores", args.class_scores, scores.class_summary()),
    ):
        if path is not None:
            try:
                write_text_atomic(path, text + "\n")
            except OSError as err:
                raise CLIError(f"{flag} {path}: cannot write it: {err.strerror or err}") from None
    return 0
