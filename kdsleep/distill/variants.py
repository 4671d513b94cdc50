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
========================  ========  ===========================================  ===========

Step 2 minimises ``(1 - weight_kd) * WCE + weight_kd * T**2 * KL`` (the paper's Eq. 4 with T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KD_VARIANTS", "VARIANTS", "Variant", "get_variant", "paper_alpha_to_weight_kd"]


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
    """

    name: str
    modality: str
    feature_step: bool
    final_step: bool
    weight_kd: float

    @property
    def needs_teacher(self) -> bool:
        """Whether the EEG teacher is needed (attention transfer or distillation)."""
        return self.feature_step or self.weight_kd > 0

    @property
    def stages(self) -> list[str]:
        """Names of the stages, in order: ``"at"`` (step 1) and/or ``"final"`` (step 2 or a baseline)."""
        return (["at"] if self.feature_step else []) + (["final"] if self.final_step else [])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "modality": self.modality,
            "feature_step": self.feature_step,
            "final_step": self.final_step,
            "weight_kd": self.weight_kd,
        }


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
    )
}

#: The variants of Tables I and II, in the paper's order.
TABLE_VARIANTS = ("eeg_baseline", "ecg_baseline", "sd_cl", "at_cl", "at_sd_cl")
#: The distilled students.
KD_VARIANTS = ("sd_cl", "at_cl", "at_sd_cl")


def get_variant(name: str) -> Variant:
    """Look up a variant by name, with the known names in the error."""
    key = str(name).strip().lower().replace("-", "_").replace("+", "_")
    try:
        return VARIANTS[key]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; expected one of {list(VARIANTS)}") from None
