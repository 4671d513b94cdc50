"""The heart-rate stager recipe: inputs from beat times, training, whole-night prediction, saving, and its CV.

Inputs (:func:`beat_inputs`)
    For a night of ``n_epochs`` 30-s epochs: the 28 HRV feature columns of
    :func:`kdsleep.study.hrv_features.recording_features` and the heart-rate curve of
    :func:`kdsleep.data.heart_rate.heart_rate_channel` at ``sfreq`` (2 Hz), cut into epochs of 60 samples.

Training (:func:`train_stager`)
    Features standardised with the training records' per-column mean and SD (NaN set to 0); random crops of
    ``crop`` consecutive epochs (record drawn with probability proportional to its length), ``batch`` crops per
    step, ``steps`` steps per training epoch; cross-entropy with balanced class weights (``N / (K n_k)``,
    normalised to mean 1), unscored epochs ignored; AdamW, gradient norm clipped at 1; augmentation: feature
    noise and a per-crop column scale, heart-rate scale and noise. With validation records, the state with
    the best pooled Cohen κ on them is kept (early stopping with ``patience``); without, training runs a fixed
    number of epochs.

Saved model (:class:`HRStagerBundle`)
    Weights, model configuration, feature mean/SD and names, class names and grouping, the heart-rate rate
    and the recipe settings, in one ``torch.save`` dictionary written atomically.

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
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdsleep.models.hr_stager import HRStager

__all__ = [
    "FORMAT",
    "GROUPINGS",
    "HRStagerBundle",
    "HRStagerError",
    "RecipeRecord",
    "RecipeSettings",
    "beat_inputs",
    "is_hr_stager_file",
    "load_slpdb_records",
    "run_cv",
    "train_stager",
]

logger = logging.getLogger(__name__)

#: Value of the ``format`` key of a saved heart-rate stager.
FORMAT = "kdsleep-hr-stager"
FORMAT_VERSION = 1
#: Groupings by number of classes.
GROUPINGS = {3: "w-n-r", 4: "w-l-d-r"}
EPOCH_SECONDS = 30.0


class HRStagerError(ValueError):
    """A saved heart-rate stager that cannot be read, or inputs that do not fit it."""


@dataclass(frozen=True)
class RecipeSettings:
    """Settings of the recipe (the defaults are the ones cross-validated on slpdb)."""

    hidden: int = 32
    n_layers: int = 2
    drop_prob: float = 0.3
    sfreq: float = 2.0
    crop: int = 120
    batch: int = 8
    steps: int = 15
    max_epochs: int = 30
    patience: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("drop_prob", "noise", "seed", "weight_decay"):
                if value < 0:
                    raise ValueError(f"RecipeSettings.{f.name}: expected >= 0, got {value}")
            elif not value > 0:
                raise ValueError(f"RecipeSettings.{f.name}: expected > 0, got {value}")

    @property
    def samples_per_epoch(self) -> int:
        """Heart-rate samples per 30-s epoch."""
        return int(round(EPOCH_SECONDS * self.sfreq))


def beat_inputs(
    beat_times: np.ndarray, n_epochs: int, sfreq: float = 2.0, *, source: str = "recording"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The recipe's two inputs for a night of beats.

    Parameters
    ----------
    beat_times : np.ndarray
        Beat times in seconds from the recording start, strictly increasing.
    n_epochs : int
        Whole 30-s epochs of the night.
    sfreq : float
        Rate of the heart-rate curve in Hz.
    source : str
        Named in error messages.

    Returns
    -------
    features : np.ndarray of float32, shape (n_epochs, 28)
        :func:`kdsleep.study.hrv_features.recording_features` (not yet standardised).
    heart_rate : np.ndarray of float32, shape (n_epochs, samples_per_epoch)
        :func:`kdsleep.data.heart_rate.heart_rate_channel`, epoch by epoch.
    names : list of str
        Feature names.
    """
    from kdsleep.data.heart_rate import heart_rate_channel
    from kdsleep.study.hrv_features import recording_features

    if n_epochs < 1:
        raise ValueError(f"{source}: no whole {EPOCH_SECONDS:g}-s epoch to stage")
    spe = int(round(EPOCH_SECONDS * sfreq))
    beat_times = np.asarray(beat_times, dtype=np.float64)
    hr, _valid = heart_rate_channel(beat_times, sfreq, n_epochs * spe, source=source)
    features, names = recording_features(beat_times, n_epochs)
    return features.astype(np.float32), hr.reshape(n_epochs, spe).astype(np.float32), names


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
        from kdsleep.data.stages import get_grouping

        return get_grouping(grouping)(self.stages).astype(np.int64)


def load_slpdb_records(data_dir: str | os.PathLike[str], sfreq: float = 2.0) -> list[RecipeRecord]:
    """Every slpdb record of ``data_dir`` with its inputs built from the expert beat annotations."""
    from kdsleep.data.readers.wfdb_io import read_slpdb_annotations
    from kdsleep.study.data import find_slpdb_records

    out = []
    for name, subject, path in find_slpdb_records(data_dir):
        stages, _duration, beats, _ventricular = read_slpdb_annotations(path)
        features, hr, names = beat_inputs(beats, int(stages.shape[0]), sfreq, source=f"{path}.ecg")
        out.append(RecipeRecord(name, subject, features, hr, np.asarray(stages, dtype=np.int8), names))
    return out


@dataclass
class HRStagerBundle:
    """A trained heart-rate stager with everything needed to stage a night from beats."""

    model: HRStager
    feature_mean: np.ndarray
    feature_sd: np.ndarray
    feature_names: list[str]
    class_names: tuple[str, ...]
    grouping: str
    settings: RecipeSettings
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    kind = "hr-stager"

    @property
    def sfreq(self) -> float:
        """Rate of the heart-rate curve in Hz."""
        return float(self.settings.sfreq)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def epoch_seconds(self) -> float:
        """Epoch length in seconds."""
        return EPOCH_SECONDS

    def describe(self) -> str:
        """One line for users."""
        return (
            f"heart-rate stager (BiGRU over {len(self.feature_names)} HRV features + {self.sfreq:g}-Hz heart-rate "
            f"curve), {self.n_classes} classes ({'-'.join(self.class_names)}), whole night, 30-s epochs"
        )

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Features standardised with the training mean/SD, NaN set to 0."""
        return np.nan_to_num((features - self.feature_mean) / self.feature_sd).astype(np.float32)

    def predict_proba(self, features: np.ndarray, heart_rate: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n_epochs, n_classes)`` of one night (raw features of :func:`beat_inputs`)."""
        if features.ndim != 2 or heart_rate.ndim != 2 or features.shape[0] != heart_rate.shape[0]:
            raise HRStagerError(
                f"expected features (n_epochs, {len(self.feature_names)}) and heart rate (n_epochs, "
                f"{self.model.n_times}), got {features.shape} and {heart_rate.shape}"
            )
        return _predict(self.model, self.standardise(features), heart_rate)

    def predict_beats(
        self, beat_times: np.ndarray, n_epochs: int, *, source: str = "recording"
    ) -> np.ndarray:
        """Class probabilities of a night given its beat times."""
        features, hr, _names = beat_inputs(beat_times, n_epochs, self.sfreq, source=source)
        return self.predict_proba(features, hr)

    def to_dict(self) -> dict[str, Any]:
        """The saved dictionary (tensors, numbers, strings and lists only)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "config": self.model.config(),
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_sd": [float(v) for v in self.feature_sd],
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "grouping": self.grouping,
            "sfreq": self.sfreq,
            "epoch_seconds": EPOCH_SECONDS,
            "settings": asdict(self.settings),
            # plain JSON types only, so that the file loads with torch.load(weights_only=True)
            "training": json.loads(json.dumps(self.training, default=str)),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically with :func:`kdsleep._io.save_torch_atomic`."""
        from kdsleep._io import save_torch_atomic

        return save_torch_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HRStagerBundle:
        """Read a saved stager.

        Raises
        ------
        HRStagerError
            Naming the file and what is wrong with it.
        """
        path = Path(path)
        if not path.is_file():
            raise HRStagerError(f"{path}: no such heart-rate stager file")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a file that is not its format
            raise HRStagerError(
                f"{path}: not a heart-rate stager (torch cannot load it: {type(err).__name__})"
            ) from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HRStagerError(f"{path}: not a heart-rate stager (no 'format': {FORMAT!r} entry)")
        if data.get("format_version") != FORMAT_VERSION:
            raise HRStagerError(
                f"{path}: heart-rate stager format_version {data.get('format_version')!r}, this kdsleep reads "
                f"{FORMAT_VERSION}"
            )
        try:
            config = dict(data["config"])
            config["conv_filters"] = tuple(config["conv_filters"])
            model = HRStager(**config)
            model.load_state_dict(data["state_dict"])
            settings = RecipeSettings(**data["settings"])
            mean = np.asarray(data["feature_mean"], dtype=np.float32)
            sd = np.asarray(data["feature_sd"], dtype=np.float32)
            names = list(data["feature_names"])
            classes = tuple(data["class_names"])
            grouping = str(data["grouping"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise HRStagerError(f"{path}: damaged heart-rate stager: {type(err).__name__}: {err}") from err
        if not (mean.shape == sd.shape == (model.n_features,) == (len(names),)):
            raise HRStagerError(
                f"{path}: feature_mean/feature_sd/feature_names lengths {mean.shape}/{sd.shape}/{len(names)} differ "
                f"from the model's {model.n_features} features"
            )
        if len(classes) != model.n_outputs:
            raise HRStagerError(
                f"{path}: {len(classes)} class names for a model of {model.n_outputs} outputs"
            )
        if abs(float(data["sfreq"]) - settings.sfreq) > 1e-9 or settings.samples_per_epoch != model.n_times:
            raise HRStagerError(
                f"{path}: sfreq {data['sfreq']} does not match the model's {model.n_times} samples"
            )
        model.eval()
        return cls(model, mean, sd, names, classes, grouping, settings, dict(data.get("training", {})), path)


def is_hr_stager_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a saved heart-rate stager (False for anything else, including unreadable files)."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _predict(model: nn.Module, features: np.ndarray, heart_rate: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        logits = model(
            torch.from_numpy(features)[None], torch.from_numpy(np.ascontiguousarray(heart_rate))[None]
        )
    return F.softmax(logits[0], dim=-1).numpy().astype(np.float32)


def _pooled_kappa(labels: Sequence[np.ndarray], predictions: Sequence[np.ndarray], n_classes: int) -> float:
    from kdsleep.evaluation.metrics import compute_metrics

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
    from kdsleep.data.stages import get_grouping

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
                [v[2] for v in val], [_predict(model, v[0], v[1]).argmax(1) for v in val], k
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


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _metrics_dict(
    records: Sequence[RecipeRecord], predictions: dict[str, np.ndarray], grouping: str
) -> dict[str, Any]:
    from kdsleep.data.stages import get_grouping
    from kdsleep.evaluation.metrics import compute_metrics, metric_by_subject, per_subject_metrics

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
):
    from sklearn.ensemble import HistGradientBoostingClassifier

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


def slpdb_folds(records: Sequence[RecipeRecord], n_folds: int = 4, n_val: int = 2, seed: int = 0):
    """The study's subject folds over ``records`` (scored epochs per subject)."""
    from kdsleep.study.folds import subject_folds

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
    import sklearn

    import kdsleep

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "kdsleep": getattr(kdsleep, "__version__", "unknown"),
        "commit": _git_commit(),
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
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover
        pass
    started = time.perf_counter()
    versions = _versions()  # before the run: the commit of the code that runs
    records = load_slpdb_records(args.data_dir)
    command = "python -m kdsleep.study.hr_recipe " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command == "cv":
        result = run_cv(records, args.classes, list(range(args.seeds)))
        result.update(
            {"command": command, "versions": versions, "wall_seconds": time.perf_counter() - started}
        )
        from kdsleep._io import atomic_write

        text = json.dumps(result, indent=1)
        atomic_write(args.out, lambda fh: fh.write(text.encode()))
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
