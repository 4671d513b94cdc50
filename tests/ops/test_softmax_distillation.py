"""tempered_kl and distillation_loss: agreement with the reference, gradients, registration, edge cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdsleep.ops as ops
from kdsleep.ops import reference


def _logits(shape, *, device="cpu", dtype=torch.float32, scale=3.0, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad)


def _labels(rows_shape, classes, *, device="cpu", seed=0, ignore_fraction=0.2):
    g = torch.Generator().manual_seed(seed + 1000)
    y = torch.randint(0, classes, rows_shape, generator=g)
    y[torch.rand(rows_shape, generator=g) < ignore_fraction] = -1
    return y.to(device)


def test_matches_paper_formula_by_hand():
    """(1 - a) * weighted CE + a * T^2 * KL, with PyTorch's own weighted CE and batchmean KL."""
    s = _logits((12, 4, 35), seed=1, dtype=torch.float64)
    t = _logits((12, 4, 35), seed=2, dtype=torch.float64)
    y = _labels((12, 35), 4, ignore_fraction=0.0)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    s_rows, t_rows = s.movedim(1, -1).reshape(-1, 4), t.movedim(1, -1).reshape(-1, 4)
    temperature, alpha = 2.0, 0.5
    wce = F.cross_entropy(s_rows, y.reshape(-1), weight=w)
    kl = F.kl_div(
        F.log_softmax(s_rows / temperature, 1),
        F.log_softmax(t_rows / temperature, 1),
        log_target=True,
        reduction="batchmean",
    )
    expected = (1 - alpha) * wce + alpha * temperature**2 * kl
    got = ops.distillation_loss(s, t, y, class_weights=w, weight_kd=alpha, temperature=temperature)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ops.tempered_kl(s, t, temperature=temperature), kl)


def test_gradcheck_float64():
    s = _logits((3, 5, 7), dtype=torch.float64, requires_grad=True)
    t = _logits((3, 5, 7), dtype=torch.float64, seed=1)
    y = _labels((3, 7), 5)
    w = torch.rand(5, dtype=torch.float64) + 0.1
    for temperature in (0.5, 1.0, 4.0):
        assert torch.autograd.gradcheck(
            lambda x, temp=temperature: ops.distillation_loss(
                x, t, y, class_weights=w, temperature=temp, weight_kd=0.3
            ),
            (s,),
        )
        assert torch.autograd.gradcheck(
            lambda x, temp=temperature: ops.tempered_kl(x, t, temperature=temp, mask=y >= 0), (s,)
        )
    s2 = _logits((20, 3), dtype=torch.float64, requires_grad=True)
    t2 = _logits((20, 3), dtype=torch.float64, seed=2)
    assert torch.autograd.gradcheck(lambda x: ops.distillation_loss(x, t2, _labels((20,), 3)), (s2,))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 16),
    classes=st.integers(2, 6),
    n_epochs=st.one_of(st.none(), st.integers(1, 40)),
    temperature=st.floats(0.5, 10.0),
    weight_kd=st.floats(0.0, 1.0),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_random(batch, classes, n_epochs, temperature, weight_kd, weighted, seed):
    shape = (batch, classes) if n_epochs is None else (batch, classes, n_epochs)
    rows = (batch,) if n_epochs is None else (batch, n_epochs)
    s = _logits(shape, seed=seed, requires_grad=True)
    t = _logits(shape, seed=seed + 1)
    y = _labels(rows, classes, seed=seed)
    w = torch.rand(classes, generator=torch.Generator().manual_seed(seed)) + 0.05 if weighted else None
    kw = dict(class_weights=w, weight_kd=weight_kd, temperature=temperature)
    fused = ops.distillation_loss(s, t, y, **kw)
    ref = reference.distillation_loss(s, t, y, **kw)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.autograd.grad(fused, s)[0], torch.autograd.grad(ref, s)[0], rtol=1e-4, atol=1e-6
    )
    mask = y >= 0
    fused_kl = ops.tempered_kl(s, t, temperature=temperature, mask=mask)
    ref_kl = reference.tempered_kl(s, t, temperature=temperature, mask=mask)
    torch.testing.assert_close(fused_kl, ref_kl, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 10.0])
def test_extreme_logits_are_finite(device, temperature):
    s = torch.tensor(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [5.0, 5.0, 5.0]], device=device, requires_grad=True
    )
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -1e4], [5.0, 5.0, 5.0]], device=device)
    y = torch.tensor([1, 0, 2], device=device)
    loss = ops.distillation_loss(s, t, y, temperature=temperature)
    (grad,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    ref = reference.distillation_loss(s.detach().double(), t.double(), y, temperature=temperature)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-3)


def test_fully_masked_rows_give_zero_loss_and_gradient(device):
    s = _logits((4, 5, 6), device=device, requires_grad=True)
    t = _logits((4, 5, 6), device=device, seed=3)
    y = torch.full((4, 6), -1, device=device)
    for loss in (
        ops.distillation_loss(s, t, y),
        ops.tempered_kl(s, t, mask=torch.zeros(4, 6, dtype=torch.bool, device=device)),
    ):
        (grad,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0.0
        assert torch.count_nonzero(grad) == 0


def test_masked_rows_do_not_contribute(device):
    s = _logits((10, 4), device=device, requires_grad=True)
    t = _logits((10, 4), device=device, seed=9)
    y = torch.tensor([0, 1, 2, 3, -1, -1, 0, 1, -1, 2], device=device)
    keep = y >= 0
    full = ops.distillation_loss(s, t, y)
    subset = ops.distillation_loss(s[keep].detach(), t[keep], y[keep])
    torch.testing.assert_close(full, subset)
    (grad,) = torch.autograd.grad(full, s)
    assert torch.count_nonzero(grad[~keep]) == 0
    s_garbage = s.detach().clone()
    s_garbage[~keep] = float("nan")
    torch.testing.assert_close(ops.distillation_loss(s_garbage, t, y), full.detach())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, dtype):
    s = _logits((6, 5, 35), device=device, dtype=dtype, requires_grad=True)
    t = _logits((6, 5, 35), device=device, dtype=dtype, seed=4)
    y = _labels((6, 35), 5, device=device)
    fused = ops.distillation_loss(s, t, y, temperature=2.0)
    ref = reference.distillation_loss(s, t, y, temperature=2.0)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, ref, rtol=1e-3, atol=1e-4)
    (g,) = torch.autograd.grad(fused, s)
    (g_ref,) = torch.autograd.grad(ref, s)
    assert g.dtype == dtype
    torch.testing.assert_close(g.float(), g_ref.float(), rtol=2e-2, atol=1e-4)


def test_non_contiguous_logits(device):
    base = _logits((6, 35, 5), device=device, requires_grad=True)
    s = base.transpose(1, 2)  # (6, 5, 35) with class stride 1
    t = _logits((35, 6, 5), device=device, seed=5).permute(1, 2, 0)
    y = _labels((6, 35), 5, device=device)
    assert not s.is_contiguous() and not t.is_contiguous()
    fused = ops.distillation_loss(s, t, y)
    ref = reference.distillation_loss(s, t, y)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(torch.autograd.grad(fused, base)[0], torch.autograd.grad(ref, base)[0])


def test_teacher_receives_no_gradient():
    s = _logits((5, 3), requires_grad=True)
    t = _logits((5, 3), seed=1, requires_grad=True)
    ops.distillation_loss(s, t, torch.tensor([0, 1, 2, 0, 1])).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(s=(4, 3), t=(4, 2)), ValueError, "differ in shape"),
        (dict(s=(4,), t=(4,)), ValueError, r"must be \(N, K\)"),
        (dict(y_shape=(5,)), ValueError, "labels has shape"),
        (dict(y_dtype=torch.float32), TypeError, "labels has dtype"),
        (dict(temperature=0.0), ValueError, "temperature must be"),
        (dict(weight_kd=1.5), ValueError, "weight_kd must be in"),
        (dict(class_weights=torch.ones(4)), ValueError, "class_weights must have shape"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, exc, match):
    s = torch.randn(*kwargs.get("s", (4, 3)))
    t = torch.randn(*kwargs.get("t", (4, 3)))
    y = torch.zeros(kwargs.get("y_shape", (4,)), dtype=kwargs.get("y_dtype", torch.int64))
    with pytest.raises(exc, match=match):
        ops.distillation_loss(
            s,
            t,
            y,
            temperature=kwargs.get("temperature", 1.0),
            weight_kd=kwargs.get("weight_kd", 0.5),
            class_weights=kwargs.get("class_weights"),
        )


def test_label_out_of_range_is_an_error_on_cpu():
    with pytest.raises(RuntimeError, match="label 7 at row 1 is outside"):
        ops.distillation_loss(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 7, -1]))


@pytest.mark.cuda
def test_label_out_of_range_gives_nan_on_cuda():
    loss = ops.distillation_loss(
        torch.randn(3, 4).cuda(), torch.randn(3, 4).cuda(), torch.tensor([0, 7, -1]).cuda()
    )
    assert torch.isnan(loss)


def test_opcheck(device):
    for requires_grad in (False, True):
        s = _logits((3, 4, 9), device=device, requires_grad=requires_grad)
        t = _logits((3, 4, 9), device=device, seed=1)
        y = _labels((3, 9), 4, device=device)
        w = torch.rand(4, device=device)
        mask = y >= 0
        for args in (
            (s, t, y, None, w, -1, 0.5, 2.0, 2.0, requires_grad),
            (s, t, None, mask, None, -1, 0.0, 1.0, 3.0, requires_grad),
            (s.reshape(-1, 4), t.reshape(-1, 4), y.reshape(-1), None, None, -1, 1.0, 0.0, 1.0, requires_grad),
        ):
            torch.library.opcheck(torch.ops.kdsleep.softmax_distillation.default, args)


def test_torch_compile_fullgraph(device):
    s = _logits((4, 5, 35), device=device, requires_grad=True)
    t = _logits((4, 5, 35), device=device, seed=2)
    y = _labels((4, 35), 5, device=device)
    w = torch.rand(5, device=device) + 0.5

    def loss_fn(s, t, y, w):
        return ops.distillation_loss(s * 1.5, t, y, class_weights=w, temperature=2.0) + ops.tempered_kl(s, t)

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    eager = loss_fn(s, t, y, w)
    out = compiled(s, t, y, w)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(torch.autograd.grad(out, s)[0], torch.autograd.grad(eager, s)[0])


# ---- kl_reduction ----


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("shape", [(12, 5, 35), (40, 3)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_element_reduction_is_the_authors_kldivloss(device, shape, temperature):
    """kl_reduction="element" is torch.nn.KLDivLoss() (element mean) of log_softmax(s/T) and softmax(t/T)."""
    s = _logits(shape, device=device, seed=3, requires_grad=True)
    t = _logits(shape, device=device, seed=4)
    authors = torch.nn.KLDivLoss()(F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1))
    got = ops.tempered_kl(s, t, temperature=temperature, kl_reduction="element")
    torch.testing.assert_close(got, authors, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        torch.autograd.grad(got, s)[0],
        torch.autograd.grad(authors, s, retain_graph=True)[0],
        rtol=1e-4,
        atol=1e-8,
    )
    row = ops.tempered_kl(s, t, temperature=temperature)
    torch.testing.assert_close(got, row / shape[1], rtol=1e-6, atol=0.0)
    # the authors' SD+CL: (1 - a) * weighted CE + a * T^2 * KLDivLoss()
    y = _labels(
        (shape[0], shape[2]) if len(shape) == 3 else (shape[0],), shape[1], device=device, ignore_fraction=0.0
    )
    w = torch.linspace(0.5, 2.0, shape[1], device=device)
    s_rows = s if s.dim() == 2 else s.movedim(1, -1).reshape(-1, shape[1])
    expected = 0.5 * F.cross_entropy(s_rows, y.reshape(-1), weight=w) + 0.5 * temperature**2 * authors
    loss = ops.distillation_loss(s, t, y, class_weights=w, temperature=temperature, kl_reduction="element")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        torch.autograd.grad(loss, s)[0], torch.autograd.grad(expected, s)[0], rtol=1e-4, atol=1e-8
    )


@pytest.mark.parametrize("kl_reduction", ["row", "element"])
def test_kl_reduction_matches_reference_with_ignored_rows(device, kl_reduction):
    s = _logits((4, 5, 9), device=device, dtype=torch.float64, seed=5, requires_grad=True)
    t = _logits((4, 5, 9), device=device, dtype=torch.float64, seed=6)
    y = _labels((4, 9), 5, device=device, ignore_fraction=0.3)
    kw = dict(weight_kd=0.7, temperature=2.0, kl_reduction=kl_reduction)
    fused = ops.distillation_loss(s, t, y, **kw)
    ref = reference.distillation_loss(s, t, y, **kw)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(fused, s)[0], torch.autograd.grad(ref, s)[0], rtol=1e-9, atol=1e-12
    )
    mask = y != -1
    fused_kl = ops.tempered_kl(s, t, temperature=2.0, mask=mask, kl_reduction=kl_reduction)
    ref_kl = reference.tempered_kl(s, t, temperature=2.0, mask=mask, kl_reduction=kl_reduction)
    torch.testing.assert_close(fused_kl, ref_kl, rtol=1e-10, atol=1e-12)
    # ignored rows are out of the element count too: element mean over valid rows x K
    valid_rows = s.detach().movedim(1, -1)[mask]
    valid_t = t.movedim(1, -1)[mask]
    by_hand = F.kl_div(F.log_softmax(valid_rows / 2.0, 1), F.softmax(valid_t / 2.0, 1), reduction="sum")
    by_hand = by_hand / (mask.sum() * (5 if kl_reduction == "element" else 1))
    torch.testing.assert_close(fused_kl.detach(), by_hand, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: ops.distillation_loss(x, t, y, **kw), (s,))


def test_bad_kl_reduction_is_a_clear_error():
    s, t = _logits((3, 4)), _logits((3, 4), seed=1)
    with pytest.raises(ValueError, match="kl_reduction must be 'row' or 'element', got 'batchmean'"):
        ops.tempered_kl(s, t, kl_reduction="batchmean")
    with pytest.raises(ValueError, match="kl_reduction must be"):
        ops.distillation_loss(s, t, torch.zeros(3, dtype=torch.long), kl_reduction="sum")


def test_training_losses_pass_the_new_options_through():
    from kdsleep.distill.losses import FeatureLoss, FinalLoss

    s, t = _logits((2, 5, 35), seed=7), _logits((2, 5, 35), seed=8)
    y = _labels((2, 35), 5)
    w = torch.ones(5)
    for kl_reduction in ("row", "element"):
        for backend in ("fused", "reference"):
            got = FinalLoss(w, 0.5, 1.0, backend=backend, kl_reduction=kl_reduction)(s, y, t)
            want = reference.distillation_loss(s, t, y, class_weights=w, kl_reduction=kl_reduction)
            torch.testing.assert_close(got, want)
    maps_s = [torch.randn(2, 4, 300), torch.randn(2, 8, 10)]
    maps_t = [torch.randn(2, 4, 300), torch.randn(2, 8, 10)]
    assert FeatureLoss().distance == "squared_l2"
    for distance in ("squared_l2", "squared_mean", "l2"):
        for backend in ("fused", "reference"):
            got = FeatureLoss(distance=distance, backend=backend)(maps_s, maps_t)
            want = reference.attention_transfer_loss(maps_s, maps_t, distance=distance)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
