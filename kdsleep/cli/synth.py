"""``kdsleep synth``: write the synthetic PSG dataset (MASS layout) used as the embedded default."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kdsleep.cli import CLIError, show_progress

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic PSG nights (EEG C3-A2 + ECG lead I) as MASS-layout EDF files",
        description=(
            "Write synthetic polysomnography nights in the MASS SS3 layout ('01-03-0001 PSG.edf' with "
            "EEG C3-CLE, EEG A2-CLE and ECG ECGI; '01-03-0001 Base.edf' with 30-s sleep-stage annotations). "
            "Hypnograms come from a Markov model fitted on real scorings, or from real slpdb records with "
            "their real beat times (--slpdb)."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--subjects", type=int, default=10, help="number of subjects (default 10)")
    parser.add_argument("--hours", type=float, default=8.0, help="scored hours per night (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument(
        "--sfreq", type=float, default=256.0, help="sampling rate in Hz (default 256, as MASS)"
    )
    parser.add_argument(
        "--slpdb",
        nargs="+",
        metavar="RECORD",
        help="instead of Markov hypnograms, use these slpdb records (path without extension, e.g. "
        "../shared/data/slpdb/slp01a): their real scoring and real beat times",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also report how well per-epoch EEG and ECG features separate the stages (logistic "
        "regression, subject-wise split) on the same settings",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    # the library (numpy, the EDF writer) loads only when the command runs: `kdsleep --help` stays instant
    from kdsleep.data.synthetic import generate_from_slpdb, generate_synthetic_psg

    if args.subjects < 1:
        raise CLIError(f"--subjects must be >= 1, got {args.subjects}")
    if args.hours <= 0:
        raise CLIError(f"--hours must be > 0, got {args.hours}")
    if args.sfreq < 64:
        raise CLIError(
            f"--sfreq must be >= 64 Hz (spindles and beta must fit below Nyquist), got {args.sfreq:g}"
        )
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    if args.check and args.slpdb:
        raise CLIError("--check measures the Markov-hypnogram subjects; it cannot be combined with --slpdb")
    if args.check and args.subjects < 3:
        raise CLIError("--check needs --subjects >= 3 (subjects are split into training and test)")

    if args.slpdb:
        paths = []
        for record in args.slpdb:
            record_path = Path(record)
            if record_path.suffix in (".hea", ".st", ".ecg"):
                record_path = record_path.with_suffix("")
            for suffix in (".hea", ".st", ".ecg"):
                if not record_path.with_suffix(suffix).is_file():
                    raise CLIError(f"slpdb record {record_path}: missing {record_path.with_suffix(suffix)}")
            paths += generate_from_slpdb(record_path, args.out, sfreq=args.sfreq, seed=args.seed)
    else:
        paths = generate_synthetic_psg(
            args.out, n_subjects=args.subjects, hours=args.hours, seed=args.seed, sfreq=args.sfreq
        )
    print(f"wrote {len(paths)} files ({len(paths) // 2} nights) to {args.out}")

    if args.check:
        # scikit-learn and matplotlib load only for the check
        from kdsleep.evaluation.synthetic_checks import proxy_separability

        result = proxy_separability(
            args.subjects, args.hours, args.seed, args.sfreq, progress=show_progress(args)
        )
        lines = ["per-epoch features + logistic regression, held-out subjects (weighted F1; per class):"]
        for label, suffix, classes in (("5-class", "", "W N1 N2 N3 R"), ("W-L-D-R", "_wldr", "W L D R")):
            for name in ("eeg", "ecg"):
                per_class = "  ".join(f"{c} {result[f'{name}_f1{suffix}_{c}']:.2f}" for c in classes.split())
                lines.append(
                    f"  {label:8s} {name.upper()} {result[f'{name}_f1{suffix}']:.3f}   ({per_class})"
                )
            lines.append(f"  {label:8s} chance {result[f'chance_f1{suffix}']:.3f}")
        lines.append(
            f"  ({int(result['n_train_epochs'])} training, {int(result['n_test_epochs'])} test epochs)"
        )
        print("\n".join(lines))
    return 0
