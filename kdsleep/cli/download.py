"""``kdsleep download``: fetch an open PSG database (HMC, slpdb, Sleep-EDF) with checksums and resume."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli import CLIError, show_progress


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    from kdsleep.data.download import OPEN_DATASETS

    parser = subparsers.add_parser(
        "download",
        help="download an open PSG database (HMC, slpdb, Sleep-EDF)",
        description="Download an open PSG database from PhysioNet. Every file is checked against the "
        "database's SHA256SUMS.txt; an interrupted download resumes where it stopped.",
        epilog="datasets: " + "; ".join(f"{d.name}: {d.description}" for d in OPEN_DATASETS.values()),
    )
    parser.add_argument("dataset", choices=sorted(OPEN_DATASETS), help="database to download")
    parser.add_argument("--dest", type=Path, default=None, help="target folder (default: ./data/<dataset>)")
    parser.add_argument("--base-url", default=None, help="folder URL to download from (default: PhysioNet)")
    parser.add_argument(
        "--include",
        action="append",
        default=None,
        metavar="PATTERN",
        help="fnmatch pattern of files to fetch, repeatable (default: the signal and scoring files), "
        "e.g. --include 'SN00[1-5]*'",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.data.download import DownloadError, download_dataset

    dest = args.dest if args.dest is not None else Path("data") / args.dataset
    try:
        files = download_dataset(
            args.dataset,
            dest,
            base_url=args.base_url,
            include=args.include,
            timeout=args.timeout,
            progress=show_progress(args),
        )
    except DownloadError as err:
        raise CLIError(str(err)) from None
    print(f"{args.dataset}: {len(files)} file(s) verified in {dest}")
    return 0
