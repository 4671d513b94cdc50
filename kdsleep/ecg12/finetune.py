"""Supervised fine-tuning of the gate-fusion classifier (Phan et al., arXiv 2210.06297).

* Model: :class:`~kdsleep.ecg12.models.GateFusionClassifier` (time-series XResNet + spectrogram SE-ResNet,
  gate fusion, two-layer head), optionally initialised from the teacher encoders of
  :func:`kdsleep.ecg12.pretrain.pretrain` (strict key and shape checks: the authors' code silently loaded
  mismatched keys).
* Training: one random 2.5-s window per sampled record, binary cross-entropy on the merged classes (24 in
  2020, multi-label, sigmoid outputs), AdamW.
* Record-level outputs: the mean of the window probabilities over consecutive windows covering the record.
* Model selection and per-class decision thresholds use the **validation** records only; the test fold is
  never looked at here (the authors chose both on the test fold, an optimistic bias).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kdsleep._torch import flush_denormals
from kdsleep.ecg12.models import GateFusionClassifier, SEResNetConfig, XResNetConfig, load_state_dict_strict
from kdsleep.ecg12.pretrain import RecordSignals, load_pretrained_encoder, save_checkpoint
from kdsleep.ecg12.spectrogram import WINDOW_SAMPLES, consecutive_windows, random_windows

logger = logging.getLogger(__name__)

__all__ = [
    "CLASSIFIER_KIND",
    "FinetuneConfig",
    "FinetuneResult",
    "choose_thresholds",
    "finetune",
    "load_classifier",
    "predict_probabilities",
]

#: Records as :class:`RecordSignals`, or their (12, n_times) signals at 100 Hz as arrays or tensors.
Records = Sequence[RecordSignals] | Sequence[np.ndarray] | Sequence[torch.Tensor]

#: Value of the ``kind`` field of classifier checkpoints.
CLASSIFIER_KIND = "kdsleep.ecg12.classifier"


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of fine-tuning.

    Attributes
    ----------
    time_encoder, spectrogram_encoder : XResNetConfig, SEResNetConfig
        Paper: XResNet-50 and SE-ResNet-34 (must match the pre-trained checkpoints when given).
    hidden_dim, dropout : int, float
        Head of the gate fusion.
    n_steps, batch_size : int
        Optimiser steps and windows per step.
    lr, weight_decay : float
        AdamW.
    eval_every : int
        Steps between validation passes; the step with the lowest validation loss is kept.
    threshold_grid : tuple of float
        Candidate decision thresholds per class.
    seed : int
    """

    time_encoder: XResNetConfig = field(default_factory=XResNetConfig.paper)
    spectrogram_encoder: SEResNetConfig = field(default_factory=SEResNetConfig.paper)
    hidden_dim: int = 512
    dropout: float = 0.2
    n_steps: int = 20000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    eval_every: int = 500
    threshold_grid: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(
                f"n_steps, batch_size and eval_every must be positive, got {self.n_steps}, {self.batch_size}, "
                f"{self.eval_every}"
            )

    @classmethod
    def paper(cls) -> FinetuneConfig:
        return cls()

    @classmethod
    def small(cls, n_steps: int = 300) -> FinetuneConfig:
        """CPU-sized: small encoders, 64-unit head, batches of 16."""
        return cls(
            time_encoder=XResNetConfig.small(),
            spectrogram_encoder=SEResNetConfig.small(),
            hidden_dim=64,
            n_steps=n_steps,
            batch_size=16,
            eval_every=max(1, n_steps // 4),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes
    ----------
    model : GateFusionClassifier
        At the selected step, in eval mode on the CPU.
    thresholds : ndarray, shape (n_classes,)
        Per-class decision thresholds chosen on the validation records.
    validation_probabilities : ndarray, shape (n_validation, n_classes)
    best_step : int
    losses : list of float
        Training loss of every step.
    validation_losses : list of (int, float)
    seconds : float
    checkpoint : Path or None
    """

    model: GateFusionClassifier
    thresholds: np.ndarray
    validation_probabilities: np.ndarray
    best_step: int
    losses: list[float]
    validation_losses: list[tuple[int, float]]
    seconds: float
    checkpoint: Path | None = None


def _signals(records: Records) -> list[torch.Tensor]:
    return [
        torch.as_tensor(r.signal if isinstance(r, RecordSignals) else r, dtype=torch.float32) for r in records
    ]


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    records: Records,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Record-level probabilities: mean sigmoid output over consecutive 2.5-s windows of each record.

    Returns
    -------
    ndarray of float64, shape (n_records, n_classes)
    """
    model.eval()
    windows = [consecutive_windows(signal, WINDOW_SAMPLES) for signal in _signals(records)]
    counts = [len(w) for w in windows]
    flat = torch.cat(windows)
    probs = []
    for i in range(0, len(flat), batch_size):
        chunk = flat[i : i + batch_size]
        n = len(chunk)
        # Every batch gets the same size (zero-padded): CPU convolution backends re-plan for each new shape,
        # which made record-by-record batches ten times slower than the forward pass itself.
        if n < batch_size and len(flat) > batch_size:
            chunk = torch.cat([chunk, chunk.new_zeros((batch_size - n, *chunk.shape[1:]))])
        probs.append(torch.sigmoid(model(chunk.to(device)))[:n].double().cpu())
    per_window = torch.cat(probs)
    return np.stack([p.mean(dim=0).numpy() for p in torch.split(per_window, counts)])


def choose_thresholds(
    labels: np.ndarray,
    probabilities: np.ndarray,
    grid: Sequence[float] = FinetuneConfig().threshold_grid,
    default: float = 0.5,
) -> np.ndarray:
    """Per-class threshold maximising that class's F1 on the given (validation) records.

    Classes without a positive record there get ``default`` (no evidence to move it). Ties go to the
    threshold closest to ``default``.
    """
    labels = np.asarray(labels, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != probabilities.shape:
        raise ValueError(
            f"labels {labels.shape} and probabilities {probabilities.shape} must have the same shape"
        )
    grid_arr = np.asarray(sorted(grid, key=lambda t: abs(t - default)), dtype=np.float64)
    thresholds = np.full(labels.shape[1], default)
    for k in range(labels.shape[1]):
        y = labels[:, k]
        if not y.any():
            continue
        pred = probabilities[:, k][None, :] >= grid_arr[:, None]  # (n_grid, n_records)
        tp = (pred & y).sum(1)
        f1 = 2 * tp / (pred.sum(1) + y.sum())
        thresholds[k] = grid_arr[int(np.argmax(f1))]
    return thresholds


def _bce(model: nn.Module, signals: list[torch.Tensor], labels: torch.Tensor, device: torch.device) -> float:
    probs = torch.as_tensor(predict_probabilities(model, signals, device))
    return float(nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), labels.double()).item())


@flush_denormals()  # denormal activations and gradients made CPU steps up to fifty times slower
def finetune(
    train_records: Records,
    train_labels: np.ndarray,
    validation_records: Records,
    validation_labels: np.ndarray,
    config: FinetuneConfig,
    pretrained: Mapping[str, str | os.PathLike] | None = None,
    classes: Sequence[str] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FinetuneResult:
    """Train the gate-fusion classifier; select the step and the thresholds on the validation records.

    Parameters
    ----------
    train_records, validation_records : sequences of RecordSignals or arrays (12, n_times) at 100 Hz
    train_labels, validation_labels : array of bool, shape (n_records, n_classes)
    config : FinetuneConfig
    pretrained : mapping or None
        ``{"time": path, "spectrogram": path}`` (either key optional): pre-training checkpoints whose teacher
        encoders initialise the classifier's encoders (strictly checked).
    classes : sequence of str or None
        Class codes stored in the checkpoint (needed by ``kdsleep ecg12 predict``).
    checkpoint_path : path or None
        Written atomically at the end: model configuration and weights, thresholds, classes.
    """
    train_labels = np.asarray(train_labels, dtype=bool)
    validation_labels = np.asarray(validation_labels, dtype=bool)
    if len(train_records) != len(train_labels) or len(validation_records) != len(validation_labels):
        raise ValueError("finetune: as many label rows as records are needed (training and validation)")
    if len(train_records) == 0 or len(validation_records) == 0:
        raise ValueError("finetune: training and validation records must not be empty")
    n_classes = train_labels.shape[1]
    if classes is not None and len(classes) != n_classes:
        raise ValueError(f"finetune: {len(classes)} class codes for {n_classes} label columns")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(device)

    model = GateFusionClassifier(
        config.time_encoder, config.spectrogram_encoder, n_classes, config.hidden_dim, config.dropout
    )
    for modality, path in (pretrained or {}).items():
        target = {"time": model.time_encoder, "spectrogram": model.spectrogram_encoder}.get(modality)
        if target is None:
            raise ValueError(f"pretrained: unknown modality {modality!r} (expected 'time' or 'spectrogram')")
        load_pretrained_encoder(path, modality, target)
        logger.info("%s encoder initialised from %s", modality, path)
    model.to(device)

    train_signals = _signals(train_records)
    val_signals = _signals(validation_records)
    y_train = torch.as_tensor(train_labels, dtype=torch.float32)
    y_val = torch.as_tensor(validation_labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()

    losses: list[float] = []
    val_losses: list[tuple[int, float]] = []
    best_state, best_loss, best_step = copy.deepcopy(model.state_dict()), float("inf"), 0
    start = time.perf_counter()
    bar = tqdm(range(1, config.n_steps + 1), desc="finetune", unit="step", disable=not progress)
    for step in bar:
        model.train()
        picks = rng.integers(0, len(train_signals), config.batch_size)
        windows = torch.cat([random_windows(train_signals[i], 1, generator=generator) for i in picks]).to(
            device
        )
        loss = loss_fn(model(windows), y_train[picks].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        if step % config.eval_every == 0 or step == config.n_steps:
            v = _bce(model, val_signals, y_val, device)
            val_losses.append((step, v))
            if v < best_loss:
                best_state, best_loss, best_step = copy.deepcopy(model.state_dict()), v, step
            bar.set_postfix(loss=f"{losses[-1]:.3f}", val=f"{v:.3f}")
    model.load_state_dict(best_state)
    model.eval()
    val_probs = predict_probabilities(model, val_signals, device)
    thresholds = choose_thresholds(validation_labels, val_probs, config.threshold_grid)
    seconds = time.perf_counter() - start
    logger.info(
        "finetune: %d steps in %.1f s, best validation loss %.4f at step %d",
        config.n_steps,
        seconds,
        best_loss,
        best_step,
    )
    model.cpu()

    saved = None
    if checkpoint_path is not None:
        saved = save_checkpoint(
            checkpoint_path,
            {
                "kind": CLASSIFIER_KIND,
                "model_config": model.config_dict(),
                "state_dict": model.state_dict(),
                "thresholds": thresholds.tolist(),
                "classes": list(classes) if classes is not None else None,
                "config": config.to_dict(),
                "best_step": best_step,
                "pretrained": {k: str(v) for k, v in (pretrained or {}).items()},
            },
        )
    return FinetuneResult(
        model=model,
        thresholds=thresholds,
        validation_probabilities=val_probs,
        best_step=best_step,
        losses=losses,
        validation_losses=val_losses,
        seconds=seconds,
        checkpoint=saved,
    )


def load_classifier(path: str | os.PathLike) -> tuple[GateFusionClassifier, np.ndarray, list[str] | None]:
    """Model (eval mode), thresholds and class codes of a checkpoint written by :func:`finetune`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: classifier checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CLASSIFIER_KIND:
        raise ValueError(f"{path}: field 'kind': not a kdsleep ecg12 classifier checkpoint")
    model = GateFusionClassifier.from_config_dict(ckpt["model_config"])
    load_state_dict_strict(model, ckpt["state_dict"], str(path))
    model.eval()
    return model, np.asarray(ckpt["thresholds"], dtype=np.float64), ckpt.get("classes")
