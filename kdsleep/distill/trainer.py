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
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from kdsleep._io import save_torch_atomic, write_json_atomic, write_text_atomic
from kdsleep._torch import dist_info, flush_denormals
from kdsleep.checkpoint import read_checkpoint_payload, save_checkpoint
from kdsleep.distill.config import TrainConfig
from kdsleep.distill.losses import FeatureLoss, FinalLoss
from kdsleep.distill.teacher_cache import (
    TeacherCache,
    TeacherCacheKey,
    WithIndex,
    attention_transfer_from_maps,
    teacher_inputs_are_fixed,
)
from kdsleep.evaluation.metrics import ConfusionMatrix
from kdsleep.models import FeatureTaps, UTime

__all__ = [
    "InterruptedStageError",
    "StageResult",
    "StageSpec",
    "TrainSettings",
    "predict",
    "predict_features",
    "train_stage",
]

logger = logging.getLogger(__name__)

STATE_FORMAT = "kdsleep-train-state"


class InterruptedStageError(FileExistsError):
    """A stage folder holds the state of an interrupted run and resuming was not asked for."""


def _barrier() -> None:
    if dist_info()[1] > 1:
        torch.distributed.barrier()


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
    batch_size : int
        Windows per batch.
    patience : int or None
        Stop after this many epochs without a better validation score; ``None`` runs every epoch.
    seed : int
        Seed of the batch order and of the random subset of training windows.
    amp : bool
        bfloat16 autocast on CUDA.
    num_workers : int
        Data-loader worker processes.
    max_train_windows : int or None
        Training windows drawn per epoch (a fresh random subset each epoch); ``None`` uses all.
    at_mode, at_p, at_distance : str, float, str
        Attention-transfer loss (:class:`~kdsleep.distill.losses.FeatureLoss`).
    temperature, kl_reduction : float, str
        Softmax-distillation temperature and KL reduction (:class:`~kdsleep.distill.losses.FinalLoss`).
    teacher_cache : bool
        Read the frozen teacher's maps and logits from a :class:`~kdsleep.distill.teacher_cache.TeacherCache`
        built once for the training windows, where its inputs are fixed; ``False`` runs it every step.
    """

    lr: float = 1e-3
    batch_size: int = 16
    patience: int | None = None
    seed: int = 0
    amp: bool = False
    num_workers: int = 0
    max_train_windows: int | None = None
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
            batch_size=training.batch_size,
            patience=training.patience,
            seed=training.seed,
            amp=training.amp,
            num_workers=training.num_workers,
            max_train_windows=training.max_train_windows,
            teacher_cache=training.teacher_cache,
            at_mode=distillation.at_mode,
            at_p=distillation.at_p,
            at_distance=distillation.at_distance,
            temperature=distillation.temperature,
            kl_reduction=distillation.kl_reduction,
        )


@dataclass
class StageResult:
    """Outcome of :func:`train_stage`: the best epoch and its validation figures."""

    best_epoch: int
    best_score: float
    score_name: str
    epochs_run: int
    checkpoint: Path
    history: list[dict[str, float]]


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _inputs(
    batch: tuple, modality: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    eeg, ecg, labels = batch
    x = eeg if modality == "eeg" else ecg
    return (
        x.to(device, non_blocking=True),
        eeg.to(device, non_blocking=True),
        labels.to(device, non_blocking=True),
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
    columns = list(history[0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
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
            x, _, labels = _inputs(batch, modality, device)
            with _autocast(device, amp):
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


def _teacher_cache(
    teacher: UTime,
    train_set: Any,
    folder: Path,
    settings: TrainSettings,
    device: torch.device,
    progress: bool,
) -> TeacherCache:
    """Build (process 0) or open (the others, after a barrier) the teacher cache of the training windows."""
    rank, world = dist_info()
    key = TeacherCacheKey.for_run(teacher, train_set, p=settings.at_p)
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
        )
    _barrier()
    if cache is None:
        cache = TeacherCache.open(folder, key, verify=False)
    return cache


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
    """Train ``model`` for one stage and leave it holding the best epoch's weights.

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
    state_path, best_path, done_path, log_path = (
        out / n for n in ("state.pt", "best.pt", "done.json", "log.csv")
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
    score_name = "val_weighted_f1" if maximise else "val_at_loss"

    if done_path.exists():
        done = json.loads(done_path.read_text(encoding="utf-8"))
        model.load_state_dict(read_checkpoint_payload(best_path)["state_dict"])
        logger.info(
            "%s: already finished (best epoch %d), reusing %s", spec.name, done["best_epoch"], best_path
        )
        return StageResult(
            done["best_epoch"],
            done["best_score"],
            score_name,
            done["epochs_run"],
            best_path,
            done.get("history", []),
        )

    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start_epoch, best_score, best_epoch, bad_epochs = 1, -math.inf if maximise else math.inf, 0, 0
    history: list[dict[str, float]] = []
    if state_path.exists():
        if not resume:
            raise InterruptedStageError(
                f"{out}: holds an interrupted run (state.pt); resume it or choose another run folder"
            )
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{state_path}: not a kdsleep training state")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        best_score, best_epoch, bad_epochs, history = (
            state["best_score"],
            state["best_epoch"],
            state["bad_epochs"],
            state["history"],
        )
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
    final_loss = FinalLoss(
        class_weights,
        spec.weight_kd,
        settings.temperature,
        backend=loss_backend,
        kl_reduction=settings.kl_reduction,
        label_smoothing=spec.label_smoothing,
    )
    at_weights = inner.joshi_tap_weights() if settings.at_mode == "joshi" else None
    feature_loss = FeatureLoss(
        at_weights, settings.at_mode, settings.at_p, settings.at_distance, backend=loss_backend
    )
    use_teacher_logits = spec.kind == "final" and spec.weight_kd > 0
    amp = bool(settings.amp)
    board = _TensorBoard(out / "tensorboard", enabled=rank == 0)

    # only used by the stages that need it (checked above)
    frozen = cast(UTime, teacher)
    cache: TeacherCache | None = None
    if (spec.kind == "at" or use_teacher_logits) and settings.teacher_cache:
        if teacher_inputs_are_fixed(train_set, teacher=frozen):
            folder = Path(teacher_cache_dir) if teacher_cache_dir is not None else out / "teacher-cache"
            cache = _teacher_cache(frozen, train_set, folder, settings, device, progress)
            logger.info("%s: teacher outputs read from %s", spec.name, cache.root)
        else:
            logger.info(
                "%s: the teacher's training inputs are not fixed (augmentation or random windows); "
                "running the live teacher every step",
                spec.name,
            )
    at_distance = {"squared_mean": "squared"}.get(settings.at_distance, settings.at_distance)

    def cached_step_loss(batch: tuple, net: nn.Module) -> torch.Tensor:
        assert cache is not None
        eeg, ecg, labels, index = batch
        x = (eeg if spec.modality == "eeg" else ecg).to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        teacher_maps, teacher_logits = cache.lookup(
            index, device=device, mode=settings.at_mode, maps=spec.kind == "at"
        )
        with _autocast(device, amp):
            if spec.kind == "at":
                with FeatureTaps(inner, inner.tap_names) as taps:
                    net(x)
                return attention_transfer_from_maps(
                    [m.float() for m in taps.features],
                    teacher_maps,
                    p=settings.at_p,
                    distance=at_distance,
                    weights=at_weights,
                    mode=settings.at_mode,
                    backend="fused" if loss_backend == "fused" else "torch",
                )
            return final_loss(net(x), labels, teacher_logits)

    def step_loss(batch: tuple, net: nn.Module) -> torch.Tensor:
        if cache is not None:
            return cached_step_loss(batch, net)
        x, eeg, labels = _inputs(batch, spec.modality, device)
        with _autocast(device, amp):
            if spec.kind == "at":
                with torch.no_grad():
                    _, teacher_maps = frozen.features(eeg, detach=True)
                with FeatureTaps(inner, inner.tap_names) as taps:
                    net(x)
                return feature_loss(taps.features, teacher_maps)
            teacher_logits = None
            if use_teacher_logits:
                with torch.no_grad():
                    teacher_logits = frozen(x if spec.teacher_modality == "ecg" else eeg)
            return final_loss(net(x), labels, teacher_logits)

    epoch = start_epoch - 1
    denormals = flush_denormals()
    denormals.__enter__()
    try:
        for epoch in range(start_epoch, spec.epochs + 1):
            started = time.perf_counter()
            net.train()
            loader = _train_loader(
                train_set,
                settings.batch_size,
                settings.seed,
                epoch,
                settings.max_train_windows,
                settings.num_workers,
                with_index=cache is not None,
            )
            total, count = 0.0, 0
            bar = tqdm(
                loader,
                desc=f"{spec.name} {epoch}/{spec.epochs}",
                unit="batch",
                leave=False,
                disable=not progress or rank != 0,
            )
            for batch in bar:
                optimizer.zero_grad(set_to_none=True)
                loss = step_loss(batch, net)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                count += 1
                bar.set_postfix(loss=f"{total / count:.4f}")
            bar.close()

            # validation on the whole validation set in every process (no sharding, exact figures)
            inner.eval()
            confusion = ConfusionMatrix(inner.n_outputs)
            val_total, val_count = 0.0, 0
            with torch.no_grad():
                for batch in DataLoader(val_set, batch_size=settings.batch_size, shuffle=False):
                    x, eeg, labels = _inputs(batch, spec.modality, device)
                    with _autocast(device, amp):
                        if spec.kind == "at":
                            _, teacher_maps = frozen.features(eeg, detach=True)
                            logits, student_maps = inner.features(x)
                            loss = feature_loss(student_maps, teacher_maps)
                        else:
                            logits = inner(x)
                            loss = final_loss(logits, labels, frozen(eeg) if use_teacher_logits else None)
                    val_total += float(loss) * len(labels)
                    val_count += len(labels)
                    confusion.update(labels, logits.float())
            metrics = confusion.compute()
            row = {
                "epoch": epoch,
                "train_loss": total / max(count, 1),
                "val_loss": val_total / max(val_count, 1),
                "val_weighted_f1": float(metrics.weighted_f1),
                "val_accuracy": float(metrics.accuracy),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": time.perf_counter() - started,
            }
            history.append(row)
            score = row["val_weighted_f1"] if maximise else row["val_loss"]
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
                save_torch_atomic(
                    state_path,
                    {
                        "format": STATE_FORMAT,
                        "epoch": epoch,
                        "model": inner.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(),
                        "best_score": best_score,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                    },
                )
            _barrier()
            logger.info(
                "%s epoch %d/%d: train loss %.4f, val loss %.4f, val weighted F1 %.3f%s",
                spec.name,
                epoch,
                spec.epochs,
                row["train_loss"],
                row["val_loss"],
                row["val_weighted_f1"],
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
            },
        )
    _barrier()
    return StageResult(best_epoch, best_score, score_name, len(history), best_path, history)
