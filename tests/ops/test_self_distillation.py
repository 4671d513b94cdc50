"""self_distillation_loss (DINO cross-entropy): reference agreement, gradients, registration, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdsleep.ops as ops
from kdsleep.ops import reference


def _outputs(
    views, rows, classes, *, seed=0, device="cpu", dtype=torch.float32, scale=2.0, requires_grad=False
):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(views, rows, classes, generator=g, dtype=torch.float64) * scale).to(
        device=device, dtype=dtype
    )
    return x.requires_grad_(requires_grad)


def test_matches_the_definition_by_hand():
    """Two global and one local view: the four pairs (t0,s1) (t0,s2) (t1,s0) (t1,s2), averaged."""
    s = _outputs(3, 4, 6, seed=1, dtype=torch.float64)
    t = _outputs(2, 4, 6, seed=2, dtype=torch.float64)
    c = torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    pt = torch.softmax((t - c) / 0.04, -1)
    log_ps = torch.log_softmax(s / 0.1, -1)

    def h(a, b):
        return -(pt[a] * log_ps[b]).sum(-1).mean()

    expected = (h(0, 1) + h(0, 2) + h(1, 0) + h(1, 2)) / 4
    torch.testing.assert_close(ops.self_distillation_loss(s, t, c), expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_student=st.integers(1, 10),
    n_teacher=st.integers(1, 3),
    rows=st.integers(1, 20),
    classes=st.sampled_from([2, 5, 64, 1000, 4097]),
    temps=st.tuples(st.floats(0.05, 2.0), st.floats(0.02, 1.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_random(n_student, n_teacher, rows, classes, temps, seed):
    if n_student * n_teacher <= min(n_student, n_teacher):
        n_student += 1
    s = _outputs(n_student, rows, classes, seed=seed, requires_grad=True)
    t = _outputs(n_teacher, rows, classes, seed=seed + 1)
    c = _outputs(1, 1, classes, seed=seed + 2, scale=0.3)[0, 0]
    kw = dict(student_temperature=temps[0], teacher_temperature=temps[1])
    fused = ops.self_distillation_loss(s, t, c, **kw)
    ref = reference.self_distillation_loss(s, t, c, **kw)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    # Gradients are O(1 / student_temperature): compare at float32 precision relative to that scale.
    grad_scale = 1.0 / temps[0]
    torch.testing.assert_close(
        torch.autograd.grad(fused, s)[0], torch.autograd.grad(ref, s)[0], rtol=1e-4, atol=1e-6 * grad_scale
    )


def test_gradcheck_float64():
    s = _outputs(4, 3, 7, dtype=torch.float64, requires_grad=True)
    t = _outputs(2, 3, 7, seed=1, dtype=torch.float64)
    c = torch.randn(7, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: ops.self_distillation_loss(x, t, c, student_temperature=0.5, teacher_temperature=0.25), (s,)
    )


def test_large_head_and_half_precision(device):
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        s = _outputs(4, 3, 65536, device=device, dtype=dtype, requires_grad=True)
        t = _outputs(2, 3, 65536, seed=1, device=device, dtype=dtype)
        c = torch.zeros(65536, device=device)
        fused = ops.self_distillation_loss(s, t, c)
        ref = reference.self_distillation_loss(s, t, c)
        assert fused.dtype == torch.float32 and torch.isfinite(fused)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(fused, ref, rtol=tol, atol=tol)
        (g,) = torch.autograd.grad(fused, s)
        assert g.dtype == dtype and torch.isfinite(g).all()


def test_teacher_and_center_receive_no_gradient():
    s = _outputs(3, 2, 5, requires_grad=True)
    t = _outputs(2, 2, 5, seed=1, requires_grad=True)
    c = torch.zeros(5, requires_grad=True)
    ops.self_distillation_loss(s, t, c).backward()
    assert s.grad is not None and t.grad is None and c.grad is None


def test_non_contiguous_inputs():
    base = _outputs(5, 3, 8, requires_grad=True)
    s = base[::2]  # every other view
    t = _outputs(3, 8, 2, seed=1).permute(2, 0, 1)  # class dimension not contiguous
    c = torch.randn(8)
    fused = ops.self_distillation_loss(s, t, c)
    ref = reference.self_distillation_loss(s, t, c)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(torch.autograd.grad(fused, base)[0], torch.autograd.grad(ref, base)[0])


@pytest.mark.parametrize(
    "shapes,kw,exc,match",
    [
        (((3, 4), (2, 4, 5), (5,)), {}, ValueError, r"\(views, N, K\)"),
        (((3, 4, 5), (2, 3, 5), (5,)), {}, ValueError, "differ in"),
        (((3, 4, 5), (2, 4, 5), (4,)), {}, ValueError, "center must have shape"),
        (((1, 4, 5), (1, 4, 5), (5,)), {}, ValueError, "at least two views"),
        (((3, 4, 5), (2, 4, 5), (5,)), {"teacher_temperature": 0.0}, ValueError, "teacher_temperature"),
    ],
)
def test_bad_input_raises_clear_error(shapes, kw, exc, match):
    s, t, c = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(exc, match=match):
        ops.self_distillation_loss(s, t, c, **kw)


def test_opcheck(device):
    for requires_grad in (False, True):
        s = _outputs(4, 3, 9, device=device, requires_grad=requires_grad)
        t = _outputs(2, 3, 9, seed=1, device=device)
        c = torch.randn(9, device=device)
        torch.library.opcheck(
            torch.ops.kdsleep.self_distillation.default, (s, t, c, 0.1, 0.04, requires_grad)
        )


def test_torch_compile_fullgraph(device):
    s = _outputs(4, 3, 33, device=device, requires_grad=True)
    t = _outputs(2, 3, 33, seed=1, device=device)
    c = torch.randn(33, device=device)

    def fn(s, t, c):
        return ops.self_distillation_loss(s * 0.5, t, c)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out, eager = compiled(s, t, c), fn(s, t, c)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(torch.autograd.grad(out, s)[0], torch.autograd.grad(eager, s)[0])
