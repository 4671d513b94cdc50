"""``kdsleep train``: train one variant (and the EEG teacher it needs) and print its test metrics."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

# the registries are light modules; the training machinery is imported inside run()
from kdsleep.data.stages import STAGE_GROUPINGS
from kdsleep.distill.config import AT_MODES, DATASETS, ECG_INPUTS
from kdsleep.distill.variants import VARIANTS

logger = logging.getLogger(__name__)

DATASET_CHOICES = DATASETS
#: Class set of each number of classes (``--classes``).
CLASSES = {g.n_classes: g.name for g in sorted(STAGE_GROUPINGS.values(), key=lambda g: g.n_classes)}
#: The command-line hint for each kind of library error that a flag can fix.
_HINTS = {
    "RunFolderError": " (choose another one with --run-dir)",
    "InterruptedStageError": " (--resume continues it; --run-dir chooses another folder)",
    "MissingDataDirError": " (give it with --data-dir)",
}


def cli_error(err: Exception):
    """A :class:`~kdsleep.cli.CLIError` with the library's message and, where a flag fixes it, that flag."""
    from kdsleep.cli import CLIError

    return CLIError(str(err) + _HINTS.get(type(err).__name__, ""))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``experiment``."""
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        help="dataset layout (default: synthetic, generated on first use)",
    )
    parser.add_argument("--data-dir", type=Path, help="dataset folder (for synthetic: where the nights go)")
    parser.add_argument("--config", type=Path, help="TOML or YAML configuration (see configs/paper.toml)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default: auto)")
    parser.add_argument("--epochs", type=int, help="training epochs per stage (paper: 150)")
    parser.add_argument("--patience", type=int, help="early stopping after N epochs without improvement")
    parser.add_argument("--batch-size", type=int, help="windows per batch")
    parser.add_argument("--seed", type=int, help="seed of the split, initial weights and batch order")
    parser.add_argument("--eeg-channel", help="EEG channel (default: the paper's C3-A2, else C4-A1)")
    parser.add_argument("--ecg-channel", help="ECG channel (default: lead I)")
    parser.add_argument(
        "--ecg-input",
        choices=tuple(ECG_INPUTS),
        help="what the ECG student reads: raw ECG (the paper; default with a config file or real data; on "
        "the synthetic default without a config file it selects the 100-Hz raw-ECG preset), instantaneous "
        "heart rate from detected R peaks (default of the synthetic quick preset), or both",
    )
    parser.add_argument("--at-mode", choices=AT_MODES, help="attention-transfer formula")
    parser.add_argument("--run-dir", type=Path, help="run folder (default: runs/<dataset>-<classes>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --run-dir")
    parser.add_argument("--teacher", type=Path, metavar="CKPT", help="use this EEG checkpoint as the teacher")
    parser.add_argument(
        "--split", type=Path, metavar="FILE", help="reuse the subject split of an earlier run"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train an ECG student (or a baseline) and print its test metrics",
        description=(
            "Train one variant of EEG-to-ECG distillation on a subject-wise 80:10:10 split: the EEG teacher "
            "first (or --teacher), then the variant's stages; print the test metrics. With no arguments it "
            "runs the AT+CL student on the synthetic default data (generated once, then reused)."
        ),
    )
    parser.add_argument(
        "--variant",
        default="at_cl",
        choices=tuple(VARIANTS),
        help="what to train (default: at_cl)",
    )
    parser.add_argument(
        "--classes", type=int, choices=sorted(CLASSES), help="3 (W-N-R), 4 (W-L-D-R, default), 5"
    )
    add_common_arguments(parser)
    return parser


def resolve_config(args: argparse.Namespace, grouping: str | None = None):
    """The TrainConfig of the command: preset, then --config, then the command-line options."""
    from kdsleep.cli import CLIError
    from kdsleep.distill.config import (
        SYNTHETIC_QUICKSTART,
        SYNTHETIC_RAW_QUICKSTART,
        ConfigError,
        load_config,
    )

    overrides: dict[str, Any] = {
        "dataset": args.dataset,
        "data_dir": str(args.data_dir) if args.data_dir else None,
        "device": args.device,
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "eeg_channel": args.eeg_channel,
        "ecg_channel": args.ecg_channel,
        "ecg_input": args.ecg_input,
        "at_mode": args.at_mode,
        "split_file": str(args.split) if args.split else None,
        "grouping": grouping,
    }
    # without a configuration file the synthetic default gets a quick preset (minutes on a CPU): the raw-ECG
    # one when the paper's waveform-only student is asked for, otherwise the waveform + heart-rate one; real
    # data gets the paper's protocol
    base = None
    if args.config is None and args.dataset in (None, "synthetic"):
        base = SYNTHETIC_RAW_QUICKSTART if args.ecg_input == "raw" else SYNTHETIC_QUICKSTART
    try:
        return load_config(args.config, overrides, base=base)
    except ConfigError as err:
        raise CLIError(str(err)) from None


def default_run_dir(config) -> Path:
    return Path("runs") / f"{config.data.dataset}-{config.data.grouping}"


def make_pipeline(args: argparse.Namespace, config):
    from kdsleep.checkpoint import CheckpointError
    from kdsleep.cli import CLIError, show_progress
    from kdsleep.distill.experiment import Pipeline

    run_dir = args.run_dir or default_run_dir(config)
    if args.resume and not Path(run_dir).is_dir():
        raise CLIError(
            f"--resume: run folder {run_dir} does not exist, nothing to resume; drop --resume to start"
        )
    if args.resume and not any(Path(run_dir).iterdir()):
        raise CLIError(f"--resume: run folder {run_dir} is empty, nothing to resume; drop --resume to start")
    try:
        return Pipeline(
            config,
            run_dir,
            resume=args.resume,
            teacher_checkpoint=args.teacher,
            progress=show_progress(args),
        )
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as err:
        raise cli_error(err) from None


#: Below this many test subjects, ``kdsleep train`` says that its figures are one draw.
FEW_TEST_SUBJECTS = 10


def few_subjects_note(n_test: int) -> str:
    """The line printed under the test metrics of a run with few test subjects."""
    return (
        f"note: one training seed scored on {n_test} test subject{'s' if n_test != 1 else ''}: these figures move "
        "with the seed and with the CPU's rounding; `kdsleep experiment --seeds 5` gives mean +- SD over seeds"
    )


def format_metrics(name: str, metrics) -> str:
    f1 = "  ".join(f"{c} {v:.3f}" for c, v in zip(metrics.class_names, metrics.f1, strict=True))
    return (
        f"{name:<14} weighted F1 {metrics.weighted_f1:.3f}  accuracy {metrics.accuracy:.3f}  "
        f"kappa {metrics.cohen_kappa:.3f}  macro F1 {metrics.macro_f1:.3f}  | per-class F1: {f1}"
    )


def run(args: argparse.Namespace) -> int:
    from kdsleep.checkpoint import CheckpointError

    grouping = CLASSES[args.classes] if args.classes else None
    config = resolve_config(args, grouping)
    pipeline = make_pipeline(args, config)
    try:
        outcomes = []
        if args.variant != "eeg_baseline" and pipeline.teacher_checkpoint is None:
            outcomes.append(pipeline.run_variant("eeg_baseline", config.data.grouping))
        outcomes.append(pipeline.run_variant(args.variant, config.data.grouping))
    except (ValueError, FileExistsError, CheckpointError) as err:
        raise cli_error(err) from None
    if pipeline.rank != 0:
        return 0
    pipeline.write_report(outcomes, name=f"report-{args.variant}")
    n_test = len(pipeline.split.subjects["test"])
    print(f"test metrics ({config.data.grouping}, {n_test} test subjects, run folder {pipeline.run_dir}):")
    for outcome in outcomes:
        print(format_metrics(outcome.variant, outcome.metrics))
    if n_test < FEW_TEST_SUBJECTS:
        print(few_subjects_note(n_test))
    print(f"model: {outcomes[-1].checkpoint}")
    return 0
