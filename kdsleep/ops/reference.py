"""Pure-PyTorch reference implementations of the kdsleep ops.

They are the test oracle for the fused kernels and the fallback when the compiled extension is missing.
They follow the same conventions (see :mod:`kdsleep.ops`): the teacher is detached, half-precision inputs are
computed in float32, rows whose label equals ``ignore_index`` (or whose mask is False) are excluded, and a
loss with no valid rows is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "attention_map",
    "attention_transfer_loss",
    "tempered_kl",
    "distillation_loss",
    "self_distillation_loss",
]


def _opmath(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def attention_map(features: Tensor, p: float = 2.0, reduction: str = "mean") -> Tensor:
    """Attention map of (B, C, L) features: mean (or sum) over channels of ``|F|^p``, shape (B, L)."""
    x = _opmath(features)
    powered = x.pow(2) if p == 2 else x.abs().pow(p)
    return powered.mean(1) if reduction == "mean" else powered.sum(1)


def attention_transfer_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    *,
    p: float = 2.0,
    weights: Sequence[float] | None = None,
    distance: str = "squared_l2",
    mode: str = "canonical",
    eps: float = 1e-12,
    teacher_maps: bool = False,
) -> Tensor:
    """Reference attention-transfer loss; see :func:`kdsleep.ops.attention_transfer_loss`.

    With ``teacher_maps=True`` the teacher entries are precomputed (B, L_j) normalised maps.

    Per layer, with unit-norm maps ``qs``, ``qt`` of shape (B, L_j): ``squared_l2`` is
    ``((qs - qt) ** 2).sum(1).mean()``, ``squared_mean`` (alias ``squared``) is ``((qs - qt) ** 2).mean()``,
    ``l2`` is ``(qs - qt).norm(dim=1).mean()``.
    """
    n = len(student)
    if weights is None:
        weights = [1.0] * n if mode == "canonical" else [1.0 / n] * n
    total = None
    for s, t, w in zip(student, teacher, weights, strict=True):
        t = t.detach()
        if teacher_maps:
            t_map = _opmath(t.to(s.dtype)) if s.dtype == torch.float64 else t.float()
        if mode == "canonical":
            qs = F.normalize(attention_map(s, p, "mean"), dim=1, eps=eps)
            qt = F.normalize(t_map if teacher_maps else attention_map(t, p, "mean"), dim=1, eps=eps)
            if distance == "squared_l2":
                term = (qs - qt).pow(2).sum(1).mean()
            elif distance in ("squared_mean", "squared"):
                term = (qs - qt).pow(2).mean()
            elif distance == "l2":
                term = (qs - qt).norm(dim=1).mean()
            else:
                raise ValueError(f"attention_transfer_loss: unknown distance {distance!r}")
        else:
            qs = F.normalize(attention_map(s, p, "sum"), dim=0, eps=eps)
            qt = F.normalize(t_map if teacher_maps else attention_map(t, p, "sum"), dim=0, eps=eps)
            term = (qs - qt).abs().mean()
        total = w * term if total is None else total + w * term
    assert total is not None
    return total


def _rows(logits: Tensor) -> Tensor:
    """(N, K) or (B, K, E) logits as (rows, K), rows ordered (b, e)."""
    return logits if logits.dim() == 2 else logits.movedim(1, -1).reshape(-1, logits.shape[1])


def _tempered_kl_rows(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    log_ps = F.log_softmax(_opmath(_rows(student)) / temperature, dim=1)
    log_pt = F.log_softmax(_opmath(_rows(teacher.detach())) / temperature, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1)


def tempered_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    kl_reduction: str = "row",
) -> Tensor:
    """Reference tempered KL divergence; see :func:`kdsleep.ops.tempered_kl`.

    ``kl_reduction="row"`` divides the summed KL by the valid rows, ``"element"`` by the valid rows x K.
    """
    kl = _tempered_kl_rows(student_logits, teacher_logits, temperature)
    per = _kl_elements_per_row(kl_reduction, student_logits.shape[1])
    if mask is None:
        return kl.sum() / (kl.shape[0] * per)
    valid = mask.reshape(-1)
    count = valid.sum().clamp_min(1).to(kl.dtype) * per
    return torch.where(valid, kl, torch.zeros_like(kl)).sum() / count


def _kl_elements_per_row(kl_reduction: str, classes: int) -> int:
    if kl_reduction == "row":
        return 1
    if kl_reduction == "element":
        return classes
    raise ValueError(f"kl_reduction must be 'row' or 'element', got {kl_reduction!r}")


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
    """Reference (1 - weight_kd) * WCE + weight_kd * T^2 * KL; see :func:`kdsleep.ops.distillation_loss`."""
    per = _kl_elements_per_row(kl_reduction, student_logits.shape[1])
    s = _opmath(_rows(student_logits))
    y = labels.reshape(-1).long()
    valid = y != ignore_index
    y_safe = torch.where(valid, y, torch.zeros_like(y))
    nll = -F.log_softmax(s, dim=1).gather(1, y_safe[:, None]).squeeze(1)
    w = class_weights.to(s.dtype)[y_safe] if class_weights is not None else torch.ones_like(nll)
    w = w * valid.to(s.dtype)
    wsum = w.sum()
    weighted_nll = torch.where(valid, w * nll, torch.zeros_like(nll))
    wce = torch.where(wsum > 0, weighted_nll.sum() / wsum.clamp_min(torch.finfo(s.dtype).tiny), wsum * 0)
    kl_rows = _tempered_kl_rows(student_logits, teacher_logits, temperature)
    kl_rows = torch.where(valid, kl_rows, torch.zeros_like(kl_rows))
    kl = kl_rows.sum() / (valid.sum().clamp_min(1).to(kl_rows.dtype) * per)
    return (1.0 - weight_kd) * wce + weight_kd * temperature**2 * kl


def self_distillation_loss(
    student: Tensor,
    teacher: Tensor,
    center: Tensor,
    *,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> Tensor:
    """Reference DINO cross-entropy over (teacher view, other student view) pairs; see
    :func:`kdsleep.ops.self_distillation_loss`."""
    log_ps = F.log_softmax(_opmath(student) / student_temperature, dim=-1)
    pt = F.softmax((_opmath(teacher.detach()) - _opmath(center.detach())) / teacher_temperature, dim=-1)
    total = None
    pairs = 0
    for vt in range(pt.shape[0]):
        for vs in range(log_ps.shape[0]):
            if vs == vt:
                continue
            term = -(pt[vt] * log_ps[vs]).sum(-1).mean()
            total = term if total is None else total + term
            pairs += 1
    assert total is not None
    return total / pairs
