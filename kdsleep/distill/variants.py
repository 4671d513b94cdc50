"""The variants of Joshi et al. as small configurations of one training loop.

Each variant is a list of stages run by :func:`kdsleep.distill.trainer.train_stage`:

========================  ========  ===========================================  ===========
variant                   reads     stages                                       weight_kd
========================  ========  ===========================================  ===========
``eeg_baseline``          EEG       supervised (WCE)                             0
``ecg_baseline``          ECG       supervised (WCE)                             0
``at``                    ECG       step 1: attention transfer only              --
``at_cl``                 ECG       step 1, then step 2 from step 1's weights     0
``sd_cl``                 ECG       step 2 only                                  0.5
``at_sd_cl``              ECG       step 1, then step 2 from step 1's weights     0.5
``ecg_ls``                ECG       supervised (WCE with label smoothing)        0
``ecg_self``              ECG       step 2 taught by the trained ECG baseline     0.5
========================  ========  ===========================================  ===========

Step 2 minimises ``(1 - weight_kd) * WCE + weight_kd * T**2 * KL`` (the paper's Eq. 4 with T = 1).

The last two rows are controls, not part of the paper: a distilled student that beats the ECG baseline may
only be regularised by the teacher's soft targets. ``ecg_ls`` smooths the labels instead (epsilon chosen on the
validation subjects from :data:`LABEL_SMOOTHING_GRID`), ``ecg_self`` distils from a frozen copy of the trained
ECG baseline (self-distillation) with the same weight and temperature as SD+CL. A distillation gain is only
credited where a KD variant beats both.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTROL_VARIANTS",
    "KD_VARIANTS",
    "LABEL_SMOOTHING_GRID",
    "VARIANTS",
    "Variant",
    "get_variant",
    "paper_alpha_to_weight_kd",
]

#: Label-smoothing epsilons tried by the ``ecg_ls`` control (the best validation score is kept).
LABEL_SMOOTHING_GRID: tuple[float, ...] = (0.05, 0.1, 0.2)


def paper_alpha_to_weight_kd(alpha: float) -> float:
    """The paper's alpha as kdsleep's ``weight_kd`` -- the one place the two names meet.

    Joshi et al. (Eq. 4) write the step-2 loss as ``(1 - alpha) * L_WCE + alpha * T**2 * L_KL``: alpha is
    the weight of the distillation term, which kdsleep calls ``weight_kd`` (as in
    :func:`kdsleep.ops.distillation_loss`). So ``weight_kd = alpha``: 0.5 for SD+CL and AT+SD+CL, 0 for AT+CL.
    (Other papers use alpha for the weight of the cross-entropy; kdsleep never uses the bare name.)
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


@dataclass(frozen=True)
class Variant:
    """One row of the paper's tables.

    Attributes
    ----------
    name : str
        Identifier (``at_cl``, ...).
    modality : {"eeg", "ecg"}
        The signal the trained model reads.
    feature_step : bool
        Run step 1 (attention transfer against the teacher's feature maps) first.
    final_step : bool
        Run step 2 (classification, with distillation when ``weight_kd > 0``).
    weight_kd : float
        Weight of the distillation term in step 2.
    teacher : {"eeg_baseline", "ecg_baseline"}
        The variant whose trained model teaches (``ecg_baseline``: self-distillation).
    label_smoothing : float
        Label-smoothing epsilon of step 2's cross-entropy (only with ``weight_kd = 0``).
    label_smoothing_grid : tuple of float
        Epsilons to try, one training each; the best validation score is kept (empty: use ``label_smoothing``).
    """

    name: str
    modality: str
    feature_step: bool
    final_step: bool
    weight_kd: float
    teacher: str = "eeg_baseline"
    label_smoothing: float = 0.0
    label_smoothing_grid: tuple[float, ...] = ()

    @property
    def uses_teacher(self) -> bool:
        """Whether a teacher is needed at all (attention transfer or distillation)."""
        return self.feature_step or self.weight_kd > 0

    @property
    def needs_teacher(self) -> bool:
        """Whether the EEG teacher is needed (attention transfer or distillation from ``eeg_baseline``)."""
        return self.uses_teacher and self.teacher == "eeg_baseline"

    @property
    def teacher_modality(self) -> str:
        """The input the teacher reads."""
        return "ecg" if self.teacher == "ecg_baseline" else "eeg"

    @property
    def stages(self) -> list[str]:
        """Names of the stages, in order: ``"at"`` (step 1) and/or ``"final"`` (step 2 or a baseline)."""
        return (["at"] if self.feature_step else []) + (["final"] if self.final_step else [])

    def to_dict(self) -> dict:
        data: dict = {
            "name": self.name,
            "modality": self.modality,
            "feature_step": self.feature_step,
            "final_step": self.final_step,
            "weight_kd": self.weight_kd,
        }
        # the controls' fields only where they differ from the paper's variants (older files stay equal)
        if self.teacher != "eeg_baseline":
            data["teacher"] = self.teacher
        if self.label_smoothing:
            data["label_smoothing"] = self.label_smoothing
        if self.label_smoothing_grid:
            data["label_smoothing_grid"] = list(self.label_smoothing_grid)
        return data


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("eeg_baseline", "eeg", feature_step=False, final_step=True, weight_kd=0.0),
        Variant("ecg_baseline", "ecg", feature_step=False, final_step=True, weight_kd=0.0),
        Variant("at", "ecg", feature_step=True, final_step=False, weight_kd=0.0),
        Variant("at_cl", "ecg", feature_step=True, final_step=True, weight_kd=paper_alpha_to_weight_kd(0.0)),
        Variant("sd_cl", "ecg", feature_step=False, final_step=True, weight_kd=paper_alpha_to_weight_kd(0.5)),
        Variant(
            "at_sd_cl", "ecg", feature_step=True, final_step=True, weight_kd=paper_alpha_to_weight_kd(0.5)
        ),
        Variant(
            "ecg_ls",
            "ecg",
            feature_step=False,
            final_step=True,
            weight_kd=0.0,
            label_smoothing_grid=LABEL_SMOOTHING_GRID,
        ),
        Variant(
            "ecg_self",
            "ecg",
            feature_step=False,
            final_step=True,
            weight_kd=paper_alpha_to_weight_kd(0.5),
            teacher="ecg_baseline",
        ),
    )
}

#: The variants of Tables I and II, in the paper's order.
TABLE_VARIANTS = ("eeg_baseline", "ecg_baseline", "sd_cl", "at_cl", "at_sd_cl")
#: The distilled students.
KD_VARIANTS = ("sd_cl", "at_cl", "at_sd_cl")
#: The controls a distillation gain must beat (label smoothing, self-distillation).
CONTROL_VARIANTS = ("ecg_ls", "ecg_self")


def get_variant(name: str) -> Variant:
    """Look up a variant by name, with the known names in the error."""
    key = str(name).strip().lower().replace("-", "_").replace("+", "_")
    try:
        return VARIANTS[key]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; expected one of {list(VARIANTS)}") from None
