"""The training losses, composed from the fused ops of :mod:`kdsleep.ops`.

* :func:`class_weights` -- the weights of the weighted cross-entropy (WCE) from the training labels.
* :class:`FinalLoss` -- step 2 and the baselines: ``(1 - weight_kd) * WCE + weight_kd * T**2 * KL``
  (Joshi et al., Eq. 1-2 and 4) through :func:`kdsleep.ops.distillation_loss`.
* :class:`FeatureLoss` -- step 1: attention transfer between the student's and the teacher's feature maps
  (Eq. 3) through :func:`kdsleep.ops.attention_transfer_loss`; by default every layer's term is the
  squared L2 distance of unit-norm maps, independent of the layer's length.

The reference (pure PyTorch) implementations can be swapped in with ``backend="reference"`` (for the
benchmark and as a test oracle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from kdsleep import ops
from kdsleep.ops import reference

__all__ = ["FeatureLoss", "FinalLoss", "class_weights"]


def _ops(backend: str) -> ModuleType:
    if backend == "fused":
        return ops
    if backend == "reference":
        return reference
    raise ValueError(f"loss backend must be 'fused' or 'reference', got {backend!r}")


def class_weights(counts: Sequence[int] | np.ndarray, *, source: str = "training split") -> Tensor:
    """Inverse-frequency class weights ``w_k = N / (K * n_k)`` from the class counts of the training split.

    ``N`` is the number of scored training epochs, ``K`` the number of classes and ``n_k`` the epochs of
    class ``k``; a balanced split gives weights of 1, and the weighted mean of the weights over the training
    epochs is 1 (the "balanced" weighting of scikit-learn). A class without training epochs cannot
    be learnt and raises.

    Parameters
    ----------
    counts : sequence of int
        Scored training epochs per class.
    source : str
        Name of the data, for error messages.

    Raises
    ------
    ValueError
        When a class has no training epoch.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(
            f"{source}: class counts must be a list of at least two counts, got {counts.tolist()}"
        )
    missing = np.flatnonzero(counts <= 0)
    if missing.size:
        raise ValueError(
            f"{source}: classes {missing.tolist()} have no scored epoch in the training split (counts "
            f"{counts.astype(int).tolist()}); use more subjects or a coarser stage grouping"
        )
    weights = counts.sum() / (counts.size * counts)
    return torch.as_tensor(weights, dtype=torch.float32)


@dataclass
class FinalLoss:
    """Weighted cross-entropy with optional softmax distillation from the teacher's logits.

    Parameters
    ----------
    class_weights : Tensor
        (K,) weights of the cross-entropy (:func:`class_weights`).
    weight_kd : float
        Weight of the distillation term (the paper's alpha; 0 for the baselines and AT+CL, 0.5 for SD+CL
        and AT+SD+CL).
    temperature : float
        Softmax temperature T (1 in the paper).
    backend : {"fused", "reference"}
        Fused kernels of :mod:`kdsleep.ops` or the pure-PyTorch reference.
    kl_reduction : {"row", "element"}
        Reduction of the KL term: mean over epochs of each epoch's KL (``"row"``), or the element mean of the
        authors' ``torch.nn.KLDivLoss()`` (``"element"``, the row mean divided by the number of classes K).
        See :func:`kdsleep.ops.distillation_loss`.
    label_smoothing : float
        Epsilon of label smoothing in [0, 1) (the ``ecg_ls`` control); only with ``weight_kd = 0``, where the
        loss is :func:`torch.nn.functional.cross_entropy` with the class weights, ``ignore_index=-1`` and
        this ``label_smoothing``.
    """

    class_weights: Tensor
    weight_kd: float = 0.0
    temperature: float = 1.0
    backend: str = "fused"
    kl_reduction: str = "row"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ValueError(f"FinalLoss: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing > 0 and self.weight_kd > 0:
            raise ValueError(
                "FinalLoss: label_smoothing is a control for the distillation term and needs weight_kd = 0, "
                f"got weight_kd = {self.weight_kd}"
            )

    def __call__(
        self, student_logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None
    ) -> Tensor:
        """Loss of logits ``(B, K, n_epochs)`` against labels ``(B, n_epochs)`` (``-1`` ignored)."""
        # The losses run in float32 whatever autocast produced, for a stable log-softmax.
        student_logits = student_logits.float()
        if self.label_smoothing > 0:
            weights = self.class_weights.to(device=student_logits.device, dtype=torch.float32)
            return torch.nn.functional.cross_entropy(
                student_logits,
                labels.long(),
                weight=weights,
                ignore_index=-1,
                label_smoothing=float(self.label_smoothing),
            )
        if teacher_logits is None:
            if self.weight_kd > 0:
                raise ValueError("FinalLoss: weight_kd > 0 needs the teacher's logits")
            # with weight_kd = 0 the teacher term has no weight; the student's own logits fill the slot
            teacher_logits = student_logits.detach()
        weights = self.class_weights.to(device=student_logits.device, dtype=torch.float32)
        return _ops(self.backend).distillation_loss(
            student_logits,
            teacher_logits.float(),
            labels,
            class_weights=weights,
            weight_kd=self.weight_kd,
            temperature=self.temperature,
            ignore_index=-1,
            kl_reduction=self.kl_reduction,
        )


@dataclass
class FeatureLoss:
    """Attention transfer over every tapped feature map (step 1).

    Parameters
    ----------
    weights : list of float or None
        Per-map weights; ``None`` is 1 per map in canonical mode. For ``mode="joshi"`` pass
        :meth:`UTime.joshi_tap_weights` (the authors' averaging over five layer groups).
    mode : {"canonical", "joshi"}
        See :func:`kdsleep.ops.attention_transfer_loss`.
    p : float
        Exponent of the attention maps (2).
    distance : {"squared_l2", "squared_mean", "squared", "l2"}
        Distance of the canonical mode. ``"squared_l2"`` (default) is the per-sample squared L2 distance of
        the unit-norm attention maps, bounded in [0, 4] whatever the layer length, so every layer counts;
        ``"squared_mean"`` (alias ``"squared"``) divides each layer's term by its length. See
        :func:`kdsleep.ops.attention_transfer_loss`.
    backend : {"fused", "reference"}
        As for :class:`FinalLoss`.
    """

    weights: list[float] | None = None
    mode: str = "canonical"
    p: float = 2.0
    distance: str = "squared_l2"
    backend: str = "fused"

    def __call__(self, student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> Tensor:
        student_maps = [m.float() for m in student_maps]
        teacher_maps = [m.detach().float() for m in teacher_maps]
        kwargs = {"p": self.p, "weights": self.weights, "mode": self.mode}
        if self.mode == "canonical":
            kwargs["distance"] = self.distance
        return _ops(self.backend).attention_transfer_loss(student_maps, teacher_maps, **kwargs)
