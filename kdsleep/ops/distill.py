r"""Softmax distillation (SD) and the SD+CL loss of Joshi et al. (arXiv 2112.07252, Eq. 1-4).

On per-epoch logits flattened to rows (``N = B * n_epochs`` rows of ``K`` classes):

* :math:`p_T(z) = \operatorname{softmax}(z / T)`;
* ``kl_reduction="row"`` (default): :math:`\mathrm{KL} = \frac{1}{N_\text{valid}} \sum_\text{rows} \sum_k
  p_T(t)_k (\log p_T(t)_k - \log p_T(s)_k)`, the mean over rows of each row's KL divergence;
* ``kl_reduction="element"``: :math:`\mathrm{KL} / K`, the mean over the :math:`N_\text{valid} K` elements,
  which is what ``torch.nn.KLDivLoss()`` (``reduction="mean"``) returns on
  ``(log_softmax(s / T), softmax(t / T))``, as in the authors' code. At ``weight_kd = 0.5`` and K = 5 the
  distillation term is 5 times lighter than with ``"row"``;
* weighted cross-entropy :math:`\mathrm{WCE} = \sum_i w_{y_i}(-\log\operatorname{softmax}(s_i)_{y_i}) /
  \sum_i w_{y_i}` (PyTorch's weighted mean, Eq. 1-2);
* SD+CL (Eq. 4): :math:`(1 - \alpha)\,\mathrm{WCE} + \alpha T^2 \mathrm{KL}`, with the paper's
  :math:`\alpha` named ``weight_kd`` here (0.5 for SD+CL and AT+SD+CL, 0 for AT+CL; T = 1 in the paper).

Rows whose label is ``ignore_index`` (or whose mask is False) are excluded from both terms; with no valid
rows the loss and its gradient are 0. One fused kernel computes the loss and the gradient with respect to
the student logits; the backward only scales that gradient. The teacher receives no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdsleep.ops import _extension, reference

__all__ = ["KL_REDUCTIONS", "tempered_kl", "distillation_loss"]

#: Accepted values of ``kl_reduction``.
KL_REDUCTIONS = ("row", "element")

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _rows_of(x: Tensor) -> int:
    return x.shape[0] if x.dim() == 2 else x.shape[0] * x.shape[2]


def _check_logits(op: str, student: Tensor, teacher: Tensor, temperature: float) -> None:
    for name, x in (("student_logits", student), ("teacher_logits", teacher)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
        if x.dim() not in (2, 3):
            raise ValueError(f"{op}: {name} must be (N, K) or (B, K, n_epochs), got shape {tuple(x.shape)}")
        if x.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} has dtype {x.dtype}; expected a floating-point dtype")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{op}: student_logits {tuple(student.shape)} and teacher_logits {tuple(teacher.shape)} differ in shape"
        )
    if student.device != teacher.device:
        raise ValueError(f"{op}: student_logits on {student.device}, teacher_logits on {teacher.device}")
    if student.shape[1] == 0:
        raise ValueError(f"{op}: logits have no classes (shape {tuple(student.shape)})")
    if not (temperature > 0 and temperature != float("inf")):
        raise ValueError(f"{op}: temperature must be a finite number > 0, got {temperature}")


def _check_row_tensor(op: str, name: str, x: Tensor, logits: Tensor, dtypes: tuple[torch.dtype, ...]) -> None:
    expected = (logits.shape[0],) if logits.dim() == 2 else (logits.shape[0], logits.shape[2])
    if x.dtype not in dtypes:
        raise TypeError(f"{op}: {name} has dtype {x.dtype}; expected one of {[str(d) for d in dtypes]}")
    if x.numel() != _rows_of(logits) or (x.dim() != 1 and tuple(x.shape) != expected):
        raise ValueError(
            f"{op}: {name} has shape {tuple(x.shape)}; expected {expected} (one entry per row of the logits "
            f"{tuple(logits.shape)})"
        )
    if x.device != logits.device:
        raise ValueError(f"{op}: {name} is on {x.device}, the logits on {logits.device}")


def _wants_grad(x: Tensor) -> bool:
    return x.requires_grad and torch.is_grad_enabled()


def _kl_scale(op: str, kl_reduction: str, classes: int) -> float:
    """Factor from the per-row mean KL that the kernel computes to the requested reduction."""
    if kl_reduction == "row":
        return 1.0
    if kl_reduction == "element":
        return 1.0 / classes
    raise ValueError(f"{op}: kl_reduction must be 'row' or 'element', got {kl_reduction!r}")


def tempered_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    kl_reduction: str = "row",
) -> Tensor:
    """KL divergence between temperature-softened teacher and student distributions.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor
        (N, K) or (B, K, n_epochs) logits. The teacher is detached and cast to the student's dtype.
    temperature : float
        Softmax temperature T (the paper uses 1).
    mask : Tensor of bool, optional
        (N,) or (B, n_epochs); rows where it is False are excluded from the mean.
    kl_reduction : {"row", "element"}
        Mean over valid rows of each row's KL (default), or mean over the valid rows' elements, i.e. the
        row mean divided by K (``torch.nn.KLDivLoss()``'s default reduction, as in the authors' code).

    Returns
    -------
    Tensor
        Scalar KL (no :math:`T^2` factor), float32 (float64 for float64 inputs).
    """
    temperature = float(temperature)
    _check_logits("tempered_kl", student_logits, teacher_logits, temperature)
    scale = _kl_scale("tempered_kl", kl_reduction, student_logits.shape[1])
    if mask is not None:
        _check_row_tensor("tempered_kl", "mask", mask, student_logits, (torch.bool,))
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if not _extension.has_kernel(student_logits.device, "softmax_distillation"):
        _extension.warn_fallback("tempered_kl", student_logits.device.type)
        return reference.tempered_kl(
            student_logits, teacher_logits, temperature=temperature, mask=mask, kl_reduction=kl_reduction
        )
    loss, _ = torch.ops.kdsleep.softmax_distillation(
        student_logits,
        teacher_logits,
        None,
        mask,
        None,
        -1,
        0.0,
        scale,
        temperature,
        _wants_grad(student_logits),
    )
    return loss


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    class_weights: Tensor | None = None,
    weight_kd: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -1,
    kl_reduction: str = "row",
) -> Tensor:
    """SD+CL loss of Joshi et al. (Eq. 4): ``(1 - weight_kd) * WCE + weight_kd * T**2 * KL_T``.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor
        (N, K) or (B, K, n_epochs) logits. The teacher is detached and cast to the student's dtype.
    labels : Tensor of int
        (N,) or (B, n_epochs) class indices; ``ignore_index`` marks unscored epochs.
    class_weights : Tensor, optional
        (K,) weights of the cross-entropy (computed from the training split).
    weight_kd : float
        The paper's alpha: 0.5 for SD+CL and AT+SD+CL, 0 for AT+CL and the baselines.
    temperature : float
        Softmax temperature of the distillation term (the paper uses 1).
    ignore_index : int
        Label of rows excluded from both terms (-1, as the data layer marks unscored epochs).
    kl_reduction : {"row", "element"}
        Reduction of ``KL_T``: mean over valid rows of each row's KL (default), or the element mean of the
        authors' ``torch.nn.KLDivLoss()``, which is the row mean divided by K (see the module docstring).
    """
    temperature = float(temperature)
    weight_kd = float(weight_kd)
    op = "distillation_loss"
    _check_logits(op, student_logits, teacher_logits, temperature)
    _check_row_tensor(op, "labels", labels, student_logits, (torch.int64, torch.int32))
    if not 0.0 <= weight_kd <= 1.0:
        raise ValueError(f"{op}: weight_kd must be in [0, 1], got {weight_kd}")
    k = student_logits.shape[1]
    scale = _kl_scale(op, kl_reduction, k)
    if class_weights is not None:
        if class_weights.dim() != 1 or class_weights.shape[0] != k:
            raise ValueError(f"{op}: class_weights must have shape ({k},), got {tuple(class_weights.shape)}")
        if class_weights.device != student_logits.device:
            raise ValueError(
                f"{op}: class_weights on {class_weights.device}, logits on {student_logits.device}"
            )
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if not _extension.has_kernel(student_logits.device, "softmax_distillation"):
        _extension.warn_fallback(op, student_logits.device.type)
        return reference.distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            class_weights=class_weights,
            weight_kd=weight_kd,
            temperature=temperature,
            ignore_index=ignore_index,
            kl_reduction=kl_reduction,
        )
    loss, _ = torch.ops.kdsleep.softmax_distillation(
        student_logits,
        teacher_logits,
        labels,
        None,
        class_weights,
        int(ignore_index),
        1.0 - weight_kd,
        weight_kd * temperature**2 * scale,
        temperature,
        _wants_grad(student_logits),
    )
    return loss


def _register() -> None:
    @torch.library.register_fake("kdsleep::softmax_distillation")
    def _(
        student,
        teacher,
        labels,
        mask,
        class_weights,
        ignore_index,
        weight_ce,
        weight_kl,
        temperature,
        compute_grad,
    ):
        acc = torch.float64 if student.dtype == torch.float64 else torch.float32
        grad_shape = student.shape if compute_grad else (0,)
        return student.new_empty((), dtype=acc), student.new_empty(grad_shape)

    # Autograd is registered in C++ (csrc/kdsleep_ops.cpp): the backward scales the saved gradient.


if "softmax_distillation" in _extension.OPS:
    _register()
