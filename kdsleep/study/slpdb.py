"""Sleep staging from heart rate on the MIT-BIH Polysomnographic Database, cross-validated by subject.

One call of :func:`run_study` reproduces the whole study and writes its report:

1. every slpdb record with ``.hea``, ``.st`` and ``.ecg`` files is read once into the work folder: real
   stages, the real heart-rate channel (:func:`kdsleep.data.heart_rate.heart_rate_channel`), a
   semi-synthetic EEG driven by the real hypnogram, and the per-epoch HRV features;
2. subjects are split into folds balanced by epochs (:func:`~kdsleep.study.folds.subject_folds`); in every
   fold a few training subjects are held out for validation (checkpoint choice);
3. for each fold and class set (3: W-N-R, 4: W-L-D-R, 5: AASM), one *unit* trains and tests

   * ``hrv_gbm``: the classical baseline, HRV features (:mod:`kdsleep.data.hrv_features`) and a
     gradient-boosted tree classifier (scikit-learn ``HistGradientBoostingClassifier``, balanced class
     weights) -- real data;
   * ``hr_student``: a small U-Time on the heart-rate channel (the ``ecg_baseline`` variant) -- real data;
   * ``eeg_teacher``: the same U-Time on the semi-synthetic EEG -- SEMI-SYNTHETIC;
   * ``at_cl``, ``sd_cl``, ``at_sd_cl``: the heart-rate student distilled from that teacher with the
     variants of Joshi et al. (:mod:`kdsleep.distill.variants`) -- SEMI-SYNTHETIC (the student reads real
     heart rate, but what it is taught comes from synthetic EEG);

   the deep rows run through :class:`kdsleep.distill.runner.Runner` -- the runner of ``kdsleep train`` and
   ``kdsleep experiment`` -- on the unit's records held in memory (:func:`kdsleep.study.data.record_store`):
   the same windows, class weights, teacher-first order, stages and per-epoch test merge;

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
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from kdsleep._io import write_bytes_atomic, write_text_atomic
from kdsleep._torch import resolve_device
from kdsleep.data.hrv_features import recording_features
from kdsleep.data.stages import get_grouping
from kdsleep.distill.experiment import kdsleep_home
from kdsleep.distill.runner import Runner
from kdsleep.distill.trainer import TrainSettings
from kdsleep.models import UTime
from kdsleep.study.data import (
    STUDY_CHANNELS,
    find_slpdb_records,
    load_record,
    prepare_record,
    record_store,
    save_record,
)
from kdsleep.study.folds import subject_folds
from kdsleep.study.report import write_study_report
from kdsleep.study.settings import (
    CLASS_SETS,
    DESCRIPTIONS,
    FULL_SETTINGS,
    KD_MODELS,
    MODEL_VARIANTS,
    MODELS,
    QUICK_SETTINGS,
    STUDY_FORMAT,
    StudySettings,
)

__all__ = [
    "CLASS_SETS",
    "DESCRIPTIONS",
    "FULL_SETTINGS",
    "MODELS",
    "QUICK_SETTINGS",
    "StudySettings",
    "WorkFolderError",
    "default_work_dir",
    "prepare_data",
    "run_study",
    "run_unit",
]

logger = logging.getLogger(__name__)


def default_work_dir(settings: StudySettings) -> Path:
    """``$KDSLEEP_HOME/study-slpdb-full`` (or ``-quick``)."""
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
    torch.set_num_threads(1)
    threadpool_limits(1)


def _classical_baseline(
    work_dir: Path, train: Sequence[str], test: Sequence[str], grouping: str, settings: StudySettings, records
) -> dict[str, list[int]]:
    """Train the HRV-feature classifier on the training records and predict every epoch of the test records."""

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

    The deep rows run through :class:`kdsleep.distill.runner.Runner` on the records held in memory
    (:func:`kdsleep.study.data.record_store`): the teacher first, class weights from the training
    subjects, the variant's stages, and test predictions merged into one class per epoch. The result holds,
    for every model, the predicted class of every epoch of the fold's test records, the training stages (best
    epoch, validation score, epochs run) and the seconds each model took.
    """
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
    group = get_grouping(grouping)
    records = {
        p.name[: -len(".npz")]: load_record(p)
        for p in sorted((work_dir / "records").glob("*.npz"))
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

    preprocess = {"sfreq": settings.sfreq, "eeg_band": list(settings.eeg_band), "hr": "heart_rate_channel"}

    def new_model(modality: str) -> UTime:
        torch.manual_seed(settings.seed)
        return UTime(
            1,
            group.n_classes,
            sfreq=settings.sfreq,
            n_epochs=settings.window_epochs,
            pools=list(settings.pools),
            filters=list(settings.filters),
        )

    runner = Runner(
        record_store([records[n] for part in by_part.values() for n in part]),
        by_part,
        {name: record.subject for name, record in records.items()},
        grouping=group,
        inputs={"eeg": (STUDY_CHANNELS[0],), "ecg": (STUDY_CHANNELS[1],)},
        new_model=new_model,
        settings=TrainSettings(
            lr=settings.lr,
            batch_size=settings.batch_size,
            patience=None,
            seed=settings.seed,
            amp=False,
            num_workers=0,
            max_train_windows=settings.max_train_windows,
        ),
        epochs=settings.epochs,
        at_epochs=settings.at_epochs,
        window_epochs=settings.window_epochs,
        train_stride=settings.train_stride,
        out_dir=unit_dir,
        device=resolve_device("cpu"),
        checkpoint_meta=lambda modality: {
            "channel": "synthetic EEG" if modality == "eeg" else "heart rate",
            "inputs": [STUDY_CHANNELS[0] if modality == "eeg" else STUDY_CHANNELS[1]],
            "grouping": grouping,
            "preprocess": preprocess,
        },
        resume=True,
        progress=False,
        name_prefix=f"fold{fold}/{grouping}/",
    )
    stages_info: dict[str, dict[str, Any]] = {}
    # the teacher first (it is the EEG baseline), then the students, as the main pipeline chains them
    for name in ("eeg_teacher", "hr_student", *KD_MODELS):
        outcome = runner.run(MODEL_VARIANTS[name])
        predictions[name] = {key: outcome.predictions[key].astype(int).tolist() for key in by_part["test"]}
        stages_info[name] = outcome.stages
        seconds[name] = outcome.seconds

    result_payload = {
        "format": STUDY_FORMAT,
        "fold": fold,
        "grouping": grouping,
        "test_records": by_part["test"],
        "predictions": predictions,
        "stages": stages_info,
        "seconds": seconds,
        "total_seconds": time.perf_counter() - started,
        "train_windows": len(runner.dataset("train")),
        "val_windows": len(runner.dataset("val")),
    }
    write_text_atomic(result_path, json.dumps(result_payload) + "\n")
    return result_payload


# --------------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------------


class WorkFolderError(ValueError):
    """A work folder made with other settings, another data folder or an older format."""


def _check_work_dir(work_dir: Path, settings: StudySettings, data_dir: Path) -> None:
    """A work folder is reused only with the settings it was made with."""
    path = work_dir / "settings.json"
    wanted = settings.to_dict()
    current = {"format": STUDY_FORMAT, "settings": wanted, "data_dir": str(data_dir.resolve())}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != STUDY_FORMAT or saved.get("settings") != wanted:
            changed = [
                f"{k} ({saved.get('settings', {}).get(k)!r} there, {v!r} now)"
                for k, v in wanted.items()
                if saved.get("settings", {}).get(k) != v
            ]
            raise WorkFolderError(
                f"{work_dir}: this work folder holds a study made with other settings: "
                f"{'; '.join(changed[:4]) or 'another format'}; choose another work folder or delete it"
            )
        if saved.get("data_dir") != current["data_dir"]:
            raise WorkFolderError(
                f"{work_dir}: this work folder holds a study of {saved.get('data_dir')}, not of "
                f"{current['data_dir']}; choose another work folder"
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
    started = time.perf_counter()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
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
