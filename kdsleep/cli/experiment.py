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
            "against the ECG baseline) in the run folder. With --seeds N every variant, and the controls "
            "ecg_ls (label smoothing) and ecg_self (self-distillation), is trained with N seeds and the report "
            "gives mean ± SD over seeds, Holm-corrected paired tests and whether any distillation gain holds."
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
        help="variants to run (default: the five of the paper's tables, and with --seeds N > 1 also the "
        "controls ecg_ls and ecg_self, without which no distillation gain is claimed)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="train every variant with N seeds (--seed, --seed + 1, ...), each in RUN_DIR/seed-<s>/ with its "
        "own teacher, on one split, and report mean ± SD over seeds, paired per-subject tests and "
        "Holm-corrected p (default: 1, one run in RUN_DIR)",
    )
    add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.checkpoint import CheckpointError
    from kdsleep.cli.train import cli_error, format_metrics, make_pipeline, resolve_config
    from kdsleep.distill.variants import CONTROL_VARIANTS, TABLE_VARIANTS

    groupings = list(dict.fromkeys(CLASSES[c] for c in args.classes))
    default = TABLE_VARIANTS if args.seeds == 1 else (*TABLE_VARIANTS, *CONTROL_VARIANTS)
    variants = list(dict.fromkeys(args.variants or default))
    if "eeg_baseline" in variants:
        # the teacher first: the distilled students need it
        variants.remove("eeg_baseline")
        variants.insert(0, "eeg_baseline")
    if "ecg_self" in variants and "ecg_baseline" in variants:
        # the self-distillation control is taught by the trained ECG baseline
        variants.remove("ecg_baseline")
        variants.insert(variants.index("ecg_self"), "ecg_baseline")
    config = resolve_config(args, groupings[0])
    if args.run_dir is None:
        args.run_dir = Path("runs") / f"{config.data.dataset}-experiment"
    if args.seeds < 1:
        raise cli_error(ValueError(f"--seeds: expected a positive number of seeds, got {args.seeds}"))
    if args.seeds > 1:
        return _run_seeds(args, config, variants, groupings)
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


def _run_seeds(args: argparse.Namespace, config, variants: list[str], groupings: list[str]) -> int:
    from kdsleep._io import git_commit, kdsleep_version
    from kdsleep.checkpoint import CheckpointError
    from kdsleep.cli import CLIError, show_progress
    from kdsleep.cli.train import cli_error
    from kdsleep.distill.seeds import run_seeds, write_seeds_run_report

    if args.resume and not Path(args.run_dir).is_dir():
        raise CLIError(
            f"--resume: run folder {args.run_dir} does not exist, nothing to resume; drop --resume"
        )
    try:
        outcomes = run_seeds(
            config,
            args.run_dir,
            variants,
            groupings,
            args.seeds,
            resume=args.resume,
            teacher_checkpoint=args.teacher,
            progress=show_progress(args),
        )
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as err:
        raise cli_error(err) from None
    from kdsleep._torch import dist_info

    if dist_info()[0] != 0:
        return 0
    markdown, _ = write_seeds_run_report(
        args.run_dir,
        outcomes,
        metadata={
            "dataset": config.data.dataset,
            "seeds": ", ".join(map(str, outcomes)),
            "teacher": str(args.teacher)
            if args.teacher
            else "trained per seed (the EEG baseline of that seed)",
            "epochs": config.training.epochs,
            "sfreq": config.data.sfreq,
            "window_epochs": config.model.window_epochs,
            "kdsleep_version": kdsleep_version(),
            "git_commit": git_commit(),
        },
    )
    print(f"report over {len(outcomes)} seeds: {markdown}")
    return 0
