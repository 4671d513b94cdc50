"""The rows, class sets and settings of the slpdb study (:mod:`kdsleep.study.slpdb`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from kdsleep.data.stages import STAGE_GROUPINGS

__all__ = [
    "CLASS_SETS",
    "DESCRIPTIONS",
    "FULL_SETTINGS",
    "KD_MODELS",
    "MODELS",
    "MODEL_VARIANTS",
    "QUICK_SETTINGS",
    "StudySettings",
]

#: Stage grouping of each number of classes.
CLASS_SETS: dict[int, str] = {
    g.n_classes: g.name for g in sorted(STAGE_GROUPINGS.values(), key=lambda g: g.n_classes)
}

#: The rows of the report, in order, and what their data are.
MODELS: dict[str, str] = {
    "hrv_gbm": "real",
    "hr_student": "real",
    "eeg_teacher": "semi-synthetic",
    "at_cl": "semi-synthetic",
    "sd_cl": "semi-synthetic",
    "at_sd_cl": "semi-synthetic",
}
#: What each row of the report is.
DESCRIPTIONS: dict[str, str] = {
    "hrv_gbm": "HRV features + gradient-boosted trees (classical baseline)",
    "hr_student": "U-Time on heart rate (deep student, no distillation)",
    "eeg_teacher": "U-Time on synthetic EEG driven by the real hypnogram (teacher)",
    "at_cl": "heart-rate student, attention transfer then WCE (AT+CL)",
    "sd_cl": "heart-rate student, WCE + softmax distillation (SD+CL)",
    "at_sd_cl": "heart-rate student, attention transfer then WCE + SD (AT+SD+CL)",
}
#: The distilled rows.
KD_MODELS = ("at_cl", "sd_cl", "at_sd_cl")
#: The variant (:mod:`kdsleep.distill.variants`) behind each deep row of the report.
MODEL_VARIANTS: dict[str, str] = {
    "eeg_teacher": "eeg_baseline",
    "hr_student": "ecg_baseline",
    "at_cl": "at_cl",
    "sd_cl": "sd_cl",
    "at_sd_cl": "at_sd_cl",
}


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
