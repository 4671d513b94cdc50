"""Sleep staging from heart rate on the MIT-BIH Polysomnographic Database, cross-validated by subject.

One call of :func:`run_study` reproduces the whole study and writes its report:

1. every slpdb record with ``.hea``, ``.st`` and ``.ecg`` files is read once into the work folder: real
   stages, the real heart-rate channel (:func:`kdsleep.data.heart_rate.heart_rate_channel`), a
   semi-synthetic EEG driven by the real hypnogram, and the per-epoch HRV features;
2. subjects are split into folds balanced by epochs (:func:`~kdsleep.study.folds.subject_folds`); in every
   fold a few training subjects are held out for validation (checkpoint choice);
3. for each fold and class set (3: W-N-R, 4: W-L-D-R, 5: AASM), one *unit* trains and tests

   * ``hrv_gbm``: the classical baseline, HRV features (:mod:`kdsleep.study.hrv_features`) and a
     gradient-boosted tree classifier (scikit-learn ``HistGradientBoostingClassifier``, balanced class
     weights) -- real data;
   * ``hr_student``: a small U-Time on the heart-rate channel, trained with
     :func:`kdsleep.distill.trainer.train_stage` (the ``ecg_baseline`` variant) -- real data;
   * ``eeg_teacher``: the same U-Time on the semi-synthetic EEG -- SEMI-SYNTHETIC;
   * ``at_cl``, ``sd_cl``, ``at_sd_cl``: the heart-rate student distilled from that teacher with the
     variants of Joshi et al. (:mod:`kdsleep.distill.variants`) -- SEMI-SYNTHETIC (the student reads real
     heart rate, but what it is taught comes from synthetic EEG);

4. predictions of all test folds are pooled into weighted F1, accuracy, Cohen's kappa and per-class F1,
   with the spread over subjects and paired per-subject comparisons
   (:func:`kdsleep.evaluation.compare.paired_comparison`).

Every finished unit is kept in the work folder (written atomically), so an interrupted study resumes
without redoing it; an interrupted training stage continues from its saved state.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CLASS_SETS",
    "FULL_SETTINGS",
    "MODELS",
    "QUICK_SETTINGS",
    "StudySettings",
    "default_work_dir",
    "prepare_data",
    "run_study",
    "run_unit",
]

logger = logging.getLogger(__name__)

#: Stage grouping of each number of classes.
CLASS_SETS: dict[int, str] = {3: "w-n-r", 4: "w-l-d-r", 5: "aasm-5"}

#: The rows of the report, in order, and what their data are.
MODELS: dict[str, str] = {
    "hrv_gbm": "real",
    "hr_student": "real",
    "eeg_teacher": "semi-synthetic",
    "at_cl": "semi-synthetic",
    "sd_cl": "semi-synthetic",
    "at_sd_cl": "semi-synthetic",
}
_DESCRIPTIONS = {
    "hrv_gbm": "HRV features + gradient-boosted trees (classical baseline)",
    "hr_student": "U-Time on heart rate (deep student, no distillation)",
    "eeg_teacher": "U-Time on synthetic EEG driven by the real hypnogram (teacher)",
    "at_cl": "heart-rate student, attention transfer then WCE (AT+CL)",
    "sd_cl": "heart-rate student, WCE + softmax distillation (SD+CL)",
    "at_sd_cl": "heart-rate student, attention transfer then WCE + SD (AT+SD+CL)",
}
_KD = ("at_cl", "sd_cl", "at_sd_cl")
_FORMAT = "kdsleep-slpdb-study-1"


@dataclass(frozen=True)
class StudySettings:
    """Everything that determines the study's figures.

    Attributes
    ----------
    n_folds : int
        Cross-validation folds by subject (4; 13 subjects give 3-4 test subjects per fold).
    n_val : int
        Training subjects of each fold held out for validation (2).
    seed : int
        Seed of the folds, the weights, the batch order and the synthetic EEG.
    sfreq : float
        Model rate in Hz of both the heart rate and the EEG (attention transfer needs equal lengths).
    eeg_band : tuple of float
        Band-pass of the semi-synthetic EEG in Hz.
    window_epochs : int
        30-s epochs per model input window.
    train_stride : int
        Epochs between training window starts (overlapping windows give more distinct training inputs).
    pools, filters : tuple of int
        U-Time pools and filters (teacher and students alike).
    epochs : int
        Epochs of every classification stage.
    at_epochs : int
        Epochs of every attention-transfer stage.
    batch_size : int
        Windows per batch.
    lr : float
        Adam learning rate (1e-3 as in Joshi et al.).
    max_train_windows : int or None
        Training windows drawn per epoch (a fresh random subset each epoch).
    gbm_max_iter : int
        Boosting iterations of the classical baseline.
    quick : bool
        The reduced settings of ``--quick`` (a smoke test of the whole chain, not a result).
    """

    n_folds: int = 4
    n_val: int = 2
    seed: int = 0
    sfreq: float = 32.0
    eeg_band: tuple[float, float] = (0.3, 15.0)
    window_epochs: int = 15
    train_stride: int = 3
    pools: tuple[int, ...] = (4, 4, 3, 2, 2)
    filters: tuple[int, ...] = (8, 16, 16, 32, 32)
    epochs: int = 10
    at_epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-3
    max_train_windows: int | None = 128
    gbm_max_iter: int = 200
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["eeg_band"] = list(self.eeg_band)
        data["pools"] = list(self.pools)
        data["filters"] = list(self.filters)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        data = dict(data)
        for key in ("eeg_band", "pools", "filters"):
            data[key] = tuple(data[key])
        return cls(**data)


#: The full study.
FULL_SETTINGS = StudySettings()
#: ``--quick``: three folds, tiny models, two epochs (minutes on two cores; the figures mean nothing).
QUICK_SETTINGS = replace(
    FULL_SETTINGS,
    n_folds=3,
    n_val=1,
    filters=(4, 8, 8, 8, 8),
    epochs=2,
    at_epochs=1,
    max_train_windows=32,
    gbm_max_iter=30,
    quick=True,
)


def default_work_dir(settings: StudySettings) -> Path:
    """``$KDSLEEP_HOME/study-slpdb-full`` (or ``-quick``)."""
    from kdsleep.distill.experiment import kdsleep_home

    return kdsleep_home() / f"study-slpdb-{'quick' if settings.quick else 'full'}"


# --------------------------------------------------------------------------------------------------
# Data, once
# --------------------------------------------------------------------------------------------------


def prepare_data(
    data_dir: str | os.PathLike[str], work_dir: Path, settings: StudySettings, progress: bool = True
) -> dict[str, str]:
    """Read every record into ``work_dir/records/<record>.npz`` (with its HRV features); reuse finished ones.

    Returns
    -------
    dict of str to str
        Subject of every record.
    """
    from tqdm.auto import tqdm

    from kdsleep._io import write_bytes_atomic
    from kdsleep.study.data import find_slpdb_records, prepare_record, save_record
    from kdsleep.study.hrv_features import recording_features

    records = find_slpdb_records(data_dir)
    folder = work_dir / "records"
    folder.mkdir(parents=True, exist_ok=True)
    subjects = {}
    for name, subject, path in tqdm(records, desc="records", unit="record", disable=not progress):
        subjects[name] = subject
        target = folder / f"{name}.npz"
        features = folder / f"{name}.features.npz"
        if target.exists() and features.exists():
            continue
        record = prepare_record(path, subject, settings.sfreq, eeg_band=settings.eeg_band, seed=settings.seed)
        x, names = recording_features(record.beat_times, record.n_epochs)
        buffer = io.BytesIO()
        np.savez(buffer, features=x, names=np.array(names))
        write_bytes_atomic(features, buffer.getvalue())
        save_record(record, target)
    return subjects


def _subject_epochs(work_dir: Path, subjects: dict[str, str]) -> dict[str, int]:
    from kdsleep.study.data import load_record

    counts: dict[str, int] = {}
    for name, subject in subjects.items():
        record = load_record(work_dir / "records" / f"{name}.npz")
        counts[subject] = counts.get(subject, 0) + record.n_scored()
    return counts


# --------------------------------------------------------------------------------------------------
# One fold and class set
# --------------------------------------------------------------------------------------------------


def _limit_threads() -> None:
    """One thread per worker: the study runs ``--jobs`` processes side by side on few cores."""
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        pass


def _classical_baseline(
    work_dir: Path, train: Sequence[str], test: Sequence[str], grouping: str, settings: StudySettings, records
) -> dict[str, list[int]]:
    """Train the HRV-feature classifier on the training records and predict every epoch of the test records."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def load(name: str) -> np.ndarray:
        with np.load(work_dir / "records" / f"{name}.features.npz") as data:
            return data["features"]

    x_train = np.concatenate([load(n) for n in train])
    y_train = np.concatenate([records[n].labels(grouping) for n in train])
    keep = y_train >= 0
    classifier = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=settings.gbm_max_iter,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        class_weight="balanced",
        early_stopping=False,
        random_state=settings.seed,
    )
    classifier.fit(x_train[keep], y_train[keep])
    return {n: classifier.predict(load(n)).astype(int).tolist() for n in test}


def run_unit(
    work_dir: str | os.PathLike[str],
    settings_dict: dict[str, Any],
    fold_dict: dict[str, Any],
    grouping: str,
    limit_threads: bool = True,
) -> dict[str, Any]:
    """Train and test every model of one fold and class set; writes and returns the unit's result.

    The result holds, for every model, the predicted class of every epoch of the fold's test records, the
    training stages (best epoch, validation score, epochs run) and the seconds each model took.
    """
    import torch

    from kdsleep._io import write_text_atomic
    from kdsleep._torch import resolve_device
    from kdsleep.data.stages import get_grouping
    from kdsleep.distill.config import TrainConfig
    from kdsleep.distill.losses import class_weights
    from kdsleep.distill.trainer import StageSpec, predict, train_stage
    from kdsleep.distill.variants import get_variant
    from kdsleep.models import UTime
    from kdsleep.study.data import StudyWindows, assemble_epoch_predictions, load_record

    if limit_threads:
        _limit_threads()
    work_dir = Path(work_dir)
    settings = StudySettings.from_dict(settings_dict)
    fold = fold_dict["index"]
    unit_dir = work_dir / "units" / f"fold{fold}" / grouping
    result_path = unit_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    n_classes = get_grouping(grouping).n_classes
    records = {
        p.name[: -len(".npz")]: load_record(p)
        for p in (work_dir / "records").glob("*.npz")
        if not p.name.endswith(".features.npz")
    }
    by_part = {
        part: sorted(n for n, r in records.items() if r.subject in set(fold_dict[part]))
        for part in ("train", "val", "test")
    }
    seconds: dict[str, float] = {}
    predictions: dict[str, dict[str, list[int]]] = {}

    tic = time.perf_counter()
    predictions["hrv_gbm"] = _classical_baseline(
        work_dir, by_part["train"], by_part["test"], grouping, settings, records
    )
    seconds["hrv_gbm"] = time.perf_counter() - tic

    train_set = StudyWindows(
        [records[n] for n in by_part["train"]], grouping, settings.window_epochs, stride=settings.train_stride
    )
    val_set = StudyWindows([records[n] for n in by_part["val"]], grouping, settings.window_epochs)
    test_records = [records[n] for n in by_part["test"]]
    test_set = StudyWindows(test_records, grouping, settings.window_epochs, skip_unlabelled=False)
    counts = np.zeros(n_classes, dtype=np.int64)
    for name in by_part["train"]:
        labels = records[name].labels(grouping)
        counts += np.bincount(labels[labels >= 0], minlength=n_classes)[:n_classes]
    weights = class_weights(counts, source=f"slpdb fold {fold} training subjects ({grouping})")
    config = TrainConfig(
        dataset="slpdb",
        grouping=grouping,
        sfreq=settings.sfreq,
        window_epochs=settings.window_epochs,
        pools=list(settings.pools),
        filters=list(settings.filters),
        epochs=settings.epochs,
        at_epochs=settings.at_epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        patience=None,
        seed=settings.seed,
        device="cpu",
        amp=False,
        num_workers=0,
        num_threads=1,
        max_train_windows=settings.max_train_windows,
    )
    device = resolve_device("cpu")
    preprocess = {"sfreq": settings.sfreq, "eeg_band": list(settings.eeg_band), "hr": "heart_rate_channel"}

    def new_model() -> UTime:
        torch.manual_seed(settings.seed)
        return UTime(
            1,
            n_classes,
            sfreq=settings.sfreq,
            n_epochs=settings.window_epochs,
            pools=list(settings.pools),
            filters=list(settings.filters),
        )

    def test_predictions(model: UTime, modality: str) -> dict[str, list[int]]:
        _, window_preds = predict(
            model, test_set, modality, device, batch_size=settings.batch_size, amp=False
        )
        out = {}
        for r, record in enumerate(test_records):
            rows = [i for i in range(len(test_set)) if test_set.window_key(i)[0] == r]
            starts = [test_set.window_key(i)[1] for i in rows]
            out[record.name] = assemble_epoch_predictions(
                record.n_epochs, starts, window_preds[rows]
            ).tolist()
        return out

    stages_info: dict[str, dict[str, Any]] = {}
    teacher: UTime | None = None
    # the teacher first (it is the EEG baseline), then the students, as the main pipeline chains them
    for name in ("eeg_teacher", "hr_student", *_KD):
        tic = time.perf_counter()
        variant = get_variant(
            "eeg_baseline" if name == "eeg_teacher" else "ecg_baseline" if name == "hr_student" else name
        )
        model = new_model()
        info = {}
        for stage in variant.stages:
            # Step 1 of at_cl and at_sd_cl is the same training (same seed, teacher, data and settings):
            # it is trained once, in a shared folder, and both variants continue from its weights.
            shared_at = stage == "at"
            spec = StageSpec(
                name=f"fold{fold}/{grouping}/{'at' if shared_at else name}/{stage}",
                kind=stage,
                modality=variant.modality,
                out_dir=unit_dir / ("at_step" if shared_at else name) / stage,
                epochs=settings.at_epochs if stage == "at" else settings.epochs,
                weight_kd=variant.weight_kd if stage == "final" else 0.0,
                variant={
                    **(get_variant("at") if shared_at else variant).to_dict(),
                    "stage": stage,
                    "at_mode": config.at_mode,
                    "temperature": config.temperature,
                },
            )
            result = train_stage(
                spec,
                model,
                train_set=train_set,
                val_set=val_set,
                class_weights=weights,
                teacher=teacher if variant.needs_teacher else None,
                config=config,
                checkpoint_meta={
                    "channel": "synthetic EEG" if variant.modality == "eeg" else "heart rate",
                    "grouping": grouping,
                    "preprocess": preprocess,
                },
                device=device,
                resume=True,
                progress=False,
            )
            info[stage] = {
                "best_epoch": result.best_epoch,
                result.score_name: result.best_score,
                "epochs_run": result.epochs_run,
            }
        if name == "eeg_teacher":
            model.eval()
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            teacher = model
        predictions[name] = test_predictions(model, variant.modality)
        stages_info[name] = info
        seconds[name] = time.perf_counter() - tic

    result_payload = {
        "format": _FORMAT,
        "fold": fold,
        "grouping": grouping,
        "test_records": by_part["test"],
        "predictions": predictions,
        "stages": stages_info,
        "seconds": seconds,
        "total_seconds": time.perf_counter() - started,
        "train_windows": len(train_set),
        "val_windows": len(val_set),
    }
    write_text_atomic(result_path, json.dumps(result_payload) + "\n")
    return result_payload


# --------------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------------


def _check_work_dir(work_dir: Path, settings: StudySettings, data_dir: Path) -> None:
    """A work folder is reused only with the settings it was made with."""
    from kdsleep._io import write_text_atomic

    path = work_dir / "settings.json"
    wanted = settings.to_dict()
    current = {"format": _FORMAT, "settings": wanted, "data_dir": str(data_dir.resolve())}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != _FORMAT or saved.get("settings") != wanted:
            changed = [
                f"{k} ({saved.get('settings', {}).get(k)!r} there, {v!r} now)"
                for k, v in wanted.items()
                if saved.get("settings", {}).get(k) != v
            ]
            raise ValueError(
                f"{work_dir}: this work folder holds a study made with other settings: "
                f"{'; '.join(changed[:4]) or 'another format'}; choose another --work-dir or delete it"
            )
        if saved.get("data_dir") != current["data_dir"]:
            raise ValueError(
                f"{work_dir}: this work folder holds a study of {saved.get('data_dir')}, not of "
                f"{current['data_dir']}; choose another --work-dir"
            )
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(current, indent=2) + "\n")


def run_study(
    data_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    classes: Sequence[int] = (3, 4, 5),
    jobs: int = 1,
    quick: bool = False,
    progress: bool = True,
    command: Sequence[str] | None = None,
    settings: StudySettings | None = None,
) -> dict[str, Any]:
    """Run (or resume) the slpdb study and write its report.

    Parameters
    ----------
    data_dir : path-like
        The slpdb folder (``.hea``, ``.st`` and ``.ecg`` of every record; the ``.dat`` signals are not used).
    out : path-like, optional
        Markdown report; the JSON (and PNG) go beside it with the same stem. Default
        ``docs/results/slpdb.md``, or ``slpdb-quick.md`` in the work folder for the quick settings.
    work_dir : path-like, optional
        Where records, trained models and finished units are kept; default :func:`default_work_dir`.
    classes : sequence of int
        Class sets to study (3, 4, 5).
    jobs : int
        Worker processes (one thread each); units of one fold and class set are spread over them.
    quick : bool
        Use :data:`QUICK_SETTINGS`.
    progress : bool
        Progress bars.
    command : sequence of str, optional
        The command line, recorded in the report (default ``sys.argv``).
    settings : StudySettings, optional
        Explicit settings (overrides ``quick``).

    Returns
    -------
    dict
        The report's content (also written to the JSON file).
    """
    from tqdm.auto import tqdm

    from kdsleep.study.folds import subject_folds
    from kdsleep.study.report import write_study_report

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = settings or (QUICK_SETTINGS if quick else FULL_SETTINGS)
    data_dir = Path(data_dir)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(settings)
    bad = [c for c in classes if c not in CLASS_SETS]
    if bad or not classes:
        raise ValueError(f"classes: expected some of {sorted(CLASS_SETS)}, got {list(classes)}")
    if jobs < 1:
        raise ValueError(f"jobs: expected at least 1 worker process, got {jobs}")
    groupings = [CLASS_SETS[c] for c in sorted(set(classes))]
    out = (
        Path(out)
        if out is not None
        else (work_dir / "slpdb-quick.md" if settings.quick else Path("docs/results/slpdb.md"))
    )
    _check_work_dir(work_dir, settings, data_dir)

    tic = time.perf_counter()
    subjects = prepare_data(data_dir, work_dir, settings, progress)
    prepare_seconds = time.perf_counter() - tic
    subject_epochs = _subject_epochs(work_dir, subjects)
    folds = subject_folds(subject_epochs, settings.n_folds, n_val=settings.n_val, seed=settings.seed)

    units = [(fold, grouping) for fold in folds for grouping in groupings]
    results: dict[tuple[int, str], dict[str, Any]] = {}
    pending = []
    for fold, grouping in units:
        path = work_dir / "units" / f"fold{fold.index}" / grouping / "result.json"
        if path.exists():
            results[(fold.index, grouping)] = json.loads(path.read_text(encoding="utf-8"))
        else:
            pending.append((fold, grouping))
    if results:
        logger.info("reusing %d finished fold(s) x class set(s) from %s", len(results), work_dir)
    bar = tqdm(total=len(units), initial=len(results), desc="slpdb folds", unit="fold", disable=not progress)
    settings_dict = settings.to_dict()
    try:
        if jobs == 1:
            _limit_threads()
            for fold, grouping in pending:
                bar.set_postfix_str(f"fold {fold.index + 1}/{len(folds)} {grouping}")
                results[(fold.index, grouping)] = run_unit(
                    work_dir, settings_dict, fold.to_dict(), grouping, limit_threads=False
                )
                bar.update()
        elif pending:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {
                    pool.submit(run_unit, work_dir, settings_dict, fold.to_dict(), grouping): (fold, grouping)
                    for fold, grouping in pending
                }
                for future in as_completed(futures):
                    fold, grouping = futures[future]
                    results[(fold.index, grouping)] = future.result()
                    bar.set_postfix_str(f"fold {fold.index + 1}/{len(folds)} {grouping} done")
                    bar.update()
    finally:
        bar.close()

    from kdsleep._io import write_text_atomic
    from kdsleep.study.data import load_record

    # every invocation on the work folder is kept, so that a resumed study still reports what it cost
    history_path = work_dir / "invocations.json"
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.exists() else []
    history.append(
        {
            "started": started_at,
            "wall_seconds": time.perf_counter() - started,
            "units_run": len(pending),
            "jobs": jobs,
            "cpu_count": os.cpu_count(),
        }
    )
    write_text_atomic(history_path, json.dumps(history, indent=1) + "\n")
    records = {name: load_record(work_dir / "records" / f"{name}.npz") for name in subjects}
    return write_study_report(
        out,
        records=records,
        folds=folds,
        groupings=groupings,
        results=results,
        settings=settings,
        meta={
            "command": list(command if command is not None else sys.argv),
            "data_dir": str(data_dir),
            "out": str(out),
            "work_dir": str(work_dir),
            "jobs": jobs,
            "wall_seconds": time.perf_counter() - started,
            "prepare_seconds": prepare_seconds,
            "units_reused": len(units) - len(pending),
            "units_run": len(pending),
            "invocations": history,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
    )
