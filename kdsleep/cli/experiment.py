"""``kdsleep experiment``: the Table I / Table II grid on one split with one teacher, as one report."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsleep.cli.train import CLASSES, add_common_arguments
from kdsleep.distill.variants import VARIANTS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "experiment",
        help="run both baselines and the three KD variants and write the Table I / II report",
        description=(
            "Train the EEG baseline (the teacher), the ECG baseline and the SD+CL, AT+CL and AT+SD+CL students "
            "for each chosen class set, on the same subject split with the same teacher, and write "
            "report.md / report.json (weighted F1, accuracy, per-class F1, paired per-subject comparisons "
            "against the ECG baseline) in the run folder."
        ),
    )
    parser.add_argument(
        "--classes",
        type=int,
        nargs="+",
        choices=sorted(CLASSES),
        default=[4, 3],
        help="class sets (default: 4 3, the paper's two tables)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=tuple(VARIANTS),
        help="variants to run (default: the five of the paper's tables)",
    )
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.checkpoint import CheckpointError
    from kdsleep.cli.train import cli_error, format_metrics, make_pipeline, resolve_config
    from kdsleep.distill.variants import TABLE_VARIANTS

    groupings = list(dict.fromkeys(CLASSES[c] for c in args.classes))
    variants = list(dict.fromkeys(args.variants or TABLE_VARIANTS))
    if "eeg_baseline" in variants:
        # the teacher first: the distilled students need it
        variants.remove("eeg_baseline")
        variants.insert(0, "eeg_baseline")
    config = resolve_config(args, groupings[0])
    if args.run_dir is None:
        args.run_dir = Path("runs") / f"{config.dataset}-experiment"
    pipeline = make_pipeline(args, config)
    outcomes = []
    try:
        for grouping in groupings:
            for name in variants:
                outcomes.append(pipeline.run_variant(name, grouping))
    except (ValueError, FileExistsError, CheckpointError) as err:
        raise cli_error(err) from None
    if pipeline.rank != 0:
        return 0
    markdown, _ = pipeline.write_report(outcomes)
    for grouping in groupings:
        print(f"test metrics, {grouping}:")
        for outcome in outcomes:
            if outcome.grouping == grouping:
                print("  " + format_metrics(outcome.variant, outcome.metrics))
    print(f"report: {markdown}")
    return 0
