"""The heart-rate stager recipe: training on slpdb beats, and its cross-validation.

The model it trains, its inputs and its file are :mod:`kdsleep.hr_bundle` (:class:`~kdsleep.hr_bundle.HRStagerBundle`,
:func:`~kdsleep.hr_bundle.beat_inputs`, :class:`~kdsleep.hr_bundle.RecipeSettings`).

Training (:func:`train_stager`)
    Features standardised with the training records' per-column mean and SD (NaN set to 0); random crops of
    ``crop`` consecutive epochs (record drawn with probability proportional to its length), ``batch`` crops per
    step, ``steps`` steps per training epoch; cross-entropy with balanced class weights (``N / (K n_k)``,
    normalised to mean 1), unscored epochs ignored; AdamW, gradient norm clipped at 1; augmentation: feature
    noise and a per-crop column scale, heart-rate scale and noise. With validation records, the state with
    the best pooled Cohen κ on them is kept (early stopping with ``patience``); without, training runs a fixed
    number of epochs.

Cross-validation (``python -m kdsleep.study.hr_recipe cv --data-dir ../shared/data/slpdb``)
    The slpdb study's subject folds (:func:`kdsleep.study.folds.subject_folds`, 4 folds, 2 validation
    subjects each), the HRV+GBM baseline of the study on the same folds, metrics pooled over the test folds
    and per subject, written as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from torch import nn

from kdsleep._io import git_commit, kdsleep_version, write_text_atomic
from kdsleep.data.readers.wfdb_io import read_slpdb_annotations
from kdsleep.data.stages import get_grouping
from kdsleep.evaluation.metrics import compute_metrics, metric_by_subject, per_subject_metrics
from kdsleep.hr_bundle import HRStagerBundle, RecipeSettings, beat_inputs, stager_proba
from kdsleep.models.hr_stager import HRStager
from kdsleep.study.data import find_slpdb_records
from kdsleep.study.folds import Fold, subject_folds

__all__ = [
    "GROUPINGS",
    "RecipeRecord",
    "RecipeSettings",
    "load_slpdb_records",
    "run_cv",
    "slpdb_folds",
    "train_stager",
]

logger = logging.getLogger(__name__)

#: Groupings by number of classes.
GROUPINGS = {3: "w-n-r", 4: "w-l-d-r"}


@dataclass
class RecipeRecord:
    """One night's inputs and stages."""

    name: str
    subject: str
    features: np.ndarray
    heart_rate: np.ndarray
    stages: np.ndarray
    feature_names: list[str] = field(default_factory=list)

    def labels(self, grouping: str) -> np.ndarray:
        """Class per epoch (-1 where unscored)."""
        return get_grouping(grouping)(self.stages).astype(np.int64)


def load_slpdb_records(data_dir: str | os.PathLike[str], sfreq: float = 2.0) -> list[RecipeRecord]:
    """Every slpdb record of ``data_dir`` with its inputs built from the expert beat annotations."""
    out = []
    for name, subject, path in find_slpdb_records(data_dir):
        stages, _duration, beats, _ventricular = read_slpdb_annotations(path)
        features, hr, names = beat_inputs(beats, int(stages.shape[0]), sfreq, source=f"{path}.ecg")
        out.append(RecipeRecord(name, subject, features, hr, np.asarray(stages, dtype=np.int8), names))
    return out


def _pooled_kappa(labels: Sequence[np.ndarray], predictions: Sequence[np.ndarray], n_classes: int) -> float:
    return float(compute_metrics(np.concatenate(labels), np.concatenate(predictions), n_classes).cohen_kappa)


def train_stager(
    records: Sequence[RecipeRecord],
    grouping: str,
    settings: RecipeSettings | None = None,
    *,
    val_records: Sequence[RecipeRecord] = (),
    n_epochs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> HRStagerBundle:
    """Train a stager on ``records`` with the recipe.

    Parameters
    ----------
    records : sequence of RecipeRecord
        Training nights.
    grouping : str
        ``"w-n-r"`` or ``"w-l-d-r"`` (any :func:`kdsleep.data.stages.get_grouping` name).
    settings : RecipeSettings, optional
        Recipe settings (default :class:`RecipeSettings`).
    val_records : sequence of RecipeRecord
        Validation nights: keep the state with the best pooled κ on them, stop after ``patience`` epochs
        without improvement. Empty: train exactly ``n_epochs`` epochs (default ``settings.max_epochs``).
    n_epochs : int, optional
        Fixed number of training epochs (only without validation records).
    log : callable, optional
        Receives one line per training epoch.
    """
    settings = settings or RecipeSettings()
    if not records:
        raise ValueError("train_stager: no training records")
    if n_epochs is not None and val_records:
        raise ValueError("train_stager: give either val_records (early stopping) or n_epochs, not both")
    group = get_grouping(grouping)
    k = len(group.class_names)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    all_features = np.concatenate([r.features for r in records])
    mean = np.nanmean(all_features, axis=0).astype(np.float32)
    sd = (np.nanstd(all_features, axis=0) + 1e-6).astype(np.float32)
    spe = settings.samples_per_epoch
    data = []
    for r in records:
        if r.heart_rate.shape[1] != spe:
            raise ValueError(
                f"{r.name}: heart rate has {r.heart_rate.shape[1]} samples per epoch, expected {spe}"
            )
        x = np.nan_to_num((r.features - mean) / sd).astype(np.float32)
        data.append((x, r.heart_rate.astype(np.float32), r.labels(grouping)))
    y_all = np.concatenate([d[2] for d in data])
    y_all = y_all[y_all >= 0]
    counts = np.bincount(y_all, minlength=k).astype(float)
    if (counts == 0).any():
        missing = [group.class_names[i] for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"train_stager: the training records hold no epoch of class {missing}")
    weights = len(y_all) / (k * counts)
    class_weight = torch.tensor(weights / weights.mean(), dtype=torch.float32)
    model = HRStager(
        all_features.shape[1],
        k,
        spe,
        hidden=settings.hidden,
        n_layers=settings.n_layers,
        drop_prob=settings.drop_prob,
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    lengths = np.array([len(d[2]) for d in data], dtype=float)
    draw = lengths / lengths.sum()
    crop = settings.crop
    val = [
        (np.nan_to_num((r.features - mean) / sd).astype(np.float32), r.heart_rate, r.labels(grouping))
        for r in val_records
    ]
    total = n_epochs if n_epochs is not None else settings.max_epochs
    best, best_state, best_epoch, bad = -np.inf, None, -1, 0
    history = []
    for epoch in range(total):
        model.train()
        losses = []
        for _ in range(settings.steps):
            xb, hb, yb = [], [], []
            for _ in range(settings.batch):
                x, hr, y = data[rng.choice(len(data), p=draw)]
                length = len(y)
                if length <= crop:
                    start, pad = 0, crop - length
                    x = np.pad(x, ((0, pad), (0, 0)))
                    hr = np.pad(hr, ((0, pad), (0, 0)))
                    y = np.pad(y, (0, pad), constant_values=-1)
                else:
                    start = int(rng.integers(0, length - crop + 1))
                xc, hc, yc = (
                    x[start : start + crop].copy(),
                    hr[start : start + crop].copy(),
                    y[start : start + crop],
                )
                if settings.noise > 0:
                    xc += rng.normal(0, settings.noise, xc.shape).astype(np.float32)
                    xc *= rng.uniform(0.9, 1.1, (1, xc.shape[1])).astype(np.float32)
                    hc = hc * rng.uniform(0.8, 1.2) + rng.normal(0, settings.noise, hc.shape).astype(
                        np.float32
                    )
                xb.append(xc)
                hb.append(hc.astype(np.float32))
                yb.append(yc)
            logits = model(torch.from_numpy(np.stack(xb)), torch.from_numpy(np.stack(hb)))
            loss = F.cross_entropy(
                logits.reshape(-1, k),
                torch.from_numpy(np.stack(yb)).reshape(-1),
                weight=class_weight,
                ignore_index=-1,
            )
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            losses.append(float(loss.detach()))
        entry: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val:
            score = _pooled_kappa(
                [v[2] for v in val], [stager_proba(model, v[0], v[1]).argmax(1) for v in val], k
            )
            entry["val_kappa"] = score
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_state = {name: t.clone() for name, t in model.state_dict().items()}
            else:
                bad += 1
        history.append(entry)
        if log is not None:
            log(" ".join(f"{a}={b:.4f}" if isinstance(b, float) else f"{a}={b}" for a, b in entry.items()))
        if val and bad >= settings.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    training = {
        "records": [r.name for r in records],
        "val_records": [r.name for r in val_records],
        "epochs_run": len(history),
        "best_epoch": best_epoch if val else len(history) - 1,
        "best_val_kappa": float(best) if val else None,
        "history": history,
    }
    names = records[0].feature_names or [f"feature_{i}" for i in range(all_features.shape[1])]
    return HRStagerBundle(model, mean, sd, names, tuple(group.class_names), group.name, settings, training)


# ---------------------------------------------------------------------------------------------- cross-validation


def _metrics_dict(
    records: Sequence[RecipeRecord], predictions: dict[str, np.ndarray], grouping: str
) -> dict[str, Any]:
    group = get_grouping(grouping)
    k = len(group.class_names)
    y = np.concatenate([r.labels(grouping) for r in records])
    p = np.concatenate([predictions[r.name] for r in records])
    subjects = [r.subject for r in records for _ in range(len(r.stages))]
    pooled = compute_metrics(y, p, k, group.class_names)
    per = per_subject_metrics(y, p, subjects, k, group.class_names)
    kappas = metric_by_subject(per, "cohen_kappa")
    values = np.array(list(kappas.values()), dtype=float)
    return {
        "cohen_kappa": float(pooled.cohen_kappa),
        "macro_f1": float(pooled.macro_f1),
        "accuracy": float(pooled.accuracy),
        "weighted_f1": float(pooled.weighted_f1),
        "f1": {c: float(v) for c, v in zip(group.class_names, pooled.f1, strict=True)},
        "kappa_by_subject": {s: float(v) for s, v in kappas.items()},
        "subject_kappa_mean": float(values.mean()),
        "subject_kappa_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
    }


def _gbm_predictions(
    train: Sequence[RecipeRecord], test: Sequence[RecipeRecord], grouping: str, seed: int = 0
) -> dict[str, np.ndarray]:
    x = np.concatenate([r.features for r in train])
    y = np.concatenate([r.labels(grouping) for r in train])
    keep = y >= 0
    classifier = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=200,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )
    classifier.fit(x[keep], y[keep])
    return {r.name: classifier.predict(r.features).astype(np.int64) for r in test}


def slpdb_folds(
    records: Sequence[RecipeRecord], n_folds: int = 4, n_val: int = 2, seed: int = 0
) -> list[Fold]:
    """The study's subject folds over ``records`` (scored epochs per subject)."""
    scored: dict[str, int] = {}
    for r in records:
        scored[r.subject] = scored.get(r.subject, 0) + int((r.stages <= 4).sum())
    return subject_folds(scored, n_folds, n_val=n_val, seed=seed)


def run_cv(
    records: Sequence[RecipeRecord],
    n_classes: int = 3,
    seeds: Sequence[int] = (0,),
    settings: RecipeSettings | None = None,
    *,
    n_folds: int = 4,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Subject-wise CV of the recipe and of the HRV+GBM baseline on the same folds."""
    settings = settings or RecipeSettings()
    grouping = GROUPINGS[n_classes]
    folds = slpdb_folds(records, n_folds)
    by_subject = lambda subjects: [r for r in records if r.subject in subjects]  # noqa: E731
    started = time.perf_counter()
    gbm: dict[str, np.ndarray] = {}
    for fold in folds:
        gbm.update(_gbm_predictions(by_subject(fold.train), by_subject(fold.test), grouping))
    tested = [r for r in records if r.name in gbm]
    result: dict[str, Any] = {
        "classes": n_classes,
        "grouping": grouping,
        "folds": [f.to_dict() for f in folds],
        "settings": asdict(settings),
        "hrv_gbm": _metrics_dict(tested, gbm, grouping),
        "seeds": {},
    }
    probabilities = []
    for seed in seeds:
        seed_settings = RecipeSettings(**{**asdict(settings), "seed": int(seed)})
        t0 = time.perf_counter()
        probs: dict[str, np.ndarray] = {}
        fold_info = []
        for i, fold in enumerate(folds):
            bundle = train_stager(
                by_subject(fold.train), grouping, seed_settings, val_records=by_subject(fold.val)
            )
            for r in by_subject(fold.test):
                probs[r.name] = bundle.predict_proba(r.features, r.heart_rate)
            fold_info.append(
                {
                    "fold": i,
                    "best_epoch": bundle.training["best_epoch"],
                    "val_kappa": bundle.training["best_val_kappa"],
                }
            )
            if log:
                log(
                    f"[{n_classes} classes] seed {seed} fold {i}: best epoch {fold_info[-1]['best_epoch']}, "
                    f"val κ {fold_info[-1]['val_kappa']:.3f}"
                )
        metrics = _metrics_dict(tested, {n: p.argmax(1) for n, p in probs.items()}, grouping)
        metrics["folds"] = fold_info
        metrics["seconds"] = time.perf_counter() - t0
        result["seeds"][str(seed)] = metrics
        probabilities.append(probs)
        if log:
            log(
                f"[{n_classes} classes] seed {seed}: κ {metrics['cohen_kappa']:.3f}, macro F1 {metrics['macro_f1']:.3f} "
                f"(HRV+GBM κ {result['hrv_gbm']['cohen_kappa']:.3f})"
            )
    if len(probabilities) > 1:
        ensemble = {n: np.mean([p[n] for p in probabilities], axis=0).argmax(1) for n in probabilities[0]}
        result["seed_ensemble"] = _metrics_dict(tested, ensemble, grouping)
    result["seconds"] = time.perf_counter() - started
    return result


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "kdsleep": kdsleep_version(),
        "commit": git_commit() or "unknown",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kdsleep.study.hr_recipe {cv,train} ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m kdsleep.study.hr_recipe", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="subject-wise CV on slpdb beside the HRV+GBM baseline; writes JSON")
    train = sub.add_parser(
        "train", help="train on every slpdb record for a fixed number of epochs; writes a model"
    )
    for p in (cv, train):
        p.add_argument("--data-dir", type=Path, required=True, help="slpdb folder (.hea, .st, .ecg)")
        p.add_argument("--classes", type=int, choices=sorted(GROUPINGS), default=3)
        p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    cv.add_argument("--seeds", type=int, default=1, help="number of seeds, 0..N-1 (default 1)")
    cv.add_argument("--out", type=Path, required=True, help="JSON file")
    train.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="model file (.pt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    started = time.perf_counter()
    versions = _versions()  # before the run: the commit of the code that runs
    records = load_slpdb_records(args.data_dir)
    command = "python -m kdsleep.study.hr_recipe " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command == "cv":
        result = run_cv(records, args.classes, list(range(args.seeds)))
        result.update(
            {"command": command, "versions": versions, "wall_seconds": time.perf_counter() - started}
        )
        text = json.dumps(result, indent=1)
        write_text_atomic(args.out, text)
        print(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")
    else:
        bundle = train_stager(
            records, GROUPINGS[args.classes], RecipeSettings(seed=args.seed), n_epochs=args.epochs, log=print
        )
        bundle.training.update({"command": command, "versions": versions, "data": "slpdb (all records)"})
        bundle.save(args.out)
        print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
