"""The one training loop behind every variant.

:func:`train_stage` trains one model for one stage:

* ``kind="final"`` -- the baselines and step 2: ``(1 - weight_kd) * WCE + weight_kd * T**2 * KL`` against
  the frozen teacher's logits (the teacher is only run when ``weight_kd > 0``); the best epoch is the one
  with the highest validation weighted F1.
* ``kind="at"`` -- step 1: attention transfer against the frozen teacher's feature maps; the best epoch is
  the one with the lowest validation AT loss (as the authors checkpoint it).

After every epoch the stage folder receives, atomically: ``log.csv`` (one row per epoch), ``state.pt``
(model, optimiser, RNG states, epoch, best score, early-stopping counter and the log), and ``best.pt`` (a
:mod:`~kdsleep.checkpoint` of the best epoch) when the score improved; ``done.json`` marks a finished
stage. With ``resume=True`` an interrupted stage continues from ``state.pt`` and ends with the same weights
as an uninterrupted run (the batch order depends only on the seed and the epoch number).

The teacher is frozen, so where its inputs are fixed (:func:`~kdsleep.distill.teacher_cache.teacher_inputs_are_fixed`:
no augmentation, no random windows) its attention maps and logits on the training windows are computed once
(:class:`~kdsleep.distill.teacher_cache.TeacherCache`, in ``teacher_cache_dir``, keyed by the teacher's
weights, the windows and the map settings) and every training step reads them back instead of running the
teacher (``TrainSettings.teacher_cache``; validation runs the live teacher). The losses agree with the live
teacher's within the cache's float16 tolerance (relative 1e-4 for the attention-transfer loss; logits exact).

The losses of a step and of a validation batch, with the teacher or its cache, are
:class:`~kdsleep.distill.stage_loss.StageLoss`; this module runs the epochs, validates, stops early and
keeps the files.

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``, every process trains on its shard of
the batches (``DistributedSampler``), validates on the whole validation set, and process 0 writes the files
(and builds the teacher cache, which the other processes open after a barrier).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from kdsleep._io import save_torch_atomic, write_json_atomic, write_text_atomic
from kdsleep._torch import dist_info, flush_denormals
from kdsleep.checkpoint import read_checkpoint_payload, save_checkpoint
from kdsleep.distill.config import LR_SCHEDULES, TrainConfig
from kdsleep.distill.stage_loss import StageLoss, barrier
from kdsleep.distill.teacher_cache import WithIndex
from kdsleep.evaluation.metrics import ConfusionMatrix, StagingMetrics
from kdsleep.models import UTime

__all__ = [
    "InterruptedStageError",
    "StageResult",
    "StageSpec",
    "TrainSettings",
    "train_stage",
]

logger = logging.getLogger(__name__)

STATE_FORMAT = "kdsleep-train-state"


class InterruptedStageError(FileExistsError):
    """A stage folder holds the state of an interrupted run and resuming was not asked for."""


@dataclass
class StageSpec:
    """One stage of a variant.

    Attributes
    ----------
    name : str
        For logs and progress bars, e.g. ``"at_cl/at"``.
    kind : {"final", "at"}
        Classification (WCE, optionally with distillation) or attention transfer.
    modality : {"eeg", "ecg"}
        The input the trained model reads.
    out_dir : Path
        Stage folder.
    epochs : int
        Training epochs.
    weight_kd : float
        Weight of the distillation term (``kind="final"``).
    variant : dict
        Stored in the checkpoints.
    label_smoothing : float
        Label-smoothing epsilon of the cross-entropy (``kind="final"`` with ``weight_kd = 0``).
    teacher_modality : {"eeg", "ecg"}
        The input the teacher reads (``"ecg"``: self-distillation from an ECG model).
    """

    name: str
    kind: str
    modality: str
    out_dir: Path
    epochs: int
    weight_kd: float = 0.0
    variant: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    teacher_modality: str = "eeg"


@dataclass(frozen=True)
class TrainSettings:
    """What :func:`train_stage` needs besides the stage itself: optimiser, batches, losses, stopping.

    Attributes
    ----------
    lr : float
        Adam learning rate.
    lr_schedule : {"constant", "cosine"}
        How the learning rate moves over a stage's epochs (:func:`epoch_lr`).
    batch_size : int
        Windows per batch.
    patience : int or None
        Stop after this many epochs without a better validation score; ``None`` runs every epoch.
    checkpoint_metric : {"weighted_f1", "macro_f1", "kappa"}
        Validation figure that picks a classification stage's best epoch (``val_<metric>``).
    seed : int
        Seed of the batch order and of the random subset of training windows.
    amp : bool
        bfloat16 autocast on CUDA.
    num_workers : int
        Data-loader worker processes.
    max_train_windows : int or None
        Training windows drawn per epoch (a fresh random subset each epoch); ``None`` uses all.
    ecg_rate_stretch : float
        Rate-stretch augmentation of an ECG student's training windows (:func:`kdsleep.distill.augment.rate_stretch`);
        0 leaves them as they are.
    average_epochs : int or None
        A classification stage returns the mean of its weights after each of its last ``average_epochs``
        epochs (:class:`WeightAverage`) instead of its best validation epoch; ``None`` returns the best epoch.
    at_mode, at_p, at_distance : str, float, str
        Attention-transfer loss (:class:`~kdsleep.distill.losses.FeatureLoss`).
    temperature, kl_reduction : float, str
        Softmax-distillation temperature and KL reduction (:class:`~kdsleep.distill.losses.FinalLoss`).
    teacher_cache : bool
        Read the frozen teacher's maps and logits from a :class:`~kdsleep.distill.teacher_cache.TeacherCache`
        built once for the training windows, where its inputs are fixed; ``False`` runs it every step.
    """

    lr: float = 1e-3
    lr_schedule: str = "constant"
    batch_size: int = 16
    patience: int | None = None
    checkpoint_metric: str = "weighted_f1"
    seed: int = 0
    amp: bool = False
    num_workers: int = 0
    max_train_windows: int | None = None
    ecg_rate_stretch: float = 0.0
    average_epochs: int | None = None
    at_mode: str = "canonical"
    at_p: float = 2.0
    at_distance: str = "squared_l2"
    temperature: float = 1.0
    kl_reduction: str = "row"
    teacher_cache: bool = True

    @classmethod
    def from_config(cls, config: TrainConfig) -> TrainSettings:
        """The settings a stage uses from a configuration's ``[training]`` and ``[distillation]`` sections."""
        training, distillation = config.training, config.distillation
        return cls(
            lr=training.lr,
            lr_schedule=training.lr_schedule,
            batch_size=training.batch_size,
            patience=training.patience,
            checkpoint_metric=training.checkpoint_metric,
            seed=training.seed,
            amp=training.amp,
            num_workers=training.num_workers,
            max_train_windows=training.max_train_windows,
            ecg_rate_stretch=training.ecg_rate_stretch,
            average_epochs=training.average_epochs,
            teacher_cache=training.teacher_cache,
            at_mode=distillation.at_mode,
            at_p=distillation.at_p,
            at_distance=distillation.at_distance,
            temperature=distillation.temperature,
            kl_reduction=distillation.kl_reduction,
        )


@dataclass
class StageResult:
    """Outcome of :func:`train_stage`: the best epoch and its validation figures.

    ``checkpoint`` holds the weights the stage returns: the best epoch's, or with weight averaging
    (``averaged`` set: the averaged epochs and the average's validation figures) the average's; ``score`` is
    the validation score of those weights.
    """

    best_epoch: int
    best_score: float
    score_name: str
    epochs_run: int
    checkpoint: Path
    history: list[dict[str, float]]
    averaged: dict[str, Any] | None = None

    @property
    def score(self) -> float:
        """Validation score of the returned weights (the average's where the stage averaged)."""
        if self.averaged is not None:
            return float(self.averaged[self.score_name])
        return self.best_score


class WeightAverage:
    """Running mean of a model's weights over the last ``count`` epochs of a stage of ``epochs`` epochs.

    Floating-point parameters and buffers (BatchNorm's running mean and variance included) are averaged;
    integer buffers (BatchNorm's batch counter) keep their latest value. The state is a plain dict
    (:meth:`state_dict`), saved with the stage's training state so an interrupted stage resumes its average.
    """

    def __init__(self, epochs: int, count: int) -> None:
        if count < 1:
            raise ValueError(f"weight averaging needs a positive number of epochs, got {count!r}")
        self.first_epoch = max(1, epochs - count + 1)
        self.epochs: list[int] = []
        self.total: dict[str, torch.Tensor] = {}

    def covers(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) is one of the averaged epochs."""
        return epoch >= self.first_epoch

    def add(self, epoch: int, model: nn.Module) -> None:
        """Add the model's weights after ``epoch``."""
        for name, value in model.state_dict().items():
            value = value.detach().to("cpu", copy=True)
            if value.is_floating_point():
                value = value.double()
                if name in self.total:
                    value += self.total[name]
            self.total[name] = value
        self.epochs.append(epoch)

    def mean(self) -> dict[str, torch.Tensor]:
        """The averaged state dict (float64; ``load_state_dict`` casts it to the model's dtypes)."""
        if not self.epochs:
            raise ValueError("no epoch has been averaged yet")
        return {
            name: value / len(self.epochs) if value.is_floating_point() else value
            for name, value in self.total.items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {"first_epoch": self.first_epoch, "epochs": list(self.epochs), "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_epoch, self.epochs, self.total = (
            state["first_epoch"],
            list(state["epochs"]),
            state["total"],
        )


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    # a stage resumed from an older version may lack the newer columns in its first rows
    columns = list(dict.fromkeys(key for row in history for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(path, out.getvalue())


class _TensorBoard:
    """TensorBoard scalars when the ``tensorboard`` package is installed; silently nothing otherwise."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.debug("tensorboard not installed; logging to CSV only")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _train_loader(
    dataset: Any,
    batch_size: int,
    seed: int,
    epoch: int,
    max_windows: int | None,
    num_workers: int,
    with_index: bool = False,
) -> DataLoader:
    rank, world = dist_info()
    if with_index:
        # items gain their window index (for the teacher cache) before any subset, same batch order
        dataset = WithIndex(dataset)
    if max_windows is not None and max_windows < len(dataset):
        # a fresh random subset every epoch, drawn from the seed and the epoch number only
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        subset = torch.randperm(len(dataset), generator=generator)[:max_windows]
        dataset = Subset(dataset, subset.tolist())
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=False
    )


def _load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the model, the optimiser and the RNG states of an interrupted stage; the rest of its state."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a kdsleep training state")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return state


def _save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, **progress: Any) -> None:
    """``state.pt`` after an epoch: what :func:`_load_state` needs to continue exactly where it stopped."""
    save_torch_atomic(
        path,
        {
            "format": STATE_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(),
            **progress,
        },
    )


def epoch_lr(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (1-based) of a stage of ``epochs`` epochs under ``schedule``.

    ``constant`` is ``lr`` throughout; ``cosine`` is ``lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2``: ``lr`` in
    the first epoch, falling towards zero after the last. It depends on the epoch alone, so a resumed stage
    continues the same curve without any scheduler state.
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    raise ValueError(
        f"unknown learning-rate schedule {schedule!r}; expected {' or '.join(repr(v) for v in LR_SCHEDULES)}"
    )


def _train_epoch(
    net: nn.Module, stage_loss: StageLoss, optimizer: torch.optim.Optimizer, batches: Any
) -> float:
    """One pass over the training batches (a progress bar over the loader); the mean batch loss."""
    net.train()
    total, count = 0.0, 0
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = stage_loss.train(batch, net)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        count += 1
        batches.set_postfix(loss=f"{total / count:.4f}")
    batches.close()
    return total / max(count, 1)


def _validation_figures(metrics: StagingMetrics, loss: float) -> dict[str, float]:
    """The validation figures an epoch's log row and the averaged weights' record carry."""
    return {
        "val_loss": loss,
        "val_weighted_f1": float(metrics.weighted_f1),
        "val_accuracy": float(metrics.accuracy),
        "val_kappa": float(metrics.cohen_kappa),
        "val_macro_f1": float(metrics.macro_f1),
    }


def _validate(
    model: UTime, stage_loss: StageLoss, val_set: Any, batch_size: int
) -> tuple[StagingMetrics, float]:
    """Metrics and mean loss over the validation windows (each scored epoch once)."""
    model.eval()
    confusion = ConfusionMatrix(model.n_outputs)
    total, count = 0.0, 0
    for batch in DataLoader(val_set, batch_size=batch_size, shuffle=False):
        logits, loss, labels = stage_loss.validate(batch)
        total += float(loss) * len(labels)
        count += len(labels)
        confusion.update(labels, logits.float())
    return confusion.compute(), total / max(count, 1)


def train_stage(
    spec: StageSpec,
    model: UTime,
    *,
    train_set: Any,
    val_set: Any,
    class_weights: torch.Tensor,
    teacher: UTime | None,
    settings: TrainSettings,
    checkpoint_meta: dict[str, Any],
    device: torch.device,
    resume: bool = False,
    loss_backend: str = "fused",
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    teacher_cache_dir: str | Path | None = None,
) -> StageResult:
    """Train ``model`` for one stage and leave it holding the best epoch's weights (or, with
    ``settings.average_epochs`` on a classification stage, the mean of its last epochs' weights).

    Parameters
    ----------
    spec : StageSpec
        What to train and where to write.
    model : UTime
        The model (already initialised, on any device; moved to ``device``).
    train_set, val_set : Dataset
        ``(eeg, ecg, labels)`` windows (:class:`~kdsleep.data.windows.WindowDataset`); the validation
        windows' labels count every epoch once (``evaluation=True``).
    class_weights : Tensor
        Weights of the cross-entropy, from the training split.
    teacher : UTime or None
        Frozen EEG teacher (needed for ``kind="at"`` and ``weight_kd > 0``).
    settings : TrainSettings
        Optimiser, batches, losses and early stopping.
    checkpoint_meta : dict
        ``channel``, ``grouping`` and ``preprocess`` for :func:`save_checkpoint`.
    device : torch.device
        Where to train.
    resume : bool
        Continue from ``state.pt`` of an interrupted run; otherwise an existing state is an error. A finished
        stage (``done.json``) is always reused.
    loss_backend : {"fused", "reference"}
        Loss implementation.
    progress : bool
        Show progress bars.
    on_epoch_end : callable, optional
        Called with the epoch number after its state is saved (used by tests to interrupt a run).
    teacher_cache_dir : path-like, optional
        Folder of teacher caches (default ``<stage folder>/teacher-cache``); caches of different teachers or
        windows live side by side in it under their key digests.
    """
    rank, world = dist_info()
    out = Path(spec.out_dir)
    state_path, best_path, done_path, log_path, averaged_path = (
        out / n for n in ("state.pt", "best.pt", "done.json", "log.csv", "averaged.pt")
    )
    if spec.kind not in ("final", "at"):
        raise ValueError(f"stage kind must be 'final' or 'at', got {spec.kind!r}")
    if (spec.kind == "at" or spec.weight_kd > 0) and teacher is None:
        raise ValueError(f"stage {spec.name}: needs the EEG teacher")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(
            f"stage {spec.name}: {len(train_set)} training and {len(val_set)} validation windows; both parts "
            f"of the split need recordings at least one window long"
        )
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    maximise = spec.kind == "final"
    score_name = f"val_{settings.checkpoint_metric}" if maximise else "val_at_loss"

    if done_path.exists():
        done = json.loads(done_path.read_text(encoding="utf-8"))
        if done.get("score", score_name) != score_name:
            raise ValueError(
                f"{done_path}: this stage chose its best epoch by {done['score']}, the configuration asks for "
                f"{score_name}; use a new run folder (or the stage's original checkpoint_metric)"
            )
        averaged = done.get("averaged")
        returned = averaged_path if averaged is not None else best_path
        model.load_state_dict(read_checkpoint_payload(returned)["state_dict"])
        logger.info(
            "%s: already finished (best epoch %d), reusing %s", spec.name, done["best_epoch"], returned
        )
        return StageResult(
            done["best_epoch"],
            done["best_score"],
            score_name,
            done["epochs_run"],
            returned,
            done.get("history", []),
            averaged,
        )

    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start_epoch, best_score, best_epoch, bad_epochs = 1, -math.inf if maximise else math.inf, 0, 0
    history: list[dict[str, float]] = []
    average = (
        WeightAverage(spec.epochs, settings.average_epochs)
        if spec.kind == "final" and settings.average_epochs
        else None
    )
    if state_path.exists():
        if not resume:
            raise InterruptedStageError(
                f"{out}: holds an interrupted run (state.pt); resume it or choose another run folder"
            )
        state = _load_state(state_path, model, optimizer)
        start_epoch = state["epoch"] + 1
        best_score, best_epoch, bad_epochs, history = (
            state["best_score"],
            state["best_epoch"],
            state["bad_epochs"],
            state["history"],
        )
        if average is not None:
            if state.get("average") is None:
                raise InterruptedStageError(
                    f"{out}: the interrupted run (state.pt) did not average weights; resume it with the "
                    f"configuration it was started with, or choose another run folder"
                )
            average.load_state_dict(state["average"])
        logger.info("%s: resuming after epoch %d", spec.name, state["epoch"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    inner = model
    net: nn.Module = model
    if world > 1:
        # step 1 leaves the classifier unused (its output is not part of the AT loss)
        net = nn.parallel.DistributedDataParallel(
            inner,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=spec.kind == "at",
        )
    board = _TensorBoard(out / "tensorboard", enabled=rank == 0)
    stage_loss = StageLoss.build(
        spec,
        inner,
        teacher=teacher,
        class_weights=class_weights,
        settings=settings,
        device=device,
        train_set=train_set,
        cache_dir=Path(teacher_cache_dir) if teacher_cache_dir is not None else out / "teacher-cache",
        loss_backend=loss_backend,
        progress=progress,
    )

    epoch = start_epoch - 1
    denormals = flush_denormals()
    denormals.__enter__()
    try:
        for epoch in range(start_epoch, spec.epochs + 1):
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr(settings.lr, settings.lr_schedule, epoch, spec.epochs)
            loader = _train_loader(
                train_set,
                settings.batch_size,
                settings.seed,
                epoch,
                settings.max_train_windows,
                settings.num_workers,
                with_index=stage_loss.cache is not None,
            )
            bar = tqdm(
                loader,
                desc=f"{spec.name} {epoch}/{spec.epochs}",
                unit="batch",
                leave=False,
                disable=not progress or rank != 0,
            )
            train_loss = _train_epoch(net, stage_loss, optimizer, bar)
            # validation on the whole validation set in every process (no sharding, exact figures)
            metrics, val_loss = _validate(inner, stage_loss, val_set, settings.batch_size)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                **_validation_figures(metrics, val_loss),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": time.perf_counter() - started,
            }
            history.append(row)
            score = row[score_name] if maximise else row["val_loss"]
            improved = (score > best_score) if maximise else (score < best_score)
            if not math.isfinite(score):
                improved = False
            if improved:
                best_score, best_epoch, bad_epochs = score, epoch, 0
            else:
                bad_epochs += 1
            if rank == 0:
                if improved:
                    save_checkpoint(
                        best_path,
                        inner,
                        modality=spec.modality,
                        variant=spec.variant,
                        metrics={
                            "epoch": epoch,
                            score_name: score,
                            "val_weighted_f1": row["val_weighted_f1"],
                            "val_accuracy": row["val_accuracy"],
                        },
                        **checkpoint_meta,
                    )
                _write_log(log_path, history)
                board.log(row)
            if average is not None and average.covers(epoch):
                average.add(epoch, inner)
            if rank == 0:
                _save_state(
                    state_path,
                    inner,
                    optimizer,
                    epoch=epoch,
                    best_score=best_score,
                    best_epoch=best_epoch,
                    bad_epochs=bad_epochs,
                    history=history,
                    average=average.state_dict() if average is not None else None,
                )
            barrier()
            logger.info(
                "%s epoch %d/%d: train loss %.4f, val loss %.4f, val weighted F1 %.3f%s%s",
                spec.name,
                epoch,
                spec.epochs,
                row["train_loss"],
                row["val_loss"],
                row["val_weighted_f1"],
                "" if score_name in ("val_weighted_f1", "val_at_loss") else f", {score_name} {score:.3f}",
                " (best)" if improved else "",
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if settings.patience is not None and bad_epochs >= settings.patience:
                logger.info(
                    "%s: no better %s for %d epochs, stopping early", spec.name, score_name, bad_epochs
                )
                break
    finally:
        board.close()
        denormals.__exit__(None, None, None)

    averaged = None
    returned = best_path
    if average is not None and average.epochs:
        inner.load_state_dict(average.mean())
        metrics, val_loss = _validate(inner, stage_loss, val_set, settings.batch_size)
        averaged = {
            "epochs": [average.epochs[0], average.epochs[-1]],
            **_validation_figures(metrics, val_loss),
        }
        returned = averaged_path
        if rank == 0:
            save_checkpoint(
                averaged_path,
                inner,
                modality=spec.modality,
                variant=spec.variant,
                metrics={"averaged_epochs": averaged["epochs"], score_name: averaged[score_name]},
                **checkpoint_meta,
            )
        logger.info(
            "%s: weights averaged over epochs %d-%d: val weighted F1 %.3f (best single epoch %d: %.3f)",
            spec.name,
            *averaged["epochs"],
            averaged["val_weighted_f1"],
            best_epoch,
            best_score,
        )
    else:
        if average is not None:
            logger.warning(
                "%s: stopped before epoch %d, the first to average; returning the best epoch",
                spec.name,
                average.first_epoch,
            )
        inner.load_state_dict(read_checkpoint_payload(best_path, map_location=device)["state_dict"])
    if rank == 0:
        write_json_atomic(
            done_path,
            {
                "best_epoch": best_epoch,
                "best_score": best_score,
                "score": score_name,
                "epochs_run": len(history),
                "history": history,
                **({"averaged": averaged} if averaged is not None else {}),
            },
        )
    barrier()
    return StageResult(best_epoch, best_score, score_name, len(history), returned, history, averaged)
