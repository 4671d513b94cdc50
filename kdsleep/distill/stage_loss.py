"""The loss of one training stage, for a training step and for a validation batch.

:class:`StageLoss` holds what a stage's loss needs -- the weighted cross-entropy with optional softmax
distillation (:class:`~kdsleep.distill.losses.FinalLoss`), the attention-transfer loss
(:class:`~kdsleep.distill.losses.FeatureLoss`), the frozen teacher and, where the teacher's inputs are fixed,
the :class:`~kdsleep.distill.teacher_cache.TeacherCache` that stands in for it during training steps --
so that :func:`kdsleep.distill.trainer.train_stage` only runs epochs, validates and keeps its files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from kdsleep._torch import dist_info
from kdsleep.distill.augment import rate_stretch
from kdsleep.distill.batches import autocast, batch_inputs
from kdsleep.distill.losses import FeatureLoss, FinalLoss
from kdsleep.distill.teacher_cache import (
    TeacherCache,
    TeacherCacheKey,
    attention_transfer_from_maps,
    teacher_inputs_are_fixed,
    window_input,
)
from kdsleep.models import FeatureTaps, UTime

if TYPE_CHECKING:
    from kdsleep.distill.trainer import StageSpec, TrainSettings

__all__ = ["StageLoss", "barrier"]

logger = logging.getLogger(__name__)


def barrier() -> None:
    """Wait for every process under ``torch.distributed``; nothing in a single process."""
    if dist_info()[1] > 1:
        torch.distributed.barrier()


@dataclass
class StageLoss:
    """The loss of one stage (``spec.kind`` ``"final"`` or ``"at"``) on training steps and validation batches.

    Build it with :meth:`build`. ``cache`` is set when training steps read the teacher's maps and logits
    from a teacher cache (their batches then carry the window index, see
    :class:`~kdsleep.distill.teacher_cache.WithIndex`); validation always runs the live teacher.
    """

    spec: StageSpec
    model: UTime
    teacher: UTime | None
    final_loss: FinalLoss
    feature_loss: FeatureLoss
    settings: TrainSettings
    device: torch.device
    loss_backend: str = "fused"
    cache: TeacherCache | None = None

    @classmethod
    def build(
        cls,
        spec: StageSpec,
        model: UTime,
        *,
        teacher: UTime | None,
        class_weights: torch.Tensor,
        settings: TrainSettings,
        device: torch.device,
        train_set: Any,
        cache_dir: Path,
        loss_backend: str = "fused",
        progress: bool = True,
    ) -> StageLoss:
        """The stage's losses; builds or opens the teacher cache of ``train_set`` in ``cache_dir`` when used."""
        final_loss = FinalLoss(
            class_weights,
            spec.weight_kd,
            settings.temperature,
            backend=loss_backend,
            kl_reduction=settings.kl_reduction,
            label_smoothing=spec.label_smoothing,
        )
        at_weights = model.joshi_tap_weights() if settings.at_mode == "joshi" else None
        feature_loss = FeatureLoss(
            at_weights, settings.at_mode, settings.at_p, settings.at_distance, backend=loss_backend
        )
        loss = cls(spec, model, teacher, final_loss, feature_loss, settings, device, loss_backend)
        if (spec.kind == "at" or loss.uses_teacher_logits) and settings.teacher_cache:
            frozen = cast(UTime, teacher)
            if teacher_inputs_are_fixed(train_set, teacher=frozen):
                loss.cache = _open_teacher_cache(
                    frozen, train_set, cache_dir, settings, device, progress, spec.teacher_modality
                )
                logger.info("%s: teacher outputs read from %s", spec.name, loss.cache.root)
            else:
                logger.info(
                    "%s: the teacher's training inputs are not fixed (augmentation or random windows); "
                    "running the live teacher every step",
                    spec.name,
                )
        return loss

    @property
    def uses_teacher_logits(self) -> bool:
        """Whether the stage distils the teacher's softmax (step 2 with ``weight_kd > 0``)."""
        return self.spec.kind == "final" and self.spec.weight_kd > 0

    @property
    def _teacher(self) -> UTime:
        # only used by the stages that need it (train_stage checks that they have one)
        return cast(UTime, self.teacher)

    def _teacher_input(self, x: torch.Tensor, eeg: torch.Tensor) -> torch.Tensor:
        """What the teacher reads: the EEG, or for an ECG teacher the student's input as recorded (before
        any augmentation)."""
        return x if self.spec.teacher_modality == "ecg" else eeg

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The student's training input: rate-stretched where an ECG stage asks for it, else ``x``."""
        if self.spec.modality != "ecg" or not self.settings.ecg_rate_stretch:
            return x
        return rate_stretch(x, self.settings.ecg_rate_stretch, self.model.samples_per_epoch)

    def train(self, batch: tuple, net: nn.Module) -> torch.Tensor:
        """The loss of one training batch through ``net`` (the model, or its DDP wrapper)."""
        spec, settings, device = self.spec, self.settings, self.device
        if self.cache is not None:
            return self._cached(batch, net)
        x, eeg, labels = batch_inputs(batch, spec.modality, device)
        student_x = self.augment(x)
        with autocast(device, settings.amp):
            if spec.kind == "at":
                with torch.no_grad():
                    _, teacher_maps = self._teacher.features(eeg, detach=True)
                with FeatureTaps(self.model, self.model.tap_names) as taps:
                    net(student_x)
                return self.feature_loss(taps.features, teacher_maps)
            teacher_logits = None
            if self.uses_teacher_logits:
                with torch.no_grad():
                    teacher_logits = self._teacher(self._teacher_input(x, eeg))
            return self.final_loss(net(student_x), labels, teacher_logits)

    def _cached(self, batch: tuple, net: nn.Module) -> torch.Tensor:
        assert self.cache is not None
        spec, settings, device = self.spec, self.settings, self.device
        eeg, ecg, labels, index = batch
        x = self.augment((eeg if spec.modality == "eeg" else ecg).to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        teacher_maps, teacher_logits = self.cache.lookup(
            index, device=device, mode=settings.at_mode, maps=spec.kind == "at"
        )
        with autocast(device, settings.amp):
            if spec.kind == "at":
                with FeatureTaps(self.model, self.model.tap_names) as taps:
                    net(x)
                return attention_transfer_from_maps(
                    [m.float() for m in taps.features],
                    teacher_maps,
                    p=settings.at_p,
                    distance=settings.at_distance,
                    weights=self.feature_loss.weights,
                    mode=settings.at_mode,
                    backend="fused" if self.loss_backend == "fused" else "torch",
                )
            return self.final_loss(net(x), labels, teacher_logits)

    @torch.no_grad()
    def validate(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, loss, labels)`` of one validation batch (the model in eval mode, the live teacher)."""
        spec, device = self.spec, self.device
        x, eeg, labels = batch_inputs(batch, spec.modality, device)
        with autocast(device, self.settings.amp):
            if spec.kind == "at":
                _, teacher_maps = self._teacher.features(eeg, detach=True)
                logits, student_maps = self.model.features(x)
                loss = self.feature_loss(student_maps, teacher_maps)
            else:
                logits = self.model(x)
                teacher_logits = None
                if self.uses_teacher_logits:
                    teacher_logits = self._teacher(self._teacher_input(x, eeg))
                loss = self.final_loss(logits, labels, teacher_logits)
        return logits, loss, labels


def _open_teacher_cache(
    teacher: UTime,
    train_set: Any,
    folder: Path,
    settings: TrainSettings,
    device: torch.device,
    progress: bool,
    teacher_modality: str = "eeg",
) -> TeacherCache:
    """Build (process 0) or open (the others, after a barrier) the teacher cache of the training windows.

    The teacher reads the window's EEG, or its ECG input (as recorded, before any augmentation) where
    ``teacher_modality`` is ``"ecg"`` (the self-distillation control); the input is part of the cache key,
    so caches of one model fed different inputs never stand in for each other.
    """
    if teacher_modality not in ("eeg", "ecg"):
        raise ValueError(f"teacher_modality must be 'eeg' or 'ecg', got {teacher_modality!r}")
    rank, _ = dist_info()
    key = TeacherCacheKey.for_run(
        teacher, train_set, settings={"teacher_input": teacher_modality}, p=settings.at_p
    )
    cache: TeacherCache | None = None
    if rank == 0:
        cache = TeacherCache.build(
            teacher,
            train_set,
            folder,
            key,
            batch_size=settings.batch_size,
            device=device,
            progress=progress,
            input_fn=window_input(1 if teacher_modality == "ecg" else 0),
        )
    barrier()
    if cache is None:
        cache = TeacherCache.open(folder, key, verify=False)
    return cache
