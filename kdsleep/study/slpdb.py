"""Sleep staging from heart rate on the MIT-BIH Polysomnographic Database, cross-validated by subject.

One call of :func:`run_study` reproduces the whole study and writes its report:

1. every slpdb record with ``.hea``, ``.st`` and ``.ecg`` files is read once into the work folder: real
   stages, the real heart-rate channel (:func:`kdsleep.data.heart_rate.heart_rate_channel`), a
   semi-synthetic EEG driven by the real hypnogram, and the per-epoch HRV features;
2. subjects are split into folds balanced by epochs (:func:`~kdsleep.study.folds.subject_folds`); in every
   fold a few training subjects are held out for validation (checkpoint choice). The folds are made once:
   every row and every training seed uses the same ones;
3. for each training seed, fold and class set (3: W-N-R, 4: W-L-D-R, 5: AASM), one *unit* trains and tests
   the rows of :data:`kdsleep.study.rows.ROWS`:

   * ``hrv_gbm``: the classical baseline, HRV features (:mod:`kdsleep.data.hrv_features`) and a
     gradient-boosted tree classifier (scikit-learn ``HistGradientBoostingClassifier``, balanced class
     weights) -- real data;
   * ``hr_stager``: the heart-rate stager recipe (:func:`kdsleep.study.hr_recipe.train_stager`: HRV
     features and the heart-rate curve of whole nights, early stopping on validation κ) -- real data;
   * ``hr_student``: a small U-Time on the heart-rate channel (the ``ecg_baseline`` variant) -- real data;
   * ``ecg_ls``, ``ecg_self``: the controls -- the same student with label smoothing (epsilon chosen on
     validation) and the student distilled from the trained ``hr_student`` -- real data;
   * ``eeg_teacher``: the same U-Time on the semi-synthetic EEG -- SEMI-SYNTHETIC;
   * ``at_cl``, ``sd_cl``, ``at_sd_cl``: the heart-rate student distilled from that teacher with the
     variants of Joshi et al. (:mod:`kdsleep.distill.variants`) -- SEMI-SYNTHETIC (the student reads real
     heart rate, but what it is taught comes from synthetic EEG);

   the U-Time rows run through :class:`kdsleep.distill.runner.Runner` -- the runner of ``kdsleep train``
   and ``kdsleep experiment`` -- on the unit's records held in memory
   (:func:`kdsleep.study.data.record_store`): the same windows, class weights, teacher-first order, stages
   and per-epoch test merge;

4. for every seed, predictions of all test folds are pooled into κ, macro F1, weighted F1, accuracy and
   per-class F1; rows are reported as mean ± SD over seeds, with paired per-subject comparisons of each
   subject's κ averaged over seeds, Holm-corrected by family, and the distillation claim rule of
   :func:`kdsleep.evaluation.report.build_seeds_report` (:mod:`kdsleep.study.report`).

Every finished row of a unit is kept in the work folder (written atomically), so an interrupted study
resumes without redoing it, a later call may add seeds or rows, and an interrupted training stage continues
from its saved state.
"""

from __future__ import annotations

import copy
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
from kdsleep.distill.experiment import kdsleep_home, train_label_smoothing
from kdsleep.distill.runner import Runner
from kdsleep.distill.trainer import TrainSettings
from kdsleep.distill.variants import get_variant
from kdsleep.hr_bundle import beat_inputs
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
from kdsleep.study.hr_recipe import RecipeRecord, train_stager
from kdsleep.study.report import write_study_report
from kdsleep.study.rows import ROW_VARIANTS, ROWS, SEEDS_FORMAT, expand_rows, recipe_settings
from kdsleep.study.settings import (
    CLASS_SETS,
    DESCRIPTIONS,
    FULL_SETTINGS,
    MODELS,
    QUICK_SETTINGS,
    StudySettings,
)

__all__ = [
    "CLASS_SETS",
    "DESCRIPTIONS",
    "FULL_SETTINGS",
    "MODELS",
    "QUICK_SETTINGS",
    "ROWS",
    "StudySettings",
    "WorkFolderError",
    "default_work_dir",
    "prepare_data",
    "run_study",
    "read_unit",
    "run_unit",
    "unit_dir",
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
    work_dir: Path,
    train: Sequence[str],
    test: Sequence[str],
    grouping: str,
    settings: StudySettings,
    records,
    *,
    seed: int | None = None,
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
        random_state=settings.seed if seed is None else seed,
    )
    classifier.fit(x_train[keep], y_train[keep])
    return {n: classifier.predict(load(n)).astype(int).tolist() for n in test}


def _hr_stager(
    records, by_part: dict[str, list[str]], grouping: str, settings: StudySettings, seed: int
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Train the heart-rate stager (:func:`kdsleep.study.hr_recipe.train_stager`) on the fold's training
    records, keep its best state on the validation records, and predict every epoch of the test records."""
    recipe = recipe_settings(settings.quick, seed)

    def as_recipe(name: str) -> RecipeRecord:
        record = records[name]
        features, heart_rate, names = beat_inputs(
            record.beat_times, record.n_epochs, recipe.sfreq, source=f"{name}.ecg"
        )
        return RecipeRecord(
            name, record.subject, features, heart_rate, np.asarray(record.stages, dtype=np.int8), names
        )

    test = [as_recipe(n) for n in by_part["test"]]
    bundle = train_stager(
        [as_recipe(n) for n in by_part["train"]],
        grouping,
        recipe,
        val_records=[as_recipe(n) for n in by_part["val"]],
    )
    predictions = {
        r.name: bundle.predict_proba(r.features, r.heart_rate).argmax(1).astype(int).tolist() for r in test
    }
    stages = {
        "final": {
            "best_epoch": bundle.training["best_epoch"],
            "val_cohen_kappa": bundle.training["best_val_kappa"],
            "epochs_run": bundle.training["epochs_run"],
        }
    }
    return predictions, stages


def _frozen_copy(model: UTime) -> UTime:
    """A frozen copy of a trained model, to teach the self-distillation control."""
    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def unit_dir(work_dir: str | os.PathLike[str], seed: int, fold: int, grouping: str) -> Path:
    """Folder of one unit: ``<work>/units/seed-<seed>/fold<fold>/<grouping>``."""
    return Path(work_dir) / "units" / f"seed-{seed}" / f"fold{fold}" / grouping


def read_unit(path: Path) -> dict[str, Any] | None:
    """A unit's result file, or ``None`` when there is none yet."""
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != SEEDS_FORMAT:
        raise WorkFolderError(f"{path}: a unit of format {data.get('format')!r}, expected {SEEDS_FORMAT!r}")
    return data


def run_unit(
    work_dir: str | os.PathLike[str],
    settings_dict: dict[str, Any],
    fold_dict: dict[str, Any],
    grouping: str,
    limit_threads: bool = True,
    *,
    seed: int | None = None,
    rows: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train and test the rows of one training seed, fold and class set; writes and returns the unit's result.

    The U-Time rows run through :class:`kdsleep.distill.runner.Runner` on the records held in memory
    (:func:`kdsleep.study.data.record_store`): the teacher first, class weights from the training
    subjects, the variant's stages, and test predictions merged into one class per epoch. ``ecg_ls`` is
    trained once per epsilon of its grid and the best on validation is kept
    (:func:`kdsleep.distill.experiment.train_label_smoothing`); ``ecg_self`` is taught by a frozen copy of
    this unit's ``hr_student``. ``hr_stager`` is the recipe of :mod:`kdsleep.study.hr_recipe` on the same
    records, ``hrv_gbm`` the gradient-boosted trees.

    The result holds, for every row, the predicted class of every epoch of the fold's test records, the
    training stages (best epoch, validation score, epochs run), the seconds each row took and the CPU
    seconds of the unit. It is written after every row, so an interrupted unit keeps its finished rows; a
    later call with more rows adds them (finished U-Time stages are read back, not retrained).

    Parameters
    ----------
    seed : int, optional
        Training seed: weights, batch order, the recipe's draws and the trees' ``random_state``
        (default ``settings.seed``). The folds, the data and the synthetic EEG do not depend on it.
    rows : sequence of str, optional
        Rows to run (:data:`kdsleep.study.rows.ROWS`; default all); what they need is added
        (:func:`kdsleep.study.rows.expand_rows`).
    """
    if limit_threads:
        _limit_threads()
    work_dir = Path(work_dir)
    settings = StudySettings.from_dict(settings_dict)
    seed = settings.seed if seed is None else int(seed)
    wanted = expand_rows(rows)
    fold = fold_dict["index"]
    folder = unit_dir(work_dir, seed, fold, grouping)
    result_path = folder / "result.json"
    saved = read_unit(result_path)
    if saved is not None and all(r in saved["predictions"] for r in wanted):
        return saved
    started = time.perf_counter()
    cpu_started = time.process_time()
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
    predictions: dict[str, dict[str, list[int]]] = dict(saved["predictions"]) if saved else {}
    stages_info: dict[str, dict[str, Any]] = dict(saved["stages"]) if saved else {}
    seconds: dict[str, float] = dict(saved["seconds"]) if saved else {}
    previous_seconds = float(saved["total_seconds"]) if saved else 0.0
    previous_cpu = float(saved.get("cpu_seconds", 0.0)) if saved else 0.0

    preprocess = {"sfreq": settings.sfreq, "eeg_band": list(settings.eeg_band), "hr": "heart_rate_channel"}

    def new_model(modality: str) -> UTime:
        torch.manual_seed(seed)
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
            seed=seed,
            amp=False,
            num_workers=0,
            max_train_windows=settings.max_train_windows,
        ),
        epochs=settings.epochs,
        at_epochs=settings.at_epochs,
        window_epochs=settings.window_epochs,
        train_stride=settings.train_stride,
        out_dir=folder,
        device=resolve_device("cpu"),
        checkpoint_meta=lambda modality: {
            "channel": "synthetic EEG" if modality == "eeg" else "heart rate",
            "inputs": [STUDY_CHANNELS[0] if modality == "eeg" else STUDY_CHANNELS[1]],
            "grouping": grouping,
            "preprocess": preprocess,
        },
        resume=True,
        progress=False,
        name_prefix=f"seed{seed}/fold{fold}/{grouping}/",
    )

    def save() -> dict[str, Any]:
        payload = {
            "format": SEEDS_FORMAT,
            "seed": seed,
            "fold": fold,
            "grouping": grouping,
            "test_records": by_part["test"],
            "predictions": predictions,
            "stages": stages_info,
            "seconds": seconds,
            "total_seconds": previous_seconds + time.perf_counter() - started,
            "cpu_seconds": previous_cpu + time.process_time() - cpu_started,
            "train_windows": len(runner.dataset("train")),
            "val_windows": len(runner.dataset("val")),
        }
        write_text_atomic(result_path, json.dumps(payload) + "\n")
        return payload

    def test_predictions(outcome) -> dict[str, list[int]]:
        return {key: outcome.predictions[key].astype(int).tolist() for key in by_part["test"]}

    student: UTime | None = None
    for row in wanted:
        # the self-distillation control needs the trained student itself: its finished stage is read back
        need_model = row == "hr_student" and "ecg_self" in wanted and "ecg_self" not in predictions
        if row in predictions and not need_model:
            continue
        tic = time.perf_counter()
        if row == "hrv_gbm":
            predictions[row] = _classical_baseline(
                work_dir, by_part["train"], by_part["test"], grouping, settings, records, seed=seed
            )
        elif row == "hr_stager":
            predictions[row], stages_info[row] = _hr_stager(records, by_part, grouping, settings, seed)
        elif row == "ecg_ls":
            outcome = train_label_smoothing(runner, get_variant(ROW_VARIANTS[row]))
            predictions[row], stages_info[row] = test_predictions(outcome), outcome.stages
        elif row == "ecg_self":
            assert student is not None  # expand_rows puts hr_student before ecg_self
            outcome = runner.run(get_variant(ROW_VARIANTS[row]), teacher=_frozen_copy(student))
            predictions[row], stages_info[row] = test_predictions(outcome), outcome.stages
        else:
            # the teacher first (it is the EEG baseline), then the students, as the main pipeline chains them
            outcome = runner.run(ROW_VARIANTS[row])
            predictions[row], stages_info[row] = test_predictions(outcome), outcome.stages
            if row == "hr_student":
                student = outcome.model
        # a row whose finished stages were only read back keeps the time of the run that trained it
        seconds.setdefault(row, time.perf_counter() - tic)
        save()
    return save()


# --------------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------------


class WorkFolderError(ValueError):
    """A work folder made with other settings, another data folder or an older format."""


def _check_work_dir(work_dir: Path, settings: StudySettings, data_dir: Path) -> None:
    """A work folder is reused only with the settings it was made with."""
    path = work_dir / "settings.json"
    wanted = settings.to_dict()
    current = {"format": SEEDS_FORMAT, "settings": wanted, "data_dir": str(data_dir.resolve())}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != SEEDS_FORMAT or saved.get("settings") != wanted:
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
    seeds: int = 1,
    rows: Sequence[str] | None = None,
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
        Worker processes (one thread each); units (seed x fold x class set) are spread over them.
    quick : bool
        Use :data:`QUICK_SETTINGS`.
    progress : bool
        Progress bars.
    command : sequence of str, optional
        The command line, recorded in the report (default ``sys.argv``).
    settings : StudySettings, optional
        Explicit settings (overrides ``quick``).
    seeds : int
        Training seeds ``settings.seed``, ``settings.seed + 1``, ...: every row is trained once per seed on
        the same folds (made with ``settings.seed``).
    rows : sequence of str, optional
        Rows of :data:`kdsleep.study.rows.ROWS` to run (default all); what they need is added.

    Returns
    -------
    dict
        The report's content (also written to the JSON file).
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = settings or (QUICK_SETTINGS if quick else FULL_SETTINGS)
    data_dir = Path(data_dir)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(settings)
    bad = [c for c in classes if c not in CLASS_SETS]
    if bad or not classes:
        raise ValueError(f"classes: expected some of {sorted(CLASS_SETS)}, got {list(classes)}")
    if jobs < 1:
        raise ValueError(f"jobs: expected at least 1 worker process, got {jobs}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected a positive number of training seeds, got {seeds!r}")
    wanted = expand_rows(rows)
    seed_list = [settings.seed + k for k in range(seeds)]
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
    # one set of folds for every row and seed
    folds = subject_folds(subject_epochs, settings.n_folds, n_val=settings.n_val, seed=settings.seed)

    units = [(seed, fold, grouping) for seed in seed_list for fold in folds for grouping in groupings]
    results: dict[tuple[int, int, str], dict[str, Any]] = {}
    pending = []
    for seed, fold, grouping in units:
        saved = read_unit(unit_dir(work_dir, seed, fold.index, grouping) / "result.json")
        if saved is not None and all(r in saved["predictions"] for r in wanted):
            results[(seed, fold.index, grouping)] = saved
        else:
            pending.append((seed, fold, grouping))
    if results:
        logger.info("reusing %d finished unit(s) from %s", len(results), work_dir)
    bar = tqdm(total=len(units), initial=len(results), desc="slpdb units", unit="unit", disable=not progress)
    settings_dict = settings.to_dict()
    try:
        if jobs == 1:
            _limit_threads()
            for seed, fold, grouping in pending:
                bar.set_postfix_str(f"seed {seed} fold {fold.index + 1}/{len(folds)} {grouping}")
                results[(seed, fold.index, grouping)] = run_unit(
                    work_dir, settings_dict, fold.to_dict(), grouping, False, seed=seed, rows=wanted
                )
                bar.update()
        elif pending:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {
                    pool.submit(
                        run_unit,
                        work_dir,
                        settings_dict,
                        fold.to_dict(),
                        grouping,
                        True,
                        seed=seed,
                        rows=wanted,
                    ): (seed, fold, grouping)
                    for seed, fold, grouping in pending
                }
                for future in as_completed(futures):
                    seed, fold, grouping = futures[future]
                    results[(seed, fold.index, grouping)] = future.result()
                    bar.set_postfix_str(f"seed {seed} fold {fold.index + 1}/{len(folds)} {grouping} done")
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
        seeds=seed_list,
        rows=wanted,
        meta={
            "command": list(command if command is not None else sys.argv),
            "data_dir": str(data_dir),
            "out": str(out),
            "work_dir": str(work_dir),
            "jobs": jobs,
            "wall_seconds": time.perf_counter() - started,
            # the main process only; the units' own CPU time is summed from their result files
            "main_cpu_seconds": time.process_time() - cpu_started,
            "prepare_seconds": prepare_seconds,
            "units_reused": len(units) - len(pending),
            "units_run": len(pending),
            "invocations": history,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
    )
