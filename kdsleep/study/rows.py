"""The rows of the slpdb study with seeds and controls (:mod:`kdsleep.study.slpdb`), and what each needs.

The study's first rows (:data:`kdsleep.study.settings.MODELS`) are joined by the heart-rate stager of
:mod:`kdsleep.study.hr_recipe` and by the two controls a distillation gain must beat
(:data:`kdsleep.distill.variants.CONTROL_VARIANTS`): the heart-rate U-Time student with label smoothing
(``ecg_ls``, epsilon chosen on the validation subjects) and the same student distilled from the trained
``hr_student`` (``ecg_self``, self-distillation).
"""

from __future__ import annotations

from collections.abc import Iterable

from kdsleep.distill.variants import CONTROL_VARIANTS
from kdsleep.hr_bundle import RecipeSettings
from kdsleep.study.settings import DESCRIPTIONS, KD_MODELS, MODEL_VARIANTS

__all__ = [
    "CONTROL_ROWS",
    "KD_ROWS",
    "REFERENCE_ROW",
    "ROWS",
    "ROW_DESCRIPTIONS",
    "ROW_VARIANTS",
    "SEEDS_FORMAT",
    "STUDENT_PAIRS",
    "expand_rows",
    "recipe_settings",
]

#: Every row the study can run, in the order of the report, and what its data are.
ROWS: dict[str, str] = {
    "hrv_gbm": "real",
    "hr_stager": "real",
    "hr_student": "real",
    "ecg_ls": "real",
    "ecg_self": "real",
    "eeg_teacher": "semi-synthetic",
    "at_cl": "semi-synthetic",
    "sd_cl": "semi-synthetic",
    "at_sd_cl": "semi-synthetic",
}
#: What each row is.
ROW_DESCRIPTIONS: dict[str, str] = {
    "hrv_gbm": DESCRIPTIONS["hrv_gbm"],
    "hr_stager": "heart-rate stager (BiGRU over 28 HRV features + CNN over the 2-Hz heart-rate curve, "
    "whole nights; `kdsleep.study.hr_recipe`, early stopping on validation κ)",
    "hr_student": DESCRIPTIONS["hr_student"],
    "ecg_ls": "control: the heart-rate U-Time student with label smoothing (ε chosen on the validation "
    "subjects from `kdsleep.distill.variants.LABEL_SMOOTHING_GRID`)",
    "ecg_self": "control: the heart-rate U-Time student distilled (α = 0.5, T = 1) from the trained "
    "`hr_student` of the same fold and seed (self-distillation)",
    "eeg_teacher": DESCRIPTIONS["eeg_teacher"],
    "at_cl": DESCRIPTIONS["at_cl"],
    "sd_cl": DESCRIPTIONS["sd_cl"],
    "at_sd_cl": DESCRIPTIONS["at_sd_cl"],
}
#: The variant (:mod:`kdsleep.distill.variants`) behind each U-Time row.
ROW_VARIANTS: dict[str, str] = {**MODEL_VARIANTS, "ecg_ls": "ecg_ls", "ecg_self": "ecg_self"}
#: The distilled rows, the controls, and the student they are all compared with.
KD_ROWS: tuple[str, ...] = tuple(KD_MODELS)
CONTROL_ROWS: tuple[str, ...] = tuple(CONTROL_VARIANTS)
REFERENCE_ROW = "hr_student"
#: The comparisons of the heart-rate models without distillation (a family of their own): (A, B), B - A.
STUDENT_PAIRS: tuple[tuple[str, str], ...] = (
    ("hrv_gbm", "hr_student"),
    ("hrv_gbm", "hr_stager"),
    ("hr_student", "hr_stager"),
)
#: Format of the work folder and its unit files: version 3 holds one unit per training seed, fold and
#: class set (``units/seed-<s>/fold<f>/<grouping>/result.json``) with the rows run so far.
SEEDS_FORMAT = "kdsleep-slpdb-study-3"


def expand_rows(rows: Iterable[str] | None) -> list[str]:
    """The rows to run, with what they need, in report order.

    A distilled row needs the EEG teacher (``eeg_teacher``) and the self-distillation control needs the
    student that teaches it (``hr_student``); both are added. ``None`` means every row.

    Raises
    ------
    ValueError
        For a row name that is not in :data:`ROWS`, naming the known ones.
    """
    chosen = list(ROWS) if rows is None else list(rows)
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        raise ValueError(f"rows: unknown {unknown}; expected some of {list(ROWS)}")
    if not chosen:
        raise ValueError(f"rows: expected at least one of {list(ROWS)}")
    wanted = set(chosen)
    if wanted & set(KD_ROWS):
        wanted.add("eeg_teacher")
    if "ecg_self" in wanted:
        wanted.add("hr_student")
    return [r for r in ROWS if r in wanted]


def recipe_settings(quick: bool, seed: int) -> RecipeSettings:
    """The heart-rate stager's settings in the study (:class:`kdsleep.hr_bundle.RecipeSettings`): the
    recipe's own defaults with the training seed, or a tiny model for two epochs with ``--quick``."""
    if quick:
        return RecipeSettings(hidden=8, max_epochs=2, steps=3, patience=1, seed=seed)
    return RecipeSettings(seed=seed)
