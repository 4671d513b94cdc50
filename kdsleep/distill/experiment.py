"""The distillation pipeline: data, split, teacher, variants, test evaluation and the Table I / II report.

A :class:`Pipeline` owns one run folder::

    RUN_DIR/
      config.json             resolved TrainConfig, kdsleep version, git commit, command line
      split.json              subject-wise split (reusable with --split)
      <grouping>/             one folder per class set (w-l-d-r, w-n-r, aasm-5)
        eeg_baseline/         the EEG teacher (it is the EEG baseline of the tables)
          final/              stage folder: best.pt, state.pt, log.csv, done.json
          model.pt            best checkpoint with its test metrics
          test.json           test metrics, pooled and per subject (every scored epoch of every test night)
          predictions.npz     test labels and predicted classes per epoch (recording, epoch index)
        at_step/at/           attention-transfer step 1, shared by at_cl and at_sd_cl
        at_cl/final/, sd_cl/final/, ...
        ecg_ls/eps-0.05/final/, ...   the label-smoothing control, one training per epsilon (best on validation)
        ecg_self/final/       the self-distillation control, taught by ecg_baseline/model.pt
      report.md, report.json  Table I / Table II with paired per-subject comparisons

With several training seeds (:func:`kdsleep.distill.seeds.run_seeds`, ``kdsleep experiment --seeds N``) each seed has such a folder,
``RUN_DIR/seed-<s>/``, with ``outcomes.json`` once all its variants are done, and ``RUN_DIR/report.md`` /
``report.json`` summarise all seeds (:func:`kdsleep.distill.seeds.write_seeds_run_report`).

Each class set is run by a :class:`~kdsleep.distill.runner.Runner` over the preprocessed cache: the teacher
is trained first (or loaded with ``teacher_checkpoint``), frozen, and shared by every variant of the run; all
variants use the same split.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsleep._io import atomic_write, git_commit, kdsleep_version, write_json_atomic
from kdsleep._torch import dist_info, resolve_device
from kdsleep.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from kdsleep.data.cache import PreprocessedCache, build_cache
from kdsleep.data.preprocess import DERIVED_CHANNELS, PreprocessConfig, channel_request, dataset_entries
from kdsleep.data.stages import get_grouping
from kdsleep.data.synthetic import generate_synthetic_psg
from kdsleep.data.windows import WindowDataset
from kdsleep.distill.config import ECG_INPUTS, ConfigError, TrainConfig, flatten_config_dict
from kdsleep.distill.runner import Runner, VariantOutcome
from kdsleep.distill.split import SubjectSplit, load_split, split_subjects
from kdsleep.distill.trainer import TrainSettings
from kdsleep.distill.variants import TABLE_VARIANTS, Variant, get_variant
from kdsleep.evaluation.compare import paired_comparison
from kdsleep.evaluation.metrics import metric_by_subject
from kdsleep.evaluation.report import VariantResult, write_report
from kdsleep.models import UTime

__all__ = [
    "MissingDataDirError",
    "Pipeline",
    "RunFolderError",
    "VariantOutcome",
    "kdsleep_home",
    "prepare_synthetic",
]

logger = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """A run folder made with another configuration than the one given."""


class MissingDataDirError(ValueError):
    """A dataset other than the synthetic one without its data folder."""


def kdsleep_home() -> Path:
    """Folder for generated data and caches: ``$KDSLEEP_HOME``, default ``~/.cache/kdsleep``."""
    return Path(os.environ.get("KDSLEEP_HOME") or Path.home() / ".cache" / "kdsleep")


def prepare_synthetic(config: TrainConfig, progress: bool = True) -> Path:
    """Generate the synthetic dataset of ``config`` once; later calls reuse it (a marker file says it is whole)."""
    data_dir = (
        Path(config.data.data_dir)
        if config.data.data_dir
        else kdsleep_home()
        / (
            f"synthetic-{config.data.synthetic_subjects}x{config.data.synthetic_hours:g}h-{config.data.synthetic_sfreq:g}Hz-seed0"
        )
    )
    marker = data_dir / ".kdsleep-synthetic-complete"
    if marker.exists():
        logger.info("reusing synthetic data in %s", data_dir)
        return data_dir
    logger.info("generating %d synthetic nights in %s", config.data.synthetic_subjects, data_dir)
    # the dataset has its own fixed seed: changing the training seed must not change the data
    generate_synthetic_psg(
        data_dir,
        n_subjects=config.data.synthetic_subjects,
        hours=config.data.synthetic_hours,
        seed=0,
        sfreq=config.data.synthetic_sfreq,
        progress=progress,
    )
    marker.write_text("complete\n", encoding="utf-8")
    return data_dir


class Pipeline:
    """Data, split and teacher of one run, and the variants trained on them.

    Parameters
    ----------
    config : TrainConfig
        The resolved configuration.
    run_dir : path-like
        Run folder.
    resume : bool
        Continue an interrupted stage in ``run_dir`` from its saved state (finished stages are always reused).
    teacher_checkpoint : path-like, optional
        Use this EEG model as the teacher instead of training one.
    progress : bool
        Progress bars.
    loss_backend : {"fused", "reference"}
        Loss implementation.
    command : list of str, optional
        Recorded in ``config.json``.
    record : bool
        Write ``config.json`` and ``split.json`` (``False`` to re-evaluate a finished run as it is).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike[str],
        *,
        resume: bool = False,
        teacher_checkpoint: str | os.PathLike[str] | None = None,
        progress: bool = True,
        loss_backend: str = "fused",
        command: Sequence[str] | None = None,
        record: bool = True,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.teacher_checkpoint = Path(teacher_checkpoint) if teacher_checkpoint else None
        self.progress = progress
        self.loss_backend = loss_backend
        self.command = list(command if command is not None else sys.argv)
        self.record = record
        if config.training.num_threads:
            torch.set_num_threads(config.training.num_threads)
        self._init_distributed()
        self.rank, self.world = dist_info()
        self.device = resolve_device(config.training.device)
        self._runners: dict[str, Runner] = {}
        self._setup()

    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def _init_distributed() -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend=backend)

    def _rank_zero_first(self, fn):
        # data preparation writes files: process 0 does it, the others then read the result
        if self.rank == 0:
            result = fn()
        if self.world > 1:
            torch.distributed.barrier()
        if self.rank != 0:
            result = fn()
        return result

    def _setup(self) -> None:
        config = self.config
        self._check_run_dir()
        if config.data.dataset == "synthetic":
            data_dir = self._rank_zero_first(
                lambda: prepare_synthetic(config, self.progress and self.rank == 0)
            )
        else:
            if not config.data.data_dir:
                raise MissingDataDirError(
                    f"dataset {config.data.dataset!r} needs the folder with its recordings (data_dir)"
                )
            data_dir = Path(config.data.data_dir)
        self.data_dir = data_dir
        entries = dataset_entries(config.data.dataset, data_dir)
        specs = tuple(
            (name, spec)
            for name, spec in (("eeg", config.data.eeg_channel), ("ecg", config.data.ecg_channel))
            if spec
        )
        #: stored channels each modality's model reads
        self.inputs = {"eeg": ("eeg",), "ecg": ECG_INPUTS[config.data.ecg_input]}
        derived = tuple(c for c in self.inputs["ecg"] if c in DERIVED_CHANNELS)
        self.preprocess = PreprocessConfig(
            channels=("eeg", "ecg", *derived),
            channel_specs=specs or None,
            modalities=(("eeg", "eeg"), ("ecg", "ecg"), *((name, "hr") for name in derived)),
            sfreq=config.data.sfreq,
            eeg_band=(config.data.eeg_band[0], config.data.eeg_band[1]),
            ecg_band=(config.data.ecg_band[0], config.data.ecg_band[1]),
            stage_grouping=config.data.grouping,
        )
        request = channel_request(self.preprocess, entries[0])
        #: the channel each modality reads, as recorded in checkpoints: the name asked for, or -- when the
        #: dataset's default candidates were used -- the pipeline's own name (``"ecg"``, ``"eeg"``), which
        #: prediction resolves through the same default candidates
        self.channels = {name: spec if isinstance(spec, str) else name for name, spec in request.items()}
        self.channel_candidates = {
            name: [spec] if isinstance(spec, str) else list(spec) for name, spec in request.items()
        }
        cache_dir = (
            Path(config.data.cache_dir) if config.data.cache_dir else self._default_cache_dir(data_dir)
        )

        def build() -> Path:
            try:
                return build_cache(
                    entries, cache_dir, self.preprocess, progress=self.progress and self.rank == 0
                )
            except (KeyError, ValueError, FileNotFoundError) as err:
                raise ValueError(
                    f"{data_dir}: preprocessing failed (channels requested: EEG "
                    f"{self.channel_candidates['eeg']}, ECG {self.channel_candidates['ecg']}): {err}"
                ) from err

        self.cache = PreprocessedCache(self._rank_zero_first(build))
        subjects = {key: str(self.cache.meta(key).get("subject") or key) for key in self.cache.keys}
        self.split = self._rank_zero_first(lambda: self._make_split(subjects))
        if self.rank == 0 and self.record:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.split.save(self.run_dir / "split.json")
            write_json_atomic(
                self.run_dir / "config.json",
                {
                    "config": config.to_dict(),
                    "preprocess": self.preprocess.to_dict(),
                    "channels": self.channels,
                    "channel_candidates": self.channel_candidates,
                    "data_dir": str(data_dir),
                    "cache": str(self.cache.root),
                    "teacher_checkpoint": str(self.teacher_checkpoint) if self.teacher_checkpoint else None,
                    "device": str(self.device),
                    "world_size": self.world,
                    "kdsleep_version": kdsleep_version(),
                    "git_commit": git_commit(),
                    "torch_version": torch.__version__,
                    "command": self.command,
                },
            )

    #: Fields that may change between calls on the same run folder (they do not change the results).
    _VOLATILE = ("device", "num_workers", "num_threads", "split_file", "data_dir", "cache_dir")

    def _check_run_dir(self) -> None:
        """A run folder is reused only with the configuration it was made with (finished stages are kept)."""
        path = self.run_dir / "config.json"
        if not path.exists():
            return
        saved_values = json.loads(path.read_text(encoding="utf-8")).get("config", {})
        try:
            saved = flatten_config_dict(saved_values, source=str(path))
        except ConfigError as err:
            raise RunFolderError(f"{err}; choose another run folder") from None
        # keys added to the configuration after the folder was made take their defaults, which keep the
        # behaviour the folder was trained with
        saved = {**TrainConfig().flat(), **saved}
        current = self.config.flat()
        changed = [
            f"{key} ({saved.get(key)!r} there, {current[key]!r} now)"
            for key in current
            if key not in self._VOLATILE and saved.get(key) != current[key]
        ]
        if changed:
            raise RunFolderError(
                f"{self.run_dir}: this run folder was made with another configuration: {'; '.join(changed[:4])}; "
                f"choose another run folder (or use the same settings to add variants to it)"
            )

    @staticmethod
    def _default_cache_dir(data_dir: Path) -> Path:
        if os.access(data_dir, os.W_OK):
            return data_dir / ".kdsleep-cache"
        return kdsleep_home() / "cache"

    def _make_split(self, subjects: dict[str, str]) -> SubjectSplit:
        config = self.config
        path: str | Path | None = config.data.split_file
        if path is None and (self.run_dir / "split.json").exists():
            path = self.run_dir / "split.json"
        if path is not None:
            split = load_split(path)
            split.check_available(self.cache.keys, str(path))
            return split
        return split_subjects(
            subjects,
            fractions=config.data.split_fractions,
            seed=config.training.seed,
            source=f"{self.data_dir}",
        )

    # ------------------------------------------------------------------------------------------------
    def runner(self, grouping: str) -> Runner:
        """The :class:`~kdsleep.distill.runner.Runner` of one class set (teacher, variants, test)."""
        grouping = get_grouping(grouping).name
        if grouping not in self._runners:
            config = self.config
            teacher = self._load_teacher(grouping) if self.teacher_checkpoint is not None else None
            subjects = {key: str(self.cache.meta(key).get("subject") or key) for key in self.cache.keys}
            self._runners[grouping] = Runner(
                self.cache,
                {part: self.split.keys(part) for part in ("train", "val", "test")},
                subjects,
                grouping=grouping,
                inputs=self.inputs,
                new_model=lambda modality: self.new_model(grouping, modality),
                settings=TrainSettings.from_config(config),
                epochs=config.training.epochs,
                at_epochs=config.training.at_epochs or config.training.epochs,
                teacher_epochs=config.training.teacher_epochs,
                window_epochs=config.model.window_epochs,
                out_dir=self.run_dir / grouping,
                device=self.device,
                checkpoint_meta=lambda modality: self._meta(modality, grouping),
                teacher=teacher,
                resume=self.resume,
                loss_backend=self.loss_backend,
                progress=self.progress,
            )
        return self._runners[grouping]

    def dataset(self, part: str, grouping: str) -> WindowDataset:
        """Windows of one split part for one class set (validation and test: every epoch, counted once)."""
        dataset = self.runner(grouping).dataset(part)
        if len(dataset) == 0:
            raise ValueError(
                f"the {part!r} part of the split ({len(self.split.subjects[part])} subjects) has no window of "
                f"{self.config.model.window_epochs} epochs with a scored epoch"
            )
        return dataset

    def class_weights(self, grouping: str) -> torch.Tensor:
        """WCE weights ``N / (K n_k)`` from the scored epochs of the training recordings."""
        return self.runner(grouping).class_weights()

    def new_model(self, grouping: str, modality: str = "ecg") -> UTime:
        """A freshly initialised U-Time (seeded) for ``grouping`` reading ``modality``'s input channels."""
        torch.manual_seed(self.config.training.seed)
        return UTime(
            len(self.inputs[modality]),
            get_grouping(grouping).n_classes,
            sfreq=self.config.data.sfreq,
            n_epochs=self.config.model.window_epochs,
            pools=self.config.model.pools,
            filters=self.config.model.filters,
        )

    def _meta(self, modality: str, grouping: str) -> dict[str, Any]:
        return {
            "channel": self.channels[modality],
            "inputs": list(self.inputs[modality]),
            "grouping": grouping,
            "preprocess": self.preprocess.to_dict(),
        }

    # ------------------------------------------------------------------------------------------------
    def teacher(self, grouping: str) -> UTime:
        """The frozen EEG teacher of ``grouping``: loaded from ``teacher_checkpoint`` or trained (EEG baseline).

        A teacher trained here is the EEG baseline of the tables: it is tested and saved like any variant.
        """
        runner = self.runner(grouping)
        if not runner.has_teacher:
            self.run_variant("eeg_baseline", grouping)
        return runner.teacher()

    def _load_teacher(self, grouping: str) -> UTime:
        path = self.teacher_checkpoint
        assert path is not None
        checkpoint = load_checkpoint(path)
        try:
            checkpoint.check_compatible(grouping=grouping, modality="eeg")
        except CheckpointError as err:
            raise CheckpointError(f"teacher {err}") from None
        student = self.new_model(grouping)
        teacher = checkpoint.model
        if (
            teacher.tap_shapes
            and {k: v[1] for k, v in teacher.tap_shapes.items()}
            != {k: v[1] for k, v in student.tap_shapes.items()}
            or teacher.n_times != student.n_times
        ):
            raise CheckpointError(
                f"teacher {path}: its window ({teacher.n_epochs} epochs x {teacher.samples_per_epoch} samples at "
                f"{teacher.sfreq:g} Hz, pools {teacher.pools}) does not match the student's ({student.n_epochs} "
                f"epochs x {student.samples_per_epoch} samples at {student.sfreq:g} Hz, pools {student.pools}); "
                f"the feature maps must have the same lengths"
            )
        return teacher

    def run_variant(
        self, name: str | Variant, grouping: str | None = None, *, on_epoch_end=None
    ) -> VariantOutcome:
        """Train (or reuse) every stage of a variant, then evaluate it on the test subjects."""
        variant = name if isinstance(name, Variant) else get_variant(name)
        runner = self.runner(grouping or self.config.data.grouping)
        if variant.needs_teacher:
            self.teacher(runner.grouping.name)
        if variant.name == "eeg_baseline" and self.teacher_checkpoint is not None:
            outcome = runner.evaluate(
                variant, runner.teacher(), {"teacher_checkpoint": str(self.teacher_checkpoint)}
            )
        elif variant.label_smoothing_grid:
            outcome = train_label_smoothing(runner, variant, on_epoch_end=on_epoch_end)
        elif variant.teacher == "ecg_baseline" and variant.uses_teacher:
            path = self.ecg_teacher_checkpoint(runner.grouping.name)
            outcome = runner.run(variant, on_epoch_end=on_epoch_end, teacher=load_checkpoint(path).model)
            outcome.stages["teacher_checkpoint"] = str(path)
        else:
            outcome = runner.run(variant, on_epoch_end=on_epoch_end)
        return self._save(outcome)

    def ecg_teacher_checkpoint(self, grouping: str) -> Path:
        """``model.pt`` of the trained ECG baseline of ``grouping`` (trained now if missing): the teacher of
        the self-distillation control ``ecg_self``."""
        path = self.run_dir / grouping / "ecg_baseline" / "model.pt"
        if not path.exists():
            self.run_variant("ecg_baseline", grouping)
        if self.world > 1:
            torch.distributed.barrier()
        return path

    def evaluate_variant(
        self, variant: Variant, grouping: str, model: UTime, stages: dict[str, Any] | None = None
    ) -> VariantOutcome:
        """Test metrics (pooled and per subject) of a trained model; writes ``model.pt`` and ``test.json``."""
        return self._save(self.runner(grouping).evaluate(variant, model, stages))

    def _save(self, outcome: VariantOutcome) -> VariantOutcome:
        """Write ``model.pt``, ``test.json`` and ``predictions.npz`` of an outcome (process 0)."""
        variant = get_variant(outcome.variant)
        out = self.run_dir / outcome.grouping / variant.name
        outcome.checkpoint = out / "model.pt"
        if self.rank != 0:
            return outcome
        assert outcome.model is not None
        summary = {"test": _short(outcome.metrics), "stages": outcome.stages}
        save_checkpoint(
            outcome.checkpoint,
            outcome.model,
            modality=variant.modality,
            variant=variant.to_dict(),
            metrics=summary,
            **self._meta(variant.modality, outcome.grouping),
        )
        write_json_atomic(
            out / "test.json",
            {
                "variant": variant.name,
                "grouping": outcome.grouping,
                "stages": outcome.stages,
                "metrics": outcome.metrics.to_dict(),
                "per_subject": {s: m.to_dict() for s, m in outcome.per_subject.items()},
            },
        )
        keys = list(outcome.labels)
        arrays = dict(
            recordings=np.concatenate([np.full(outcome.labels[k].size, k) for k in keys]),
            epochs=np.concatenate([np.arange(outcome.labels[k].size) for k in keys]),
            labels=np.concatenate([outcome.labels[k] for k in keys]),
            predictions=np.concatenate([outcome.predictions[k] for k in keys]),
        )
        atomic_write(out / "predictions.npz", lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]  # numpy stubs mistype **kwargs
        return outcome

    def write_report(
        self, outcomes: Sequence[VariantOutcome], name: str = "report"
    ) -> tuple[Path, Path] | None:
        """Table I / II report of ``outcomes`` with paired per-subject comparisons against the ECG baseline."""
        return (
            write_run_report(
                self.run_dir,
                outcomes,
                name=name,
                metadata={
                    "dataset": self.config.data.dataset,
                    "data_dir": str(self.data_dir),
                    "split": {p: len(self.split.subjects[p]) for p in ("train", "val", "test")},
                    "epochs": self.config.training.epochs,
                    "sfreq": self.config.data.sfreq,
                    "window_epochs": self.config.model.window_epochs,
                    "kdsleep_version": kdsleep_version(),
                    "git_commit": git_commit(),
                },
            )
            if self.rank == 0
            else None
        )


def train_label_smoothing(runner: Runner, variant: Variant, *, on_epoch_end=None) -> VariantOutcome:
    """Train ``variant`` once per epsilon of its grid (``<variant>/eps-<e>/``), keep the best on validation.

    Only the validation score (the stage's early-stopping score) chooses epsilon; the test subjects are
    predicted once, by the chosen model. The choice and every epsilon's validation score are recorded in the
    outcome's ``stages["label_smoothing"]``.
    """
    started = time.perf_counter()
    chosen_on = f"val_{runner.settings.checkpoint_metric}"
    scores: dict[str, float] = {}
    best: tuple[float, float, Any, dict[str, Any]] | None = None
    for epsilon in variant.label_smoothing_grid:
        candidate = replace(
            variant,
            name=f"{variant.name}/eps-{epsilon:g}",
            label_smoothing=epsilon,
            label_smoothing_grid=(),
        )
        model, stages = runner.train(candidate, on_epoch_end=on_epoch_end)
        score = float(stages["final"][chosen_on])
        scores[f"{epsilon:g}"] = score
        if best is None or score > best[0]:
            best = (score, epsilon, model, stages)
    assert best is not None
    _, epsilon, model, stages = best
    stages = {
        **stages,
        "label_smoothing": {"chosen": epsilon, "chosen_on": chosen_on, chosen_on: scores},
    }
    outcome = runner.evaluate(variant, model, stages)
    outcome.seconds = time.perf_counter() - started
    logger.info("%s: label smoothing %g chosen on validation (%s)", variant.name, epsilon, scores)
    return outcome


def _short(metrics: Any) -> dict[str, Any]:
    return {
        "weighted_f1": float(metrics.weighted_f1),
        "accuracy": float(metrics.accuracy),
        "macro_f1": float(metrics.macro_f1),
        "cohen_kappa": float(metrics.cohen_kappa),
        "f1": dict(zip(metrics.class_names, [float(f) for f in metrics.f1], strict=True)),
        "n_epochs": metrics.n_epochs,
    }


def write_run_report(
    run_dir: Path,
    outcomes: Sequence[VariantOutcome],
    *,
    name: str = "report",
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` / ``report.json`` of a run (Table I, Table II, paired comparisons)."""
    results = [VariantResult(o.variant, o.grouping, o.metrics, o.per_subject) for o in outcomes]
    comparisons = []
    groupings = sorted({o.grouping for o in outcomes})
    for grouping in groupings:
        by_variant = {o.variant: o for o in outcomes if o.grouping == grouping}
        reference = by_variant.get("ecg_baseline")
        if reference is None:
            continue
        prefix = f"{grouping}: " if len(groupings) > 1 else ""
        for variant, outcome in by_variant.items():
            if variant in ("ecg_baseline", "eeg_baseline"):
                continue
            common = set(reference.per_subject) & set(outcome.per_subject)
            if len(common) < 2:
                logger.warning(
                    "%s%s vs ecg_baseline: %d test subject(s), too few for a paired comparison",
                    prefix,
                    variant,
                    len(common),
                )
                continue
            comparisons.append(
                paired_comparison(
                    metric_by_subject(reference.per_subject, "weighted_f1"),
                    metric_by_subject(outcome.per_subject, "weighted_f1"),
                    metric="weighted_f1",
                    variant_a=f"{prefix}ecg_baseline",
                    variant_b=f"{prefix}{variant}",
                )
            )
    return write_report(
        results,
        run_dir,
        name=name,
        comparisons=comparisons,
        title="EEG-to-ECG knowledge distillation: test results",
        metadata=metadata,
    )


def run_variants(
    pipeline: Pipeline, variants: Sequence[str], groupings: Sequence[str]
) -> list[VariantOutcome]:
    """Run ``variants`` for every class set (the teacher first) and return their outcomes."""
    outcomes = []
    for grouping in groupings:
        for name in variants:
            outcomes.append(pipeline.run_variant(name, grouping))
    return outcomes


__all__ += [
    "TABLE_VARIANTS",
    "run_variants",
    "train_label_smoothing",
    "write_run_report",
]
