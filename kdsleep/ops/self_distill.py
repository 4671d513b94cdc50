r"""Self-distillation (DINO) cross-entropy for the 12-lead ECG self-supervised pre-training.

Following Caron et al. (DINO, ICCV 2021) as used by Phan et al. (arXiv 2210.06297): for student outputs of
:math:`V_s` views and teacher outputs of :math:`V_t` views (the global crops; view :math:`v` of the teacher
and of the student is the same crop for :math:`v < \min(V_s, V_t)`), each of shape (N, K),

* :math:`p_t = \operatorname{softmax}((t - c) / \tau_t)` (teacher centred and sharpened),
  :math:`\log p_s = \operatorname{log\_softmax}(s / \tau_s)`;
* :math:`L = \frac{1}{P N} \sum_{v_t} \sum_{v_s \ne v_t} \sum_n -\sum_k p_t[v_t]_{n,k} \log p_s[v_s]_{n,k}`
  over the :math:`P = V_t V_s - \min(V_t, V_s)` pairs of different views;
* :math:`\partial L / \partial s[v_s] = (m_{v_s} p_s[v_s] - \sum_{v_t \ne v_s} p_t[v_t]) / (\tau_s P N)`, where
  :math:`m_{v_s}` is the number of teacher views paired with :math:`v_s`.

One fused kernel computes the loss and that gradient; the backward only scales it. The teacher and the
centre receive no gradient (the teacher is an EMA of the student; the centre an EMA of teacher outputs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdsleep.ops import _extension, reference

__all__ = ["self_distillation_loss"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def self_distillation_loss(
    student: Tensor,
    teacher: Tensor,
    center: Tensor,
    *,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> Tensor:
    """DINO cross-entropy between centred, sharpened teacher outputs and student outputs of other views.

    Parameters
    ----------
    student : Tensor
        (V_s, N, K) student head outputs for every view (global crops first, then local crops).
    teacher : Tensor
        (V_t, N, K) teacher head outputs for the global crops (detached, cast to the student's dtype).
    center : Tensor
        (K,) running centre of the teacher outputs.
    student_temperature, teacher_temperature : float
        Softmax temperatures (DINO and Phan et al.: 0.1 and 0.04).

    Returns
    -------
    Tensor
        Scalar loss (float32; float64 for float64 inputs).
    """
    op = "self_distillation_loss"
    for name, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{op}: {name} must be a (views, N, K) tensor, got {shape}")
        if x.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} has dtype {x.dtype}; expected a floating-point dtype")
    if student.shape[1:] != teacher.shape[1:]:
        raise ValueError(
            f"{op}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in (N, K)"
        )
    if center.dim() != 1 or center.shape[0] != student.shape[2]:
        raise ValueError(f"{op}: center must have shape ({student.shape[2]},), got {tuple(center.shape)}")
    if not 1 <= student.shape[0] <= 64 or not 1 <= teacher.shape[0] <= 64:
        raise ValueError(f"{op}: between 1 and 64 views each, got {student.shape[0]} and {teacher.shape[0]}")
    if student.shape[0] * teacher.shape[0] <= min(student.shape[0], teacher.shape[0]):
        raise ValueError(f"{op}: no pair of different views: use at least two views")
    for name, value in (
        ("student_temperature", student_temperature),
        ("teacher_temperature", teacher_temperature),
    ):
        if not (float(value) > 0 and float(value) != float("inf")):
            raise ValueError(f"{op}: {name} must be a finite number > 0, got {value}")
    if len({student.device, teacher.device, center.device}) != 1:
        raise ValueError(f"{op}: student, teacher and center must be on one device")
    teacher = teacher.detach().to(student.dtype)
    center = center.detach()
    if not _extension.has_kernel(student.device, "self_distillation"):
        _extension.warn_fallback(op, student.device.type)
        return reference.self_distillation_loss(
            student,
            teacher,
            center,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
        )
    wants_grad = student.requires_grad and torch.is_grad_enabled()
    loss, _ = torch.ops.kdsleep.self_distillation(
        student, teacher, center, float(student_temperature), float(teacher_temperature), wants_grad
    )
    return loss


def _register() -> None:
    @torch.library.register_fake("kdsleep::self_distillation")
    def _(student, teacher, center, student_temperature, teacher_temperature, compute_grad):
        acc = torch.float64 if student.dtype == torch.float64 else torch.float32
        grad_shape = student.shape if compute_grad else (0,)
        return student.new_empty((), dtype=acc), student.new_empty(grad_shape)

    # Autograd is registered in C++ (csrc/kdsleep_ops.cpp): the backward scales the saved gradient.


if "self_distillation" in _extension.OPS:
    _register()
