"""``kdsleep evaluate RUN_DIR``: recompute test metrics, the report and the plots of a run folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdsleep.distill.experiment import Pipeline

# The library is imported inside the functions: every sub-command module is imported to build the parser,
# and ``kdsleep --help`` should not wait for torch.

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="recompute the metrics, report and plots of a run folder",
        description=(
            "Re-run every trained model of a run folder (RUN_DIR/<classes>/<variant>/model.pt) on the test "
            "subjects of its split, then write report.md / report.json and, per variant, plots/: the confusion "
            "matrix, true vs predicted hypnograms of the test recordings and the learning curves. Where a class "
            "set has the EEG baseline, the ECG baseline and distilled students, <classes>/fig2_<variant>.png "
            "shows the bottleneck features of the three models on the test epochs where the two students "
            "disagree (Fig. 2 of Joshi et al.), with the distances in <classes>/fig2.json."
        ),
    )
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a folder written by train / experiment"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: auto)")
    parser.add_argument(
        "--max-hypnograms", type=int, default=3, help="hypnogram plots per variant (default 3)"
    )
    parser.add_argument(
        "--part",
        choices=("test", "val"),
        default="test",
        help=(
            "test (default): the test subjects, report and plots; val: score every model on the validation "
            "subjects instead and write <classes>/<variant>/validation.json, leaving the test figures, the "
            "report and the plots alone (for choices that must not look at the test split)"
        ),
    )
    return parser


def _hypnograms(predictions: Path, limit: int):
    """Per test recording: (key, scored classes, predicted classes), one per epoch."""
    import numpy as np

    with np.load(predictions) as data:
        recordings, labels, preds = (data[k] for k in ("recordings", "labels", "predictions"))
    out = []
    for key in list(dict.fromkeys(recordings.tolist()))[:limit]:
        rows = recordings == key
        out.append((key, labels[rows], preds[rows]))
    return out


def fig2(pipeline: Pipeline, run_dir: Path, grouping: str, models: dict) -> dict | None:
    """Fig. 2 of Joshi et al. for the distilled students of one class set (``models``: name -> checkpoint)."""
    from kdsleep.distill.variants import KD_VARIANTS, get_variant
    from kdsleep.evaluation.disagreement import disagreement_figures

    distilled = [name for name in KD_VARIANTS if name in models]
    if "eeg_baseline" not in models or "ecg_baseline" not in models or not distilled:
        return None
    runner = pipeline.runner(grouping)
    features = {
        name: runner.test_features(models[name].model, get_variant(name).modality)
        for name in ("eeg_baseline", "ecg_baseline", *distilled)
    }
    summary = disagreement_figures(features, run_dir / grouping, grouping, distilled)
    for name, row in (summary or {}).get("variants", {}).items():
        print(
            f"{grouping:8} fig2 {name:9} distance to the teacher's bottleneck where the students disagree: "
            f"ECG baseline {row['mean_distance_baseline_to_teacher']:.3f}, {name} "
            f"{row['mean_distance_distilled_to_teacher']:.3f}"
        )
    return summary


def run(args: argparse.Namespace) -> int:
    from kdsleep.cli import CLIError
    from kdsleep.distill.seeds import seed_dirs, write_seeds_run_report

    run_dir = args.run_dir
    if (run_dir / "config.json").is_file():
        _evaluate_folder(run_dir, args)
        return 0
    if args.part != "test":
        raise CLIError(
            f"{run_dir}: --part {args.part} scores one run folder; give one seed's folder "
            f"({run_dir}/seed-<N>)"
        )
    # a run with several training seeds (kdsleep experiment --seeds N): one folder per seed
    seeds = seed_dirs(run_dir)
    if not seeds:
        raise CLIError(
            f"{run_dir}: not a kdsleep run folder (no config.json, and no seed-<N>/config.json of a run with "
            "several seeds)"
        )
    by_seed = {}
    for seed, folder in seeds:
        print(f"seed {seed} ({folder}):")
        by_seed[seed] = _evaluate_folder(folder, args)
    written = write_seeds_run_report(run_dir, by_seed)
    print(f"report over {len(by_seed)} seeds: {written[0]}")
    return 0


def _validation(pipeline: Pipeline, path: Path, variant, grouping: str, model) -> None:
    """Score a model on the validation subjects of its run; print and write ``validation.json`` beside it."""
    from kdsleep._io import write_json_atomic
    from kdsleep.cli.train import format_metrics

    outcome = pipeline.runner(grouping).evaluate(variant, model, part="val")
    write_json_atomic(
        path.parent / "validation.json",
        {
            "variant": variant.name,
            "grouping": grouping,
            "part": "val",
            "model": path.name,
            "metrics": outcome.metrics.to_dict(),
            "per_subject": {s: m.to_dict() for s, m in outcome.per_subject.items()},
        },
    )
    print(f"{grouping:8} validation " + format_metrics(variant.name, outcome.metrics))


def _evaluate_folder(run_dir: Path, args: argparse.Namespace) -> list:
    """Evaluate the models of one run folder (one seed); returns their outcomes."""
    from kdsleep.checkpoint import CheckpointError, load_checkpoint
    from kdsleep.cli import CLIError
    from kdsleep.distill.config import ConfigError, TrainConfig
    from kdsleep.distill.experiment import Pipeline
    from kdsleep.distill.variants import get_variant
    from kdsleep.evaluation.plots import plot_confusion_matrix, plot_hypnogram, plot_learning_curves

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CLIError(f"{run_dir}: not a kdsleep run folder (no config.json)")
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(saved["config"], source=str(config_path))
    except (json.JSONDecodeError, KeyError, ConfigError) as err:
        raise CLIError(f"{config_path}: unreadable run configuration: {err}") from None
    if args.device:
        config.training.device = args.device
    models = sorted(run_dir.glob("*/*/model.pt"))
    if not models:
        raise CLIError(f"{run_dir}: no trained model (<classes>/<variant>/model.pt) to evaluate")
    try:
        pipeline = Pipeline(config, run_dir, resume=True, progress=False, record=False)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    outcomes = []
    loaded: dict[str, dict] = {}
    for path in models:
        grouping, variant_name = path.parent.parent.name, path.parent.name
        try:
            checkpoint = load_checkpoint(path, map_location=pipeline.device)
            checkpoint.check_compatible(grouping=grouping)
            variant = get_variant(variant_name)
        except (CheckpointError, ValueError) as err:
            raise CLIError(str(err)) from None
        test_json = path.parent / "test.json"
        stages = (
            json.loads(test_json.read_text(encoding="utf-8")).get("stages", {}) if test_json.exists() else {}
        )
        if args.part != "test":
            _validation(pipeline, path, variant, grouping, checkpoint.model)
            continue
        loaded.setdefault(grouping, {})[variant_name] = checkpoint
        outcome = pipeline.evaluate_variant(variant, grouping, checkpoint.model, stages)
        outcomes.append(outcome)
        plots = path.parent / "plots"
        metrics = outcome.metrics
        plot_confusion_matrix(
            metrics.confusion,
            plots / "confusion_matrix.png",
            metrics.class_names,
            title=f"{variant_name} ({grouping}), test",
        )
        for key, y_true, y_pred in _hypnograms(path.parent / "predictions.npz", args.max_hypnograms):
            plot_hypnogram(
                y_true,
                y_pred,
                plots / f"hypnogram_{key}.png",
                metrics.class_names,
                epoch_seconds=checkpoint.epoch_seconds,
                title=f"{key}: {variant_name} ({grouping})",
            )
        for log in sorted(path.parent.glob("*/log.csv")):
            plot_learning_curves(
                log,
                plots / f"learning_curves_{log.parent.name}.png",
                title=f"{variant_name} ({grouping}), {log.parent.name}",
            )
        print(
            f"{grouping:8} {variant_name:14} weighted F1 {metrics.weighted_f1:.3f}  accuracy {metrics.accuracy:.3f}"
        )
    if args.part != "test":
        return outcomes
    for grouping, checkpoints in loaded.items():
        fig2(pipeline, run_dir, grouping, checkpoints)
    written = pipeline.write_report(outcomes)
    if written is not None:
        print(f"report: {written[0]}")
    return outcomes
