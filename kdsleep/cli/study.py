"""``kdsleep study``: reproducible studies on real data (``kdsleep study slpdb``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kdsleep.study.rows import ROWS
from kdsleep.study.settings import CLASS_SETS

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "study",
        help="run a reproducible study on real data and write its report",
        description="Run a reproducible study on real data and write its report.",
    )
    studies = parser.add_subparsers(dest="study", metavar="STUDY")
    slpdb = studies.add_parser(
        "slpdb",
        help="heart-rate sleep staging on the MIT-BIH Polysomnographic Database, cross-validated by subject",
        description=(
            "Subject-wise cross-validation of sleep staging from heart rate on the real slpdb annotations "
            "(.st stages, .ecg beats): a classical HRV-feature baseline (gradient-boosted trees), a U-Time "
            "heart-rate student, and - labelled semi-synthetic - an EEG teacher on synthetic EEG driven by "
            "the real hypnograms with the AT+CL, SD+CL and AT+SD+CL distilled students, the two controls (label "
            "smoothing, self-distillation) and the heart-rate stager recipe; 3, 4 and 5 classes, one or more "
            "training seeds. Writes a Markdown report with a JSON (and PNG) beside it."
        ),
    )
    slpdb.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="slpdb folder with the .hea, .st and .ecg files of each record (e.g. ../shared/data/slpdb)",
    )
    slpdb.add_argument(
        "--quick",
        action="store_true",
        help="three folds, tiny models, two epochs: checks the chain in minutes (no results)",
    )
    slpdb.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Markdown report (default docs/results/slpdb.md; with --quick, slpdb-quick.md "
        "in the work folder); .json and .png go beside it",
    )
    slpdb.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keeps prepared records and finished folds so that an interrupted study resumes "
        "(default $KDSLEEP_HOME/study-slpdb-full or -quick)",
    )
    slpdb.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=[3, 4, 5],
        choices=sorted(CLASS_SETS),
        help="class sets: 3 (W-N-R), 4 (W-L-D-R), 5 (AASM); default all",
    )
    slpdb.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes, one thread each (default 2, or 1 on a single core)",
    )
    slpdb.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="training seeds per row (seed 0, 1, ...; the folds stay the same); the report gives mean ± SD "
        "over seeds and paired tests on each subject's mean over seeds (default 1)",
    )
    slpdb.add_argument(
        "--rows",
        nargs="+",
        default=None,
        choices=list(ROWS),
        metavar="ROW",
        help=f"rows to run (default all): {', '.join(ROWS)}; the EEG teacher is added for a distilled row "
        "and hr_student for ecg_self",
    )
    slpdb.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.cli import CLIError, show_progress

    if getattr(args, "study", None) != "slpdb":
        raise CLIError("name a study: kdsleep study slpdb --data-dir DIR")
    data_dir: Path = args.data_dir
    if not data_dir.exists():
        raise CLIError(f"--data-dir {data_dir}: folder not found")
    if not data_dir.is_dir():
        raise CLIError(f"--data-dir {data_dir}: not a folder")
    missing = [s for s in (".st", ".ecg", ".hea") if not any(data_dir.glob(f"*{s}"))]
    if missing:
        raise CLIError(
            f"--data-dir {data_dir}: no {', '.join(missing)} files; the slpdb study needs each record's .hea "
            f"header, .st stage annotations and .ecg beat annotations (e.g. slp01a.hea, slp01a.st, slp01a.ecg)"
        )
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    if args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    out = args.out
    if out is not None and out.suffix.lower() != ".md":
        raise CLIError(f"--out {out}: expected a Markdown file name ending in .md")
    if out is not None and out.is_dir():
        raise CLIError(f"--out {out} is a folder; give a file name ending in .md")
    if args.work_dir is not None and args.work_dir.exists() and not args.work_dir.is_dir():
        raise CLIError(f"--work-dir {args.work_dir} exists and is not a folder")

    from kdsleep.study.slpdb import WorkFolderError, run_study

    try:
        report = run_study(
            data_dir,
            out=out,
            work_dir=args.work_dir,
            classes=args.classes,
            jobs=args.jobs,
            quick=args.quick,
            progress=show_progress(args),
            seeds=args.seeds,
            rows=args.rows,
            command=["kdsleep", *sys.argv[1:]] if sys.argv and "kdsleep" in sys.argv[0] else None,
        )
    except WorkFolderError as err:
        raise CLIError(f"{err} (or choose another with --work-dir)") from None
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    print(f"wrote {report['meta']['out']} ({report['meta']['wall_seconds'] / 60:.1f} min)")
    results = report["results"]
    for grouping, block in results["groupings"].items():
        row = " ".join(
            f"{m}={e['summary']['cohen_kappa']['mean']:.3f}±{e['summary']['cohen_kappa']['sd']:.3f}"
            for m, e in block["models"].items()
            if e["summary"]["cohen_kappa"]["mean"] is not None
        )
        print(f"  {grouping} kappa over {len(results['seeds'])} seed(s): {row}")
    for line in results["distillation"]["claim_text"]:
        print(f"  {line}")
    return 0
