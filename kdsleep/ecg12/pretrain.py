"""Self-supervised self-distillation (DINO) pre-training of one 12-lead ECG encoder (Phan et al., 2210.06297).

Per modality (``"time"``: :class:`~kdsleep.ecg12.models.XResNet1d` on 12 x 250 windows; ``"spectrogram"``:
:class:`~kdsleep.ecg12.models.SEResNet2d` on their 12 x 13 x 21 spectrograms), following Caron et al. (DINO):

* a student (encoder + :class:`~kdsleep.ecg12.models.DINOHead`) sees every view of a window (2 global and
  ``n_local`` local crops, :mod:`kdsleep.ecg12.augment`); a teacher of the same architecture sees the global
  crops only and receives no gradient;
* loss: cross-entropy between the centred, sharpened teacher softmax (temperature 0.04) and the student
  log-softmax (temperature 0.1) over all pairs of different views, through the fused
  :func:`kdsleep.ops.self_distillation_loss`;
* after each step the teacher becomes an exponential moving average of the student (momentum 0.996) and the
  centre an EMA of the teacher outputs' batch mean (momentum 0.9).

The teacher's encoder is what fine-tuning loads (DINO's choice: the teacher is the better encoder).
Checkpoints are written atomically and hold the configurations needed to rebuild the encoder.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kdsleep._io import save_torch_atomic
from kdsleep._torch import flush_denormals
from kdsleep.ecg12.augment import MultiCropConfig, multi_crop_spectrogram, multi_crop_time
from kdsleep.ecg12.models import (
    DINOHead,
    EncoderWithHead,
    HeadConfig,
    SEResNet2d,
    SEResNetConfig,
    XResNet1d,
    XResNetConfig,
    load_state_dict_strict,
)
from kdsleep.ecg12.reader import list_records, read_record
from kdsleep.ecg12.spectrogram import SFREQ, WINDOW_SAMPLES, random_windows, spectrogram
from kdsleep.ops import self_distillation_loss

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_KIND",
    "PretrainConfig",
    "PretrainResult",
    "RecordSignals",
    "build_encoder",
    "load_pretrained_encoder",
    "pretrain",
    "read_signals",
    "save_checkpoint",
]

Modality = Literal["time", "spectrogram"]
MODALITIES: tuple[str, ...] = ("time", "spectrogram")
#: Value of the ``kind`` field of pre-training checkpoints.
CHECKPOINT_KIND = "kdsleep.ecg12.pretrain"


# ---------------------------------------------------------------------------------------------------------
# Records in memory
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSignals:
    """A record's 12 leads at 100 Hz, in millivolts, with its diagnoses.

    Attributes
    ----------
    name : str
    signal : ndarray of float32, shape (12, n_times)
    dx_codes : tuple of str
        SNOMED CT codes of the header (empty for unlabelled records).
    header_path : Path
    """

    name: str
    signal: np.ndarray
    dx_codes: tuple[str, ...]
    header_path: Path


def read_signals(
    data_dir: str | os.PathLike, sfreq: float = SFREQ, min_samples: int = WINDOW_SAMPLES
) -> list[RecordSignals]:
    """Read every record of a folder, resampled to ``sfreq`` (100 Hz in Phan et al.).

    Records shorter than one window (``min_samples`` after resampling) are skipped with a warning; a folder
    without any usable record raises ``ValueError`` naming it.
    """
    paths = list_records(data_dir)
    records = []
    for path in tqdm(paths, desc=f"reading {Path(data_dir).name}", unit="record", leave=False):
        rec = read_record(path, sfreq=sfreq)
        if rec.signal.shape[-1] < min_samples:
            logger.warning(
                "%s: %d samples at %g Hz, shorter than a window; skipped", path, rec.signal.shape[-1], sfreq
            )
            continue
        records.append(RecordSignals(rec.record_name, rec.signal, rec.header.dx_codes, path))
    if not records:
        raise ValueError(f"{data_dir}: no record with at least {min_samples} samples at {sfreq:g} Hz")
    return records


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of the self-distillation pre-training of one modality.

    Attributes
    ----------
    modality : {"time", "spectrogram"}
    encoder : XResNetConfig or SEResNetConfig
        Encoder of the modality (paper: XResNet-50 / SE-ResNet-34).
    head : HeadConfig
        Projection head (paper: 65 536 outputs).
    crops : MultiCropConfig
        Views (paper: 2 global + 8 local).
    n_steps : int
        Optimiser steps.
    batch_size : int
        Windows per step (one random 2.5-s window from each of ``batch_size`` records drawn at random).
    lr, weight_decay : float
        AdamW settings (DINO: 5e-4 scaled by batch / 256, weight decay 0.04).
    teacher_momentum : float
        EMA momentum of the teacher (0.996).
    center_momentum : float
        EMA momentum of the teacher centre (0.9).
    student_temperature, teacher_temperature : float
        0.1 and 0.04.
    clip_grad : float
        Gradient-norm clipping of the student (DINO: 3.0); 0 disables it.
    seed : int
    """

    modality: Modality = "time"
    encoder: XResNetConfig | SEResNetConfig = field(default_factory=XResNetConfig.paper)
    head: HeadConfig = field(default_factory=HeadConfig.paper)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)
    n_steps: int = 10000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.04
    teacher_momentum: float = 0.996
    center_momentum: float = 0.9
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    clip_grad: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        expected = XResNetConfig if self.modality == "time" else SEResNetConfig
        if not isinstance(self.encoder, expected):
            raise ValueError(
                f"modality {self.modality!r} needs an {expected.__name__}, got {type(self.encoder).__name__}"
            )
        for name in ("teacher_momentum", "center_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.n_steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"n_steps and batch_size must be positive, got {self.n_steps} and {self.batch_size}"
            )

    @classmethod
    def paper(cls, modality: Modality) -> PretrainConfig:
        """The paper-size configuration of ``modality`` (needs a GPU and the whole challenge dataset)."""
        encoder = XResNetConfig.paper() if modality == "time" else SEResNetConfig.paper()
        return cls(modality=modality, encoder=encoder)

    @classmethod
    def small(cls, modality: Modality, n_steps: int = 200) -> PretrainConfig:
        """A CPU-sized configuration: small encoder and head, 2 global + 2 local crops, batches of 16."""
        encoder = XResNetConfig.small() if modality == "time" else SEResNetConfig.small()
        return cls(
            modality=modality,
            encoder=encoder,
            head=HeadConfig.small(),
            crops=MultiCropConfig(n_local=2),
            n_steps=n_steps,
            batch_size=16,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_encoder(
    modality: str, encoder_config: dict[str, Any] | XResNetConfig | SEResNetConfig
) -> nn.Module:
    """The encoder of ``modality`` from its configuration (a dataclass or its ``asdict``)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    cls_config = XResNetConfig if modality == "time" else SEResNetConfig
    if isinstance(encoder_config, dict):
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in encoder_config.items()
        }
        encoder_config = cls_config(**fields)
    return XResNet1d(encoder_config) if modality == "time" else SEResNet2d(encoder_config)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` through a temporary file in the same folder and :func:`os.replace` (never half a file)."""
    return save_torch_atomic(path, payload)


def load_pretrained_encoder(
    path: str | os.PathLike, modality: str, encoder: nn.Module | None = None
) -> nn.Module:
    """The teacher encoder of a pre-training checkpoint, loaded with strict key and shape checks.

    Parameters
    ----------
    path : path
        Checkpoint written by :func:`pretrain`.
    modality : {"time", "spectrogram"}
        Expected modality; a checkpoint of the other one is rejected.
    encoder : nn.Module or None
        Load into this encoder (e.g. the one inside a classifier); by default a new encoder is built from
        the checkpoint's configuration.

    Raises
    ------
    ValueError
        Naming the file when it is not a pre-training checkpoint, is of another modality, or its weights do
        not match the encoder key for key.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: pre-training checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path}: field 'kind': not a kdsleep ecg12 pre-training checkpoint")
    if ckpt["modality"] != modality:
        raise ValueError(
            f"{path}: field 'modality': expected {modality!r}, the checkpoint holds {ckpt['modality']!r}"
        )
    if encoder is None:
        encoder = build_encoder(modality, ckpt["encoder_config"])
    load_state_dict_strict(encoder, ckpt["teacher_encoder"], str(path))
    return encoder


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain`.

    Attributes
    ----------
    checkpoint : Path or None
    losses : list of float
        Loss of every step.
    seconds : float
    teacher_encoder : nn.Module
    """

    checkpoint: Path | None
    losses: list[float]
    seconds: float
    teacher_encoder: nn.Module


def _views(
    windows: Tensor, config: PretrainConfig, generator: torch.Generator
) -> tuple[list[Tensor], list[Tensor]]:
    if config.modality == "time":
        return multi_crop_time(windows, config.crops, generator)
    return multi_crop_spectrogram(spectrogram(windows), config.crops, generator)


def _forward_views(model: nn.Module, global_views: Sequence[Tensor], local_views: Sequence[Tensor]) -> Tensor:
    """(V, N, K) outputs; views of one size go through the model in one batch."""
    n = global_views[0].shape[0]
    outputs = [model(torch.cat(list(global_views)))]
    if local_views:
        outputs.append(model(torch.cat(list(local_views))))
    return torch.cat(outputs).reshape(-1, n, outputs[0].shape[-1])


@flush_denormals()  # denormal activations and gradients made CPU steps up to fifty times slower
def pretrain(
    records: Sequence[RecordSignals] | Sequence[np.ndarray],
    config: PretrainConfig,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> PretrainResult:
    """Self-distillation pre-training of one modality's encoder on unlabelled records.

    Parameters
    ----------
    records : sequence of RecordSignals or of arrays (12, n_times) at 100 Hz
    config : PretrainConfig
    checkpoint_path : path or None
        Where the final checkpoint goes (written atomically).
    device : str or torch.device
    progress : bool
        Show a tqdm progress bar.
    """
    signals = [
        torch.as_tensor(r.signal if isinstance(r, RecordSignals) else r, dtype=torch.float32) for r in records
    ]
    if not signals:
        raise ValueError("pretrain: no records")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(device)

    encoder = build_encoder(config.modality, config.encoder)
    student = EncoderWithHead(encoder, DINOHead(encoder.embedding_dim, config.head)).to(device)  # type: ignore[arg-type]
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    center = torch.zeros(config.head.out_dim, device=device)
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )

    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(config.n_steps), desc=f"pretrain {config.modality}", unit="step", disable=not progress)
    for _step in bar:
        picks = rng.integers(0, len(signals), config.batch_size)
        windows = torch.cat([random_windows(signals[i], 1, generator=generator) for i in picks]).to(device)
        global_views, local_views = _views(windows, config, generator)
        student.train()
        student_out = _forward_views(student, global_views, local_views)
        with torch.no_grad():
            teacher.train()  # batch statistics of the current views, as in DINO
            teacher_out = _forward_views(teacher, global_views, [])
        loss = self_distillation_loss(
            student_out,
            teacher_out,
            center,
            student_temperature=config.student_temperature,
            teacher_temperature=config.teacher_temperature,
        )
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"pretrain {config.modality}: non-finite loss at step {_step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad > 0:
            nn.utils.clip_grad_norm_(student.parameters(), config.clip_grad)
        optimizer.step()
        with torch.no_grad():
            m = config.teacher_momentum
            for p_t, p_s in zip(teacher.parameters(), student.parameters(), strict=True):
                p_t.mul_(m).add_(p_s.detach(), alpha=1.0 - m)
            center.mul_(config.center_momentum).add_(
                teacher_out.float().mean(dim=(0, 1)), alpha=1.0 - config.center_momentum
            )
        losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    seconds = time.perf_counter() - start
    logger.info(
        "pretrain %s: %d steps in %.1f s, loss %.3f -> %.3f",
        config.modality,
        config.n_steps,
        seconds,
        losses[0],
        losses[-1],
    )

    saved = None
    if checkpoint_path is not None:
        saved = save_checkpoint(
            checkpoint_path,
            {
                "kind": CHECKPOINT_KIND,
                "modality": config.modality,
                "encoder_config": asdict(config.encoder),
                "config": config.to_dict(),
                "teacher_encoder": teacher.encoder.state_dict(),
                "teacher": teacher.state_dict(),
                "student": student.state_dict(),
                "center": center.cpu(),
                "step": config.n_steps,
                "losses": losses,
            },
        )
    return PretrainResult(
        checkpoint=saved, losses=losses, seconds=seconds, teacher_encoder=teacher.encoder.cpu()
    )
