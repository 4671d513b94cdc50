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


KD_VARIANTS = ("sd_cl", "at_cl", "at_sd_cl", "at")


def disagreement_figures(pipeline, run_dir: Path, grouping: str, models: dict) -> dict | None:
    """Fig. 2 of Joshi et al. for each distilled student of one class set, against the ECG baseline.

    ``models`` maps variant names to loaded checkpoints. Writes ``fig2_<variant>.png`` and ``fig2.json`` in
    ``run_dir/grouping`` and returns what ``fig2.json`` holds, or ``None`` when the class set lacks the EEG
    baseline, the ECG baseline or any distilled student.
    """
    from kdsleep._io import write_json_atomic
    from kdsleep.distill.trainer import predict_features
    from kdsleep.evaluation.plots import plot_disagreement_projection, project_disagreements

    distilled = [name for name in KD_VARIANTS if name in models]
    if "eeg_baseline" not in models or "ecg_baseline" not in models or not distilled:
        return None
    test_set = pipeline.dataset("test", grouping)

    def features(name: str, modality: str):
        labels, preds, feats = predict_features(
            models[name].model,
            test_set,
            modality,
            pipeline.device,
            batch_size=pipeline.config.batch_size,
            amp=pipeline.config.amp,
        )
        return labels.reshape(-1), preds.reshape(-1), feats

    y_true, _, teacher = features("eeg_baseline", "eeg")
    _, baseline_pred, baseline = features("ecg_baseline", "ecg")
    summary: dict = {"grouping": grouping, "feature_map": "bottleneck", "variants": {}}
    for name in distilled:
        _, kd_pred, kd = features(name, "ecg")
        try:
            projection = project_disagreements(teacher, baseline, kd, y_true, baseline_pred, kd_pred)
        except ValueError as err:
            logger.warning("%s %s: no Fig. 2 plot: %s", grouping, name, err)
            continue
        path = plot_disagreement_projection(
            projection,
            run_dir / grouping / f"fig2_{name}.png",
            labels={"teacher": "EEG baseline (teacher)", "baseline": "ECG baseline", "distilled": name},
        )
        summary["variants"][name] = {
            "plot": path.name,
            "epochs_kd_right_baseline_wrong": int((projection.case == 1).sum()),
            "epochs_kd_wrong_baseline_right": int((projection.case == 2).sum()),
            "mean_distance_baseline_to_teacher": projection.distance_baseline_to_teacher,
            "mean_distance_distilled_to_teacher": projection.distance_distilled_to_teacher,
        }
        print(
            f"{grouping:8} fig2 {name:9} distance to the teacher's bottleneck where the students disagree: "
            f"ECG baseline {projection.distance_baseline_to_teacher:.3f}, {name} "
            f"{projection.distance_distilled_to_teacher:.3f}"
        )
    write_json_atomic(run_dir / grouping / "fig2.json", summary)
    return summary


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
    for grouping, checkpoints in loaded.items():
        disagreement_figures(pipeline, run_dir, grouping, checkpoints)
    written = pipeline.write_report(outcomes)
    if written is not None:
        print(f"report: {written[0]}")
    return 0
