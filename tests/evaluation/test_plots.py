"""Tests that every figure is written as a valid, non-empty PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from kdsleep.evaluation.plots import (
    epoch_features,
    plot_confusion_matrix,
    plot_disagreement_projection,
    plot_hypnogram,
    plot_learning_curves,
    project_disagreements,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, min_width: int = 300) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000
    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 200
    # Something was drawn: not a single flat colour.
    assert image[..., :3].std() > 0.05


def test_confusion_matrix_png(tmp_path: Path) -> None:
    confusion = np.array([[50, 3, 1], [4, 80, 6], [0, 5, 30]])
    path = plot_confusion_matrix(
        confusion, tmp_path / "plots" / "confusion.png", ("W", "N", "R"), title="test"
    )
    assert path == tmp_path / "plots" / "confusion.png"
    _assert_png(path, min_width=600)
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png")


def test_confusion_matrix_with_an_empty_row(tmp_path: Path) -> None:
    _assert_png(plot_confusion_matrix(torch.tensor([[5, 1], [0, 0]]), tmp_path / "c.png"))


def test_hypnogram_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scored = np.repeat(rng.integers(0, 4, size=60), 15)
    scored[100:110] = -1
    predicted = np.where(
        rng.random(scored.size) < 0.8, np.clip(scored, 0, None), rng.integers(0, 4, scored.size)
    )
    _assert_png(plot_hypnogram(scored, predicted, tmp_path / "hypnogram.png", ("W", "L", "D", "R")))
    with pytest.raises(ValueError, match="differ in length"):
        plot_hypnogram(scored, predicted[:-1], tmp_path / "bad.png", ("W", "L", "D", "R"))
    with pytest.raises(ValueError, match="class 7 outside 0..3"):
        plot_hypnogram(scored, np.full(scored.size, 7), tmp_path / "bad.png", ("W", "L", "D", "R"))


def test_predicted_only_hypnogram_png(tmp_path: Path) -> None:
    predicted = np.repeat(np.random.default_rng(1).integers(0, 3, size=40), 20)
    predicted[-5:] = -1  # epochs without a prediction are gaps
    path = plot_hypnogram(None, predicted, tmp_path / "ecg_only.png", ("W", "N", "R"))
    _assert_png(path)
    assert (
        matplotlib.image.imread(path).shape[0]
        < matplotlib.image.imread(
            plot_hypnogram(predicted, predicted, tmp_path / "both.png", ("W", "N", "R"))
        ).shape[0]
    )


def test_real_ucddb_hypnogram_png(shared_data: Path, tmp_path: Path) -> None:
    codes = np.loadtxt(shared_data / "ucddb-hypnograms" / "ucddb002_stage.txt", dtype=np.int64)
    classes = np.array([0, 4, 1, 2, 3, 3, -1, -1, -1])[codes]  # AASM W N1 N2 N3 R
    path = plot_hypnogram(
        classes, np.clip(classes, 0, None), tmp_path / "ucddb002.png", ("W", "N1", "N2", "N3", "R")
    )
    _assert_png(path)


def test_learning_curves_png(tmp_path: Path) -> None:
    epochs = np.arange(1, 21)
    log = pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": 1 / np.sqrt(epochs),
            "val_loss": np.where(
                epochs % 2 == 0, 1.2 / np.sqrt(epochs), np.nan
            ),  # validated every other epoch
            "val_weighted_f1": 1 - 1 / np.sqrt(epochs + 1),
            "lr": 1e-3 * 0.9**epochs,
            "time": epochs * 3.0,
        }
    )
    csv_path = tmp_path / "log.csv"
    log.to_csv(csv_path, index=False)
    _assert_png(plot_learning_curves(csv_path, tmp_path / "curves.png"), min_width=900)
    _assert_png(plot_learning_curves(csv_path, tmp_path / "losses.png", columns=["train_loss"]))
    with pytest.raises(ValueError, match=r"columns \['val_kappa'\] not in the log"):
        plot_learning_curves(csv_path, tmp_path / "bad.png", columns=["val_kappa"])
    (tmp_path / "empty.csv").write_text("epoch,train_loss\n")
    with pytest.raises(ValueError, match="empty.csv: the training log has no rows"):
        plot_learning_curves(tmp_path / "empty.csv", tmp_path / "bad.png")


def test_epoch_features_averages_each_epoch() -> None:
    feature_map = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    features = epoch_features(feature_map, n_epochs=2)
    assert features.shape == (4, 3)
    # Window 0, epoch 1, channel 2 covers positions 4..7 of row 16..23: mean 21.5.
    assert features[1, 2] == pytest.approx(21.5)
    assert features[2, 0] == pytest.approx(np.mean([24, 25, 26, 27]))
    with pytest.raises(ValueError, match="not a multiple of n_epochs=3"):
        epoch_features(feature_map, n_epochs=3)


def test_disagreement_projection_selects_the_two_cases_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, d = 400, 16
    y_true = rng.integers(0, 4, n)
    y_true[:10] = -1
    teacher = rng.normal(0, 3, (4, d))[np.clip(y_true, 0, None)] + rng.normal(0, 1, (n, d))
    baseline = teacher + rng.normal(0, 3, (n, d))
    distilled = teacher + rng.normal(0, 1, (n, d))
    baseline_pred = np.where(rng.random(n) < 0.5, y_true, (y_true + 1) % 4)
    distilled_pred = np.where(rng.random(n) < 0.7, y_true, (y_true + 2) % 4)
    projection = project_disagreements(teacher, baseline, distilled, y_true, baseline_pred, distilled_pred)
    scored = y_true >= 0
    case_1 = scored & (distilled_pred == y_true) & (baseline_pred != y_true)
    case_2 = scored & (distilled_pred != y_true) & (baseline_pred == y_true)
    assert (projection.case == 1).sum() == case_1.sum() and (projection.case == 2).sum() == case_2.sum()
    assert projection.teacher.shape == (case_1.sum() + case_2.sum(), 2)
    assert projection.distance_distilled_to_teacher < projection.distance_baseline_to_teacher
    assert 0 < sum(projection.explained_variance_ratio) <= 1
    _assert_png(plot_disagreement_projection(projection, tmp_path / "fig2.png"), min_width=800)

    limited = project_disagreements(
        teacher, baseline, distilled, y_true, baseline_pred, distilled_pred, max_points=25
    )
    assert limited.case.size == 25
    with pytest.raises(ValueError, match="no epoch where exactly one"):
        project_disagreements(teacher, baseline, distilled, y_true, y_true, y_true)
    with pytest.raises(ValueError, match="share one"):
        project_disagreements(teacher, baseline[:, :4], distilled, y_true, baseline_pred, distilled_pred)


def test_bottleneck_features_of_utime_feed_the_projection(tmp_path: Path) -> None:
    from kdsleep.models import UTime

    torch.manual_seed(0)
    models = [UTime(1, 3, sfreq=20.0, n_epochs=3, pools=[2, 2, 2, 3, 5]).eval() for _ in range(3)]
    x = torch.randn(4, 1, models[0].n_times)
    features, predictions = [], []
    with torch.no_grad():
        for model in models:
            logits, maps = model.features(x)
            features.append(epoch_features(maps[model.tap_names.index("bottleneck")], model.n_epochs))
            predictions.append(logits.argmax(dim=1).reshape(-1).numpy())
    assert features[0].shape == (12, 512)
    y_true = predictions[1].copy()  # the baseline is right everywhere ...
    y_true[::2] = predictions[2][::2]  # ... except where the distilled student is made right
    if not np.any(predictions[1] != predictions[2]):
        pytest.skip("the random models happen to agree everywhere")
    projection = project_disagreements(*features, y_true, predictions[1], predictions[2])
    _assert_png(plot_disagreement_projection(projection, tmp_path / "utime_fig2.png"))
