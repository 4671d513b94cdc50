"""Running a U-Time over windows: the batch inputs of a modality, autocast, and window predictions.

Shared by the training loop (:mod:`kdsleep.distill.trainer`, for the inputs and autocast of each step) and
the runner (:mod:`kdsleep.distill.runner`, for the test and feature predictions of a trained model).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kdsleep._torch import flush_denormals
from kdsleep.models import FeatureTaps

__all__ = ["autocast", "batch_inputs", "predict", "predict_features"]


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bfloat16 autocast on CUDA when ``enabled``; nothing on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def batch_inputs(
    batch: tuple, modality: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, eeg, labels)`` of an ``(eeg, ecg, labels)`` batch on ``device``; ``x`` is what ``modality`` reads."""
    eeg, ecg, labels = batch
    x = eeg if modality == "eeg" else ecg
    return (
        x.to(device, non_blocking=True),
        eeg.to(device, non_blocking=True),
        labels.to(device, non_blocking=True),
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Any,
    modality: str,
    device: torch.device,
    *,
    batch_size: int = 16,
    amp: bool = True,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predicted classes of every window of ``dataset``: two ``(n_windows, n_epochs)`` arrays."""
    labels, preds, _ = _predict(model, dataset, modality, device, batch_size, amp, progress, desc, None)
    return labels, preds


def predict_features(
    model: nn.Module,
    dataset: Any,
    modality: str,
    device: torch.device,
    *,
    tap: str = "bottleneck",
    batch_size: int = 16,
    amp: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`predict`, plus the feature map ``tap`` averaged over each epoch.

    Returns
    -------
    labels, predictions : numpy.ndarray of shape (n_windows, n_epochs)
    features : numpy.ndarray of shape (n_windows * n_epochs, channels)
        One row per epoch, windows in order (:func:`kdsleep.evaluation.plots.epoch_features`).
    """
    labels, preds, features = _predict(
        model, dataset, modality, device, batch_size, amp, False, "features", tap
    )
    assert features is not None
    return labels, preds, features


@torch.no_grad()
def _predict(
    model: nn.Module,
    dataset: Any,
    modality: str,
    device: torch.device,
    batch_size: int,
    amp: bool,
    progress: bool,
    desc: str,
    tap: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    model.eval()
    n_epochs = getattr(model, "n_epochs", 1)
    labels_all, preds_all, features_all = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    taps = FeatureTaps(model, [tap], detach=True) if tap is not None else nullcontext()
    with flush_denormals(), taps:
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
            x, _, labels = batch_inputs(batch, modality, device)
            with autocast(device, amp):
                logits = model(x)
            labels_all.append(labels.cpu().numpy())
            preds_all.append(logits.float().argmax(dim=1).cpu().numpy())
            if isinstance(taps, FeatureTaps):
                # local: kdsleep.evaluation.plots loads matplotlib, which training itself never needs
                from kdsleep.evaluation.plots import epoch_features

                features_all.append(epoch_features(taps.features[0].float().cpu(), n_epochs))
    if not labels_all:
        empty = np.zeros((0, n_epochs), np.int64)
        return empty, empty.copy(), (np.zeros((0, 0)) if tap is not None else None)
    features = np.concatenate(features_all) if tap is not None else None
    return np.concatenate(labels_all), np.concatenate(preds_all), features
