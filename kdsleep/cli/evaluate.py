"""``kdsleep evaluate RUN_DIR``: recompute test metrics, the report and the plots of a run folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="recompute the metrics, report and plots of a run folder",
        description=(
            "Re-run every trained model of a run folder (RUN_DIR/<classes>/<variant>/model.pt) on the test "
            "subjects of its split, then write report.md / report.json and, per variant, plots/: the confusion "
            "matrix, true vs predicted hypnograms of the test recordings and the learning curves."
        ),
    )
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a folder written by train / experiment"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: auto)")
    parser.add_argument(
        "--max-hypnograms", type=int, default=3, help="hypnogram plots per variant (default 3)"
    )
    return parser


def _hypnograms(predictions: Path, cache, limit: int):
    """Per test recording: (key, scored classes, predicted classes) assembled from the window predictions."""
    import numpy as np

    with np.load(predictions) as data:
        recordings, starts, labels, preds = (
            data[k] for k in ("recordings", "starts", "labels", "predictions")
        )
    out = []
    for key in list(dict.fromkeys(recordings.tolist()))[:limit]:
        n_epochs = int(cache.meta(key)["n_epochs"])
        y_true = np.full(n_epochs, -1, dtype=np.int64)
        y_pred = np.full(n_epochs, -1, dtype=np.int64)
        for i in np.flatnonzero(recordings == key):
            s = int(starts[i])
            y_true[s : s + labels.shape[1]] = labels[i]
            y_pred[s : s + labels.shape[1]] = preds[i]
        out.append((key, y_true, y_pred))
    return out


def run(args: argparse.Namespace) -> int:
    from kdsleep.cli import CLIError
    from kdsleep.distill.checkpoint import CheckpointError, load_checkpoint
    from kdsleep.distill.config import ConfigError, TrainConfig
    from kdsleep.distill.experiment import Pipeline
    from kdsleep.distill.variants import get_variant
    from kdsleep.evaluation.plots import plot_confusion_matrix, plot_hypnogram, plot_learning_curves

    run_dir = args.run_dir
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CLIError(f"{run_dir}: not a kdsleep run folder (no config.json)")
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(saved["config"], source=str(config_path))
    except (json.JSONDecodeError, KeyError, ConfigError) as err:
        raise CLIError(f"{config_path}: unreadable run configuration: {err}") from None
    if args.device:
        config.device = args.device
    models = sorted(run_dir.glob("*/*/model.pt"))
    if not models:
        raise CLIError(f"{run_dir}: no trained model (<classes>/<variant>/model.pt) to evaluate")
    try:
        pipeline = Pipeline(config, run_dir, resume=True, progress=False, record=False)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    outcomes = []
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
        for key, y_true, y_pred in _hypnograms(
            path.parent / "predictions.npz", pipeline.cache, args.max_hypnograms
        ):
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
    written = pipeline.write_report(outcomes)
    if written is not None:
        print(f"report: {written[0]}")
    return 0
