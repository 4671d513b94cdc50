"""Gate-fusion fine-tuning: thresholds from validation data, strict pre-trained weights, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kdsleep.ecg12.finetune import (
    FinetuneConfig,
    choose_thresholds,
    finetune,
    load_classifier,
    predict_probabilities,
)
from kdsleep.ecg12.pretrain import PretrainConfig, pretrain, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_thresholds_maximise_validation_f1() -> None:
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    probs = np.array([[0.3, 0.9], [0.35, 0.1], [0.2, 0.2], [0.1, 0.3]])
    t = choose_thresholds(labels, probs, grid=[0.1, 0.25, 0.5, 0.75])
    assert t[0] == 0.25  # separates 0.3/0.35 from 0.2/0.1: F1 = 1
    assert t[1] == 0.5  # no positive validation record: default kept
    with pytest.raises(ValueError, match="same shape"):
        choose_thresholds(labels, probs[:, :1])


def _toy(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    # Class 0 is "big amplitude", easy to learn from a few steps.
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 3), dtype=bool)
    labels[: n // 2, 0] = True
    signals = [(rng.standard_normal((12, 300)) * (3.0 if y[0] else 0.3)).astype(np.float32) for y in labels]
    return signals, labels


def test_finetune_learns_a_toy_class_and_round_trips(tmp_path) -> None:
    x_train, y_train = _toy(16, 0)
    x_val, y_val = _toy(6, 1)
    config = dataclasses.replace(FinetuneConfig.small(n_steps=30), batch_size=8, eval_every=10)
    result = finetune(
        x_train,
        y_train,
        x_val,
        y_val,
        config,
        classes=["a", "b", "c"],
        checkpoint_path=tmp_path / "c.pt",
        progress=False,
    )
    probs = predict_probabilities(result.model, x_val)
    assert probs.shape == (6, 3)
    assert probs[y_val[:, 0], 0].min() > probs[~y_val[:, 0], 0].max()
    assert result.best_step in {10, 20, 30}
    model, thresholds, classes = load_classifier(tmp_path / "c.pt")
    assert classes == ["a", "b", "c"] and np.allclose(thresholds, result.thresholds)
    assert np.allclose(predict_probabilities(model, x_val), probs)
    # Denormals are flushed only while fine-tuning: the process-wide flag is left as PyTorch's default.
    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0


def test_pretrained_weights_load_strictly(tmp_path) -> None:
    signals, labels = _toy(6, 0)
    pt = pretrain(
        signals,
        dataclasses.replace(PretrainConfig.small("time", n_steps=1), batch_size=2),
        tmp_path / "time.pt",
        progress=False,
    )
    config = dataclasses.replace(FinetuneConfig.small(n_steps=1), batch_size=2)
    result = finetune(
        signals,
        labels,
        signals,
        labels,
        dataclasses.replace(config, n_steps=1),
        pretrained={"time": pt.checkpoint},
        progress=False,
    )
    assert result.best_step == 1
    # A checkpoint whose keys do not match (as the authors' code silently accepted) is rejected by name.
    ckpt = torch.load(pt.checkpoint, weights_only=False)
    ckpt["teacher_encoder"] = {"module." + k: v for k, v in ckpt["teacher_encoder"].items()}
    save_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(ValueError, match="bad.pt.*missing"):
        finetune(
            signals, labels, signals, labels, config, pretrained={"time": tmp_path / "bad.pt"}, progress=False
        )
