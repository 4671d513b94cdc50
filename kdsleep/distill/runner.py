"""One class set of one experiment: the teacher first, then the variants, each tested on every scored epoch.

A :class:`Runner` is what ``kdsleep train`` / ``kdsleep experiment`` (:class:`kdsleep.distill.experiment.Pipeline`)
and the slpdb study (:mod:`kdsleep.study.slpdb`) share. Given recordings in a
:class:`~kdsleep.data.windows.WindowStore`, the recording keys of the training, validation and test parts,
and the settings, it

1. builds the windows of each part (:class:`~kdsleep.data.windows.WindowDataset`: strided training windows;
   validation and test windows that cover every epoch and count each once);
2. computes the WCE class weights from the scored epochs of the training recordings;
3. trains the EEG teacher (the ``eeg_baseline`` variant) first, unless one is given, and freezes it;
4. trains every stage of a variant with :func:`~kdsleep.distill.trainer.train_stage` -- the package's only
   call of it -- in ``out_dir/<variant>/<stage>/``. Step 1 (attention transfer) is the same training for
   every variant that has it (same seed, teacher, data and settings), so it runs once, in
   ``out_dir/at_step/at/``, and each such variant continues from a copy of its weights. Where the
   teacher's training inputs are fixed, its maps and logits on the training windows are computed once, in
   ``out_dir/teacher-cache/`` (shared by every stage that distils from that teacher; ``teacher_cache``);
5. predicts the test windows and merges them into one class per epoch by the rule of
   :mod:`kdsleep.data.windows`, returning a :class:`VariantOutcome` with pooled and per-subject metrics.

Writing checkpoints, reports and the study's unit files is the caller's business.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsleep.data.stages import StageGrouping, get_grouping
from kdsleep.data.windows import WindowDataset, WindowStore
from kdsleep.distill.batches import predict, predict_features
from kdsleep.distill.losses import class_weights
from kdsleep.distill.trainer import StageSpec, TrainSettings, train_stage
from kdsleep.distill.variants import Variant, get_variant
from kdsleep.evaluation.metrics import StagingMetrics, SubjectConfusion
from kdsleep.models import UTime

__all__ = ["PARTS", "Runner", "VariantOutcome", "training_class_weights"]

logger = logging.getLogger(__name__)

#: The parts of a subject-wise split.
PARTS = ("train", "val", "test")


@dataclass
class VariantOutcome:
    """What one variant gave on the test recordings of one class set.

    Attributes
    ----------
    variant : str
        Variant name (``ecg_baseline``, ``at_cl``, ...).
    grouping : str
        Class set (``w-l-d-r``, ...).
    metrics : StagingMetrics
        Pooled over every scored epoch of the test recordings.
    per_subject : dict of str to StagingMetrics
        The same per test subject.
    labels, predictions : dict of str to ndarray
        True and predicted class of every epoch of each test recording (``-1``: unscored, or not covered by
        any window because the recording is shorter than one).
    stages : dict
        Per stage (``at``, ``final``): best epoch, its validation score and the epochs run.
    seconds : float
        Wall time of the variant's training and test.
    model : UTime or None
        The trained model (holding the best epoch's weights).
    checkpoint : Path or None
        Where the caller saved it, if it did.
    """

    variant: str
    grouping: str
    metrics: StagingMetrics
    per_subject: dict[str, StagingMetrics]
    labels: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    stages: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model: UTime | None = None
    checkpoint: Path | None = None


def training_class_weights(
    store: WindowStore, keys: Sequence[str], grouping: StageGrouping, source: str
) -> torch.Tensor:
    """WCE weights ``N / (K n_k)`` from the scored epochs of the training recordings ``keys``."""
    counts = np.zeros(grouping.n_classes, dtype=np.int64)
    for key in keys:
        labels = np.asarray(store.labels(key, grouping))
        counts += np.bincount(labels[labels >= 0], minlength=grouping.n_classes)[: grouping.n_classes]
    return class_weights(counts, source=source)


def freeze(model: UTime, device: torch.device) -> UTime:
    """Move ``model`` to ``device`` in eval mode without gradients (a teacher)."""
    model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class Runner:
    """Teacher, variants and test evaluation of one class set on one split.

    Parameters
    ----------
    store : WindowStore
        The recordings (the on-disk cache, or records in memory).
    parts : mapping of str to sequence of str
        Recording keys of ``"train"``, ``"val"`` and ``"test"``.
    subjects : mapping of str to str
        Subject of every recording key (per-subject metrics).
    grouping : str or StageGrouping
        Class set.
    inputs : mapping of str to sequence of str
        Stored channels of each modality's input, e.g. ``{"eeg": ("eeg",), "ecg": ("ihr",)}``.
    new_model : callable
        ``new_model(modality)``: a freshly initialised (seeded) U-Time for that modality's inputs.
    settings : TrainSettings
        Optimiser, batches, losses and early stopping.
    epochs : int
        Epochs of every classification stage.
    at_epochs : int
        Epochs of the attention-transfer stage.
    teacher_epochs : int, optional
        Epochs of the EEG baseline (the teacher) where it is trained here (default ``epochs``).
    window_epochs : int
        Epochs per window.
    train_stride : int, optional
        Epochs between training window starts (default ``window_epochs``).
    out_dir : path-like
        Folder of the stage folders of this class set.
    device : torch.device
        Where to train.
    checkpoint_meta : callable
        ``checkpoint_meta(modality)``: ``channel``, ``inputs``, ``grouping`` and ``preprocess`` stored in
        the stage checkpoints.
    teacher : UTime, optional
        A trained EEG teacher to use instead of training ``eeg_baseline``.
    resume : bool
        Continue an interrupted stage from its saved state.
    loss_backend : {"fused", "reference"}
        Loss implementation.
    progress : bool
        Progress bars.
    name_prefix : str
        Prefix of the stage names in logs and progress bars.
    """

    def __init__(
        self,
        store: WindowStore,
        parts: Mapping[str, Sequence[str]],
        subjects: Mapping[str, str],
        *,
        grouping: str | StageGrouping,
        inputs: Mapping[str, Sequence[str]],
        new_model: Callable[[str], UTime],
        settings: TrainSettings,
        epochs: int,
        at_epochs: int,
        window_epochs: int,
        teacher_epochs: int | None = None,
        train_stride: int | None = None,
        out_dir: str | Path,
        device: torch.device,
        checkpoint_meta: Callable[[str], dict[str, Any]],
        teacher: UTime | None = None,
        resume: bool = False,
        loss_backend: str = "fused",
        progress: bool = True,
        name_prefix: str = "",
    ) -> None:
        missing = [p for p in PARTS if p not in parts]
        if missing:
            raise ValueError(f"the split has no {', '.join(missing)} part")
        self.store = store
        self.parts = {p: list(parts[p]) for p in PARTS}
        self.subjects = dict(subjects)
        self.grouping = get_grouping(grouping)
        self.inputs = {m: tuple(c) for m, c in inputs.items()}
        self.new_model = new_model
        self.settings = settings
        self.epochs = epochs
        self.at_epochs = at_epochs
        self.teacher_epochs = teacher_epochs if teacher_epochs is not None else epochs
        self.window_epochs = window_epochs
        self.train_stride = train_stride
        self.out_dir = Path(out_dir)
        self.device = device
        self.checkpoint_meta = checkpoint_meta
        self.resume = resume
        self.loss_backend = loss_backend
        self.progress = progress
        self.name_prefix = name_prefix
        self._datasets: dict[str, WindowDataset] = {}
        self._weights: torch.Tensor | None = None
        self._teacher = freeze(teacher, device) if teacher is not None else None
        self._at_step: dict[str, torch.Tensor] | None = None
        self._at_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------
    def dataset(self, part: str) -> WindowDataset:
        """Windows of one part: strided training windows, or evaluation windows covering every epoch."""
        if part not in self._datasets:
            self._datasets[part] = WindowDataset(
                self.store,
                self.parts[part],
                inputs=self.inputs,
                window_epochs=self.window_epochs,
                stride=self.train_stride if part == "train" else None,
                grouping=self.grouping,
                evaluation=part != "train",
            )
        return self._datasets[part]

    def class_weights(self) -> torch.Tensor:
        """WCE weights from the scored epochs of the training recordings."""
        if self._weights is None:
            self._weights = training_class_weights(
                self.store,
                self.parts["train"],
                self.grouping,
                source=f"training recordings of {self.out_dir} ({self.grouping.name})",
            )
        return self._weights

    @property
    def has_teacher(self) -> bool:
        """Whether the teacher is there already (given, or trained by an earlier call)."""
        return self._teacher is not None

    def teacher(self) -> UTime:
        """The frozen EEG teacher: the one given, or ``eeg_baseline`` trained now (once)."""
        if self._teacher is None:
            model, _ = self.train("eeg_baseline")
            self._teacher = freeze(model, self.device)
        return self._teacher

    # ------------------------------------------------------------------------------------------------
    def _stage_epochs(self, variant: Variant, shared_at: bool) -> int:
        """Epochs of one of ``variant``'s stages: the shared AT step, the EEG teacher, or any other stage."""
        if shared_at:
            return self.at_epochs
        return self.teacher_epochs if variant.name == "eeg_baseline" else self.epochs

    def train(
        self,
        variant: str | Variant,
        *,
        on_epoch_end: Callable[[int], None] | None = None,
        teacher: UTime | None = None,
    ) -> tuple[UTime, dict[str, Any]]:
        """Train (or reuse the finished stages of) a variant; returns the model and its stage summaries.

        ``teacher`` replaces the EEG teacher (the ``ecg_self`` control passes the frozen ECG baseline).
        """
        variant = variant if isinstance(variant, Variant) else get_variant(variant)
        if variant.name == "eeg_baseline" and self._teacher is not None:
            return self._teacher, {}
        if teacher is None and variant.uses_teacher:
            if not variant.needs_teacher:
                raise ValueError(f"variant {variant.name}: pass its teacher ({variant.teacher}) to train()")
            teacher = self.teacher()
        model = self.new_model(variant.modality)
        stages: dict[str, Any] = {}
        for stage in variant.stages:
            shared_at = stage == "at"
            owner = get_variant("at") if shared_at else variant
            folder = self.out_dir / ("at_step" if shared_at else variant.name) / stage
            label = (
                "at_step/at"
                if shared_at
                else f"{variant.name}/{stage}"
                if len(variant.stages) > 1
                else variant.name
            )
            spec = StageSpec(
                name=f"{self.name_prefix}{label}",
                kind=stage,
                modality=variant.modality,
                out_dir=folder,
                epochs=self._stage_epochs(variant, shared_at),
                weight_kd=variant.weight_kd if stage == "final" else 0.0,
                label_smoothing=variant.label_smoothing if stage == "final" else 0.0,
                teacher_modality=variant.teacher_modality,
                variant={
                    **owner.to_dict(),
                    "stage": stage,
                    "at_mode": self.settings.at_mode,
                    "temperature": self.settings.temperature,
                },
            )
            if shared_at and self._at_step is not None:
                model.load_state_dict(self._at_step)
                stages[stage] = dict(self._at_summary)
                continue
            # a later stage starts from the earlier one's weights: the same model object carries them over
            result = train_stage(
                spec,
                model,
                train_set=self.dataset("train"),
                val_set=self.dataset("val"),
                class_weights=self.class_weights(),
                teacher=teacher if (stage == "at" or spec.weight_kd > 0) else None,
                settings=self.settings,
                checkpoint_meta=self.checkpoint_meta(variant.modality),
                device=self.device,
                resume=self.resume,
                loss_backend=self.loss_backend,
                progress=self.progress,
                on_epoch_end=on_epoch_end,
                teacher_cache_dir=self.out_dir / "teacher-cache",
            )
            stages[stage] = {
                "best_epoch": result.best_epoch,
                result.score_name: result.score,
                "epochs_run": result.epochs_run,
            }
            if result.averaged is not None:
                # the stage returns averaged weights: its score is theirs; the best single epoch's beside it
                stages[stage]["averaged_epochs"] = result.averaged["epochs"]
                stages[stage][f"best_epoch_{result.score_name}"] = result.best_score
            if shared_at:
                self._at_step = copy.deepcopy(model.state_dict())
                self._at_summary = stages[stage]
        return model, stages

    def run(
        self,
        variant: str | Variant,
        *,
        on_epoch_end: Callable[[int], None] | None = None,
        teacher: UTime | None = None,
    ) -> VariantOutcome:
        """Train a variant (the teacher first when it needs one) and test it."""
        variant = variant if isinstance(variant, Variant) else get_variant(variant)
        started = time.perf_counter()
        model, stages = self.train(variant, on_epoch_end=on_epoch_end, teacher=teacher)
        if variant.name == "eeg_baseline" and self._teacher is None:
            self._teacher = freeze(model, self.device)
        outcome = self.evaluate(variant, model, stages)
        outcome.seconds = time.perf_counter() - started
        return outcome

    # ------------------------------------------------------------------------------------------------
    def evaluate(
        self,
        variant: str | Variant,
        model: UTime,
        stages: dict[str, Any] | None = None,
        *,
        part: str = "test",
    ) -> VariantOutcome:
        """Predict every epoch of the test recordings (or of another ``part`` of the split: ``"val"`` for
        choices made on validation) and score the scored ones, pooled and per subject."""
        variant = variant if isinstance(variant, Variant) else get_variant(variant)
        test_set = self.dataset(part)
        was_training = model.training
        _, window_preds = predict(
            model,
            test_set,
            variant.modality,
            self.device,
            batch_size=self.settings.batch_size,
            amp=self.settings.amp,
        )
        model.train(was_training)
        merged = test_set.merge(window_preds) if len(test_set) else {}
        labels: dict[str, np.ndarray] = {}
        predictions: dict[str, np.ndarray] = {}
        names = self.grouping.class_names
        accumulator = SubjectConfusion(len(names), list(names))
        for key in self.parts[part]:
            labels[key] = np.asarray(test_set.epoch_labels(key), dtype=np.int64)
            predictions[key] = merged.get(key, np.full(labels[key].shape, -1, dtype=np.int64))
            scored = (labels[key] >= 0) & (predictions[key] >= 0)
            if scored.any():
                subject = self.subjects.get(key, key)
                accumulator.update(
                    [subject] * int(scored.sum()), labels[key][scored], predictions[key][scored]
                )
        return VariantOutcome(
            variant=variant.name,
            grouping=self.grouping.name,
            metrics=accumulator.overall().compute(),
            per_subject=accumulator.compute(),
            labels=labels,
            predictions=predictions,
            stages=stages or {},
            model=model,
        )

    def test_features(
        self, model: UTime, modality: str, tap: str = "bottleneck"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, predictions and feature rows of the epochs each test window owns, in window order.

        Returns
        -------
        labels, predictions : ndarray, shape (n_owned_epochs,)
        features : ndarray, shape (n_owned_epochs, channels)
            The feature map ``tap`` averaged over each epoch; every covered test epoch appears once.
        """
        test_set = self.dataset("test")
        labels, preds, features = predict_features(
            model,
            test_set,
            modality,
            self.device,
            tap=tap,
            batch_size=self.settings.batch_size,
            amp=self.settings.amp,
        )
        owned = np.concatenate([test_set.owned(i) for i in range(len(test_set))] or [np.zeros(0, dtype=bool)])
        return labels.reshape(-1)[owned], preds.reshape(-1)[owned], features[owned]
