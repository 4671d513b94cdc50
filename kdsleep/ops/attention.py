r"""Attention transfer across all U-Time layers (feature distillation).

For layer :math:`j` with student features :math:`S_j \in \mathbb{R}^{B \times C^s_j \times L_j}` and teacher
features :math:`T_j \in \mathbb{R}^{B \times C^t_j \times L_j}` (channel counts may differ, lengths must match):

* attention map :math:`a(F)_{b,l} = \frac{1}{C}\sum_c |F_{b,c,l}|^p` (``p = 2``);
* per-sample normalisation :math:`q(F)_b = a(F)_b / \max(\lVert a(F)_b \rVert_2, \epsilon)` over the
  :math:`L_j` positions;
* the per-layer distance :math:`\ell_j`, one of

  - ``distance="squared_l2"`` (default): :math:`\ell_j = \frac{1}{B}\sum_b \lVert q(S_j)_b -
    q(T_j)_b\rVert_2^2 = \frac{1}{B}\sum_b \sum_{l=1}^{L_j} (q(S_j)_{b,l} - q(T_j)_{b,l})^2`, the squared
    distance between unit-norm maps, summed over positions and averaged over the batch. It lies in
    :math:`[0, 4]` (:math:`[0, 2]` for the non-negative maps of real features) whatever the layer length
    :math:`L_j`, so every layer counts on the same scale;
  - ``distance="squared_mean"`` (alias ``"squared"``, the behaviour before ``squared_l2`` existed):
    :math:`\ell_j = \operatorname{mean}_{b,l} (q(S_j) - q(T_j))^2 = \ell_j^{\text{squared\_l2}} / L_j`, the
    element mean of Zagoruyko & Komodakis' code (ICLR 2017). Each term scales as :math:`1/L_j`: on the
    35-epoch U-Time layer set (:math:`L_j` from 70 to 210 000) the shortest layers outweigh the longest by
    about :math:`3000\times`;
  - ``distance="l2"``: :math:`\ell_j = \operatorname{mean}_b \lVert q(S_j)_b - q(T_j)_b\rVert_2`, Eq. 3 of
    Joshi et al. (arXiv 2112.07252), in :math:`[0, 2]`, also independent of :math:`L_j`;
* total :math:`\sum_j w_j \ell_j`; the gradient flows to the student only.

``squared_l2`` runs the ``squared_mean`` kernel with the layer weights :math:`w_j L_j`, which is the same sum.

``mode="joshi"`` reproduces the authors' public code: sum instead of mean over channels, normalisation across
the batch dimension (for each position), L1 distance averaged over (B, L), and by default the mean over the
given layers (pass ``weights`` to reproduce their five layer groups).

Gradient used by the kernels (canonical mode). With :math:`u = q(S)_b`, :math:`v = q(T)_b`,
:math:`n_s = \max(\lVert a_s\rVert, \epsilon)` and :math:`g = \partial\ell/\partial u = c\,(u - v)`
(:math:`c = 2w/(BL)` for ``squared_mean``, :math:`2w/B` for ``squared_l2``, :math:`w/(B\lVert u-v\rVert)`
for l2), the normalisation's Jacobian gives :math:`\partial\ell/\partial a_s = \alpha a_s + \beta a_t` with
:math:`\alpha = c(1 - k)/n_s^2`, :math:`\beta = -c/(n_s n_t)`, :math:`k = u\cdot u - u\cdot v` (0 when the
norm is clamped). Hence three sums per (layer, sample), :math:`\sum a_s^2, \sum a_t^2, \sum a_s a_t`, decide
the loss and the gradient, which is :math:`p\,\mathrm{sign}(S)|S|^{p-1}(\alpha a_s + \beta a_t)/C^s`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kdsleep.ops import _extension, reference

__all__ = ["AT_DISTANCES", "attention_maps", "attention_transfer_loss"]

#: Accepted values of ``distance`` (``"squared"`` is an alias of ``"squared_mean"``).
AT_DISTANCES = ("squared_l2", "squared_mean", "squared", "l2")

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_layers(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> None:
    if isinstance(student, Tensor) or isinstance(teacher, Tensor):
        raise TypeError(
            "attention_transfer_loss: student and teacher must be lists of (B, C, L) tensors, one per layer"
        )
    if len(student) == 0:
        raise ValueError("attention_transfer_loss: the list of student feature maps is empty")
    if len(student) != len(teacher):
        raise ValueError(
            f"attention_transfer_loss: {len(student)} student feature maps but {len(teacher)} teacher feature maps"
        )
    ref = student[0]
    for side, layers in (("student", student), ("teacher", teacher)):
        for j, f in enumerate(layers):
            if not isinstance(f, Tensor):
                raise TypeError(
                    f"attention_transfer_loss: {side}[{j}] is a {type(f).__name__}, expected a Tensor"
                )
            if f.dim() != 3:
                raise ValueError(
                    f"attention_transfer_loss: {side}[{j}] must be (B, C, L), got shape {tuple(f.shape)}"
                )
            if f.dtype not in _FLOAT_DTYPES:
                raise TypeError(
                    f"attention_transfer_loss: {side}[{j}] has dtype {f.dtype}; expected float16, bfloat16, "
                    "float32 or float64"
                )
            if f.device != ref.device:
                raise ValueError(
                    f"attention_transfer_loss: {side}[{j}] is on {f.device}, student[0] on {ref.device}"
                )
            if f.shape[0] != ref.shape[0]:
                raise ValueError(
                    f"attention_transfer_loss: {side}[{j}] has batch size {f.shape[0]}, student[0] has {ref.shape[0]}"
                )
            if f.shape[1] == 0 or f.shape[2] == 0 or f.shape[0] == 0:
                raise ValueError(f"attention_transfer_loss: {side}[{j}] is empty: shape {tuple(f.shape)}")
    for j, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.dtype != ref.dtype:
            raise TypeError(
                f"attention_transfer_loss: student[{j}] has dtype {s.dtype} but student[0] has {ref.dtype}; "
                "all student layers must share one dtype"
            )
        if s.shape[2] != t.shape[2]:
            raise ValueError(
                f"attention_transfer_loss: layer {j} lengths differ: student L={s.shape[2]}, teacher L={t.shape[2]} "
                "(teacher and student must share the architecture's temporal resolution)"
            )


def attention_maps(
    features: Sequence[Tensor],
    *,
    p: float = 2.0,
    mode: str = "canonical",
    eps: float = 1e-12,
    dtype: torch.dtype | None = None,
) -> list[Tensor]:
    """Normalised attention maps of feature maps, one (B, L_j) tensor per layer, without gradient.

    These are the maps :func:`attention_transfer_loss` compares (:math:`q(F)` of the module docstring:
    per-sample unit L2 norm over positions for ``mode="canonical"``, unit norm across the batch at each
    position for ``mode="joshi"``). A frozen teacher's maps can be computed once, stored (``dtype=float16``
    halves the storage, at the tolerances given for ``teacher_maps`` in :func:`attention_transfer_loss`)
    and passed back with ``teacher_maps=True``: B x L_j values per layer instead of B x C_j x L_j.

    Parameters
    ----------
    features : list of Tensor
        (B, C_j, L_j) feature maps.
    p, mode, eps
        As for :func:`attention_transfer_loss`; the loss must be called with the same values.
    dtype : torch.dtype, optional
        Storage dtype of the maps (default: float32, float64 for float64 features).
    """
    if mode not in ("canonical", "joshi"):
        raise ValueError(f"attention_maps: mode must be 'canonical' or 'joshi', got {mode!r}")
    out = []
    with torch.no_grad():
        for j, f in enumerate(features):
            if not isinstance(f, Tensor) or f.dim() != 3:
                raise ValueError(f"attention_maps: features[{j}] must be a (B, C, L) tensor")
            a = reference.attention_map(f.detach(), float(p), "mean" if mode == "canonical" else "sum")
            q = torch.nn.functional.normalize(a, dim=1 if mode == "canonical" else 0, eps=eps)
            out.append(q if dtype is None else q.to(dtype))
    return out


def _maps_as_features(student: Sequence[Tensor], maps: Sequence[Tensor], p: float) -> list[Tensor]:
    """Precomputed (B, L_j) teacher maps as (B, 1, L_j) features whose attention map is the stored map.

    With one channel the kernels' map is ``|x|^p``, so ``x = q^(1/p)`` (q >= 0) reproduces ``q``; the
    normalisation that follows leaves a unit-norm map unchanged (up to rounding).
    """
    if isinstance(maps, Tensor) or len(maps) != len(student):
        raise ValueError(
            f"attention_transfer_loss: teacher_maps=True needs a list of {len(student)} (B, L_j) maps, one per "
            "student layer"
        )
    out = []
    for j, (s, q) in enumerate(zip(student, maps, strict=True)):
        if not isinstance(q, Tensor) or q.dim() != 2 or q.shape[0] != s.shape[0] or q.shape[1] != s.shape[2]:
            shape = tuple(q.shape) if isinstance(q, Tensor) else type(q).__name__
            raise ValueError(
                f"attention_transfer_loss: teacher map {j} has shape {shape}; expected (B, L) = "
                f"({s.shape[0]}, {s.shape[2]}) as returned by attention_maps() for this layer"
            )
        if not q.is_floating_point():
            raise TypeError(
                f"attention_transfer_loss: teacher map {j} has dtype {q.dtype}; expected floating point"
            )
        if q.device != s.device:
            raise ValueError(
                f"attention_transfer_loss: teacher map {j} is on {q.device}, student[{j}] on {s.device}"
            )
        x = q.detach().to(s.dtype).clamp_min(0)
        x = x.sqrt() if p == 2.0 else (x if p == 1.0 else x.pow(1.0 / p))
        out.append(x.unsqueeze(1))
    return out


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
    """Attention-transfer loss summed over layers, fused into one kernel launch for all layers.

    Parameters
    ----------
    student, teacher : list of Tensor
        Feature maps per layer, each (B, C_j, L_j). Channel counts may differ between student and teacher;
        batch and lengths must match. The teacher is detached and cast to the student's dtype. With
        ``teacher_maps=True`` the teacher is a list of precomputed normalised attention maps, (B, L_j) per
        layer, from :func:`attention_maps` with the same ``p`` and ``mode`` (any float dtype, e.g. float16).
    p : float
        Exponent of the attention map (Zagoruyko & Komodakis use 2; must be >= 1).
    weights : list of float, optional
        Per-layer weights :math:`w_j`; default 1 for every layer (``mode="canonical"``) or ``1/J``
        (``mode="joshi"``, the mean over layers).
    distance : {"squared_l2", "squared_mean", "squared", "l2"}
        ``"squared_l2"`` (default): per-sample squared L2 distance of the unit-norm maps, summed over the
        positions and averaged over the batch, in [0, 4] whatever the layer length, so that every layer
        counts. ``"squared_mean"`` (alias ``"squared"``): the same squared differences averaged over batch
        *and* positions, which divides layer j's term by its length L_j (the shortest layers dominate).
        ``"l2"``: the paper's per-sample L2 norm (Eq. 3) averaged over the batch. See the module docstring.
        ``mode="joshi"`` uses the L1 distance of the authors' code and ignores the squared choices.
    mode : {"canonical", "joshi"}
        Canonical per-sample normalisation, or the authors' public code (see module docstring).
    eps : float
        Lower bound of the norms, as in :func:`torch.nn.functional.normalize`.
    teacher_maps : bool
        Whether ``teacher`` holds precomputed attention maps instead of feature maps (see above). Float32
        maps give the live teacher's loss and gradient within float rounding (tested: relative 1e-5 and
        1e-4 in norm); float16 maps within relative 2e-4 (loss) and 1e-3 (gradient norm) in canonical mode,
        2e-3 and 5e-2 in joshi mode, whose L1 gradient flips sign where the maps nearly agree.

    Returns
    -------
    Tensor
        Scalar loss (float32; float64 for float64 inputs).
    """
    if teacher_maps:
        if isinstance(student, Tensor) or len(student) == 0:
            raise ValueError("attention_transfer_loss: student must be a non-empty list of (B, C, L) tensors")
        teacher = _maps_as_features(student, teacher, float(p))
    _check_layers(student, teacher)
    if mode not in ("canonical", "joshi"):
        raise ValueError(f"attention_transfer_loss: mode must be 'canonical' or 'joshi', got {mode!r}")
    if distance not in AT_DISTANCES:
        raise ValueError(
            f"attention_transfer_loss: distance must be one of {', '.join(map(repr, AT_DISTANCES))}, "
            f"got {distance!r}"
        )
    if mode == "joshi" and distance == "l2":
        raise ValueError(
            "attention_transfer_loss: mode='joshi' uses the L1 distance of the authors' code; "
            "leave distance at its default"
        )
    p = float(p)
    if not p >= 1.0 or p == float("inf"):
        raise ValueError(f"attention_transfer_loss: p must be a finite number >= 1, got {p}")
    n = len(student)
    if weights is None:
        weights = [1.0] * n if mode == "canonical" else [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"attention_transfer_loss: {len(weights)} weights for {n} layers")
    dtype = student[0].dtype
    teacher = [t.detach().to(dtype) for t in teacher]
    student = list(student)
    if not _extension.has_kernel(student[0].device, "attention_transfer"):
        _extension.warn_fallback("attention_transfer_loss", student[0].device.type)
        return reference.attention_transfer_loss(
            student, teacher, p=p, weights=weights, distance=distance, mode=mode, eps=eps
        )
    kernel_distance = "l2" if distance == "l2" else "squared"
    if distance == "squared_l2" and mode == "canonical":
        # sum over positions = L_j x the mean over positions that the kernel computes
        weights = [w * s.shape[2] for w, s in zip(weights, student, strict=True)]
    loss, _, _ = torch.ops.kdsleep.attention_transfer(
        student, teacher, p, weights, kernel_distance, mode, float(eps)
    )
    return loss


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _register() -> None:
    @torch.library.register_fake("kdsleep::attention_transfer")
    def _(student, teacher, p, weights, distance, mode, eps):
        ref = student[0]
        batch = ref.shape[0]
        # Two maps per layer in the accumulation dtype; (alpha, beta) per (layer, sample) in float64
        # (see csrc/kdsleep_ops.h).
        n = 0
        for s in student:
            n = n + 2 * batch * s.shape[2]
        acc = _acc_dtype(ref.dtype)
        return (
            ref.new_empty((), dtype=acc),
            ref.new_empty((n,), dtype=acc),
            ref.new_empty((len(student), batch, 2), dtype=torch.float64),
        )

    @torch.library.register_fake("kdsleep::attention_transfer_backward")
    def _(grad, student, saved, coeffs, p, mode):
        return [torch.empty_like(s, memory_format=torch.contiguous_format) for s in student]

    # Autograd is registered in C++ (csrc/kdsleep_ops.cpp), off the Python hot path.


if "attention_transfer" in _extension.OPS:
    _register()
