"""Tests of the staging metrics and their streaming accumulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from kdsleep.evaluation.metrics import (
    ConfusionMatrix,
    StagingMetrics,
    SubjectConfusion,
    compute_metrics,
    metric_by_subject,
    metrics_from_confusion,
    per_subject_metrics,
)

# UCDDB codes: 0 W, 1 REM, 2 S1, 3 S2, 4 S3, 5 S4, 6 artefact, 7 indeterminate, 8 undocumented.
UCDDB_TO_WLDR = np.array([0, 3, 1, 1, 2, 2, -1, -1, -1])


def test_hand_computed_small_case() -> None:
    y_true = [0, 0, 1, 1, 1, 2, -1]
    y_pred = [0, 1, 1, 1, 0, 2, 2]  # the last epoch is ignored whatever is predicted
    metrics = compute_metrics(y_true, y_pred, 3, ("W", "N", "R"))
    np.testing.assert_array_equal(metrics.confusion, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert metrics.n_epochs == 6
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.f1 == pytest.approx((1 / 2, 2 / 3, 1.0))
    assert metrics.weighted_f1 == pytest.approx((2 * 1 / 2 + 3 * 2 / 3 + 1 * 1.0) / 6)
    assert metrics.macro_f1 == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # kappa = (p_o - p_e) / (1 - p_e) with p_e = (2*2 + 3*3 + 1*1) / 36
    assert metrics.cohen_kappa == pytest.approx((4 / 6 - 14 / 36) / (1 - 14 / 36))
    assert metrics.support == (2, 3, 1)
    assert metrics.f1_by_class()["N"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(3, 6))
    y_true = rng.integers(-1, n_classes, size=(7, 35))
    y_pred = np.where(rng.random((7, 35)) < 0.5, y_true, rng.integers(0, n_classes, size=(7, 35)))
    y_pred = np.clip(y_pred, 0, None)
    metrics = compute_metrics(y_true, y_pred, n_classes)
    keep = y_true.ravel() >= 0
    t, p = y_true.ravel()[keep], y_pred.ravel()[keep]
    labels = list(range(n_classes))
    np.testing.assert_array_equal(metrics.confusion, confusion_matrix(t, p, labels=labels))
    assert metrics.accuracy == pytest.approx(accuracy_score(t, p))
    assert metrics.weighted_f1 == pytest.approx(f1_score(t, p, average="weighted"))
    assert metrics.macro_f1 == pytest.approx(f1_score(t, p, average="macro"))
    assert metrics.cohen_kappa == pytest.approx(cohen_kappa_score(t, p))
    np.testing.assert_allclose(metrics.f1, f1_score(t, p, labels=labels, average=None, zero_division=0))


def test_absent_class_has_undefined_f1_and_is_left_out_of_macro() -> None:
    y_true = np.array([0, 0, 1, 3, 3, 1])
    y_pred = np.array([0, 1, 1, 3, 0, 1])  # class 2 neither scored nor predicted
    metrics = compute_metrics(y_true, y_pred, 4)
    assert math.isnan(metrics.f1[2])
    assert metrics.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics.weighted_f1 == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert json.loads(json.dumps(metrics.to_dict()))["f1"][2] is None


def test_streaming_over_batches_equals_one_shot_and_accepts_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 35)
    labels = torch.randint(-1, 4, (6, 35))
    streaming = ConfusionMatrix(4, ("W", "L", "D", "R"))
    for start in range(0, 6, 2):
        streaming.update(labels[start : start + 2], logits[start : start + 2])
    one_shot = compute_metrics(labels.numpy(), logits.argmax(dim=1).numpy(), 4, ("W", "L", "D", "R"))
    np.testing.assert_array_equal(streaming.matrix, one_shot.confusion)
    assert streaming.n_epochs == int((labels >= 0).sum())
    assert streaming.compute().weighted_f1 == pytest.approx(one_shot.weighted_f1)
    streaming.reset()
    assert streaming.n_epochs == 0


def test_counts_stay_on_the_device_of_the_predictions() -> None:
    confusion = ConfusionMatrix(3)
    confusion.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    assert confusion._counts is not None and confusion._counts.shape == (9,)
    assert confusion._counts.device == torch.device("cpu")


@pytest.mark.cuda
def test_accumulates_cuda_tensors() -> None:
    confusion = ConfusionMatrix(3)
    confusion.update(torch.tensor([0, 1, 2, -1], device="cuda"), torch.tensor([0, 1, 1, 0], device="cuda"))
    assert confusion._counts is not None and confusion._counts.is_cuda
    np.testing.assert_array_equal(confusion.matrix, [[1, 0, 0], [0, 1, 0], [0, 1, 0]])


def test_bad_inputs_raise_clear_errors() -> None:
    confusion = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"0\.\.2.*got target 3"):
        confusion.update([0, 3], [0, 1])
    with pytest.raises(ValueError, match=r"got target 0 with prediction 5"):
        confusion.update([0, 1], [5, 1])
    with pytest.raises(ValueError, match=r"got target -2"):
        confusion.update([-2], [0])
    with pytest.raises(ValueError, match="same shape"):
        confusion.update([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"scores of shape \(batch, K, \.\.\.\)"):
        confusion.update(torch.zeros(2, 5, dtype=torch.long), torch.randn(2, 5))
    with pytest.raises(ValueError, match="no scored epochs"):
        compute_metrics([-1, -1], [0, 1], 3)
    with pytest.raises(ValueError, match="collides"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(ValueError, match="2 class names"):
        ConfusionMatrix(3, ("W", "N"))
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion(np.zeros((2, 3)))


def test_single_class_kappa_is_undefined_like_sklearn() -> None:
    metrics = compute_metrics([1, 1, 1], [1, 1, 1], 3)
    assert metrics.accuracy == 1.0 and metrics.weighted_f1 == 1.0
    assert math.isnan(metrics.cohen_kappa)


def test_merge_dict_round_trip_and_json() -> None:
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update([0, 1, 2], [0, 2, 2])
    b.update([1, 1], [1, 0])
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.matrix, [[1, 0, 0], [1, 1, 1], [0, 0, 1]])
    metrics = merged.compute()
    restored = StagingMetrics.from_dict(json.loads(json.dumps(metrics.to_dict())))
    assert restored.weighted_f1 == pytest.approx(metrics.weighted_f1)
    np.testing.assert_array_equal(restored.confusion, metrics.confusion)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ConfusionMatrix(4))


def test_all_reduce_sums_over_a_process_group(tmp_path: Path) -> None:
    import torch.distributed as dist

    confusion = ConfusionMatrix(2)
    confusion.update([0, 1], [0, 0])
    confusion.all_reduce()  # no group yet: a no-op
    assert confusion.n_epochs == 2
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        confusion.all_reduce()
        empty = ConfusionMatrix(2)
        empty.all_reduce()  # a process that saw no batch still takes part
    finally:
        dist.destroy_process_group()
    np.testing.assert_array_equal(confusion.matrix, [[1, 0], [1, 0]])
    assert empty.n_epochs == 0


def test_per_subject_metrics_match_separate_computation() -> None:
    rng = np.random.default_rng(3)
    subjects = ["s1", "s2", "s1", "s3", "s2", "s1"]
    y_true = rng.integers(-1, 3, size=(6, 10))
    y_pred = rng.integers(0, 3, size=(6, 10))
    result = per_subject_metrics(y_true, y_pred, subjects, 3, ("W", "N", "R"))
    assert sorted(result) == ["s1", "s2", "s3"]
    rows = [i for i, s in enumerate(subjects) if s == "s1"]
    expected = compute_metrics(y_true[rows], y_pred[rows], 3)
    np.testing.assert_array_equal(result["s1"].confusion, expected.confusion)
    weighted = metric_by_subject(result, "weighted_f1")
    assert weighted["s1"] == pytest.approx(expected.weighted_f1)
    assert metric_by_subject(result, "f1:R")["s2"] == result["s2"].f1[2]
    with pytest.raises(ValueError, match="unknown metric"):
        metric_by_subject(result, "auroc")


def test_subject_confusion_streams_and_pools() -> None:
    accumulator = SubjectConfusion(3)
    accumulator.update(["a", "b"], torch.tensor([[0, 1], [2, -1]]), torch.tensor([[0, 1], [1, 0]]))
    accumulator.update(["a"], torch.tensor([[2, 2]]), torch.tensor([[2, 0]]))
    accumulator.update(["c"], torch.tensor([[-1, -1]]), torch.tensor([[0, 0]]))
    per_subject = accumulator.compute()
    assert sorted(per_subject) == ["a", "b"]  # c has no scored epoch
    assert per_subject["a"].n_epochs == 4 and per_subject["b"].n_epochs == 1
    assert accumulator.overall().n_epochs == 5
    with pytest.raises(ValueError, match="one id per row"):
        accumulator.update(["a"], torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_real_ucddb_hypnograms_per_subject(shared_data: Path) -> None:
    files = sorted((shared_data / "ucddb-hypnograms").glob("*_stage.txt"))
    assert len(files) >= 20
    accumulator = SubjectConfusion(4, ("W", "L", "D", "R"))
    all_true, all_pred = [], []
    for path in files:
        codes = np.loadtxt(path, dtype=np.int64)
        scored = UCDDB_TO_WLDR[codes]
        # A "prediction" that lags the scoring by one epoch, the typical error at stage transitions.
        lagged = np.clip(np.concatenate([scored[:1], scored[:-1]]), 0, None)
        accumulator.update([path.stem], scored[None, :], lagged[None, :])
        all_true.append(scored)
        all_pred.append(lagged)
    per_subject = accumulator.compute()
    assert len(per_subject) == len(files)
    t, p = np.concatenate(all_true), np.concatenate(all_pred)
    keep = t >= 0
    pooled = accumulator.overall().compute()
    assert pooled.weighted_f1 == pytest.approx(f1_score(t[keep], p[keep], average="weighted"))
    assert pooled.cohen_kappa == pytest.approx(cohen_kappa_score(t[keep], p[keep]))
    # Real nights change stage rarely, so a one-epoch lag keeps most epochs right.
    assert 0.75 < pooled.accuracy < 1.0
    assert all(0.5 < m.accuracy <= 1.0 for m in per_subject.values())
