"""Attention-transfer op: agreement with the reference, gradients, registration, edge cases, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdsleep.ops as ops
from kdsleep.ops import reference

from .conftest import make_layers

MODES = [
    ("canonical", "squared_l2"),
    ("canonical", "squared_mean"),
    ("canonical", "l2"),
    ("joshi", "squared_l2"),
]


def _both(student, teacher, **kw):
    fused = ops.attention_transfer_loss(student, teacher, **kw)
    ref = reference.attention_transfer_loss(student, teacher, **kw)
    return fused, ref


@pytest.mark.parametrize("mode,distance", MODES)
@pytest.mark.parametrize("p", [2.0, 1.5, 3.0])
def test_gradcheck_float64(mode, distance, p):
    g = torch.Generator().manual_seed(1)
    student = make_layers(
        (3, [(4, 17), (2, 9), (5, 1)]), dtype=torch.float64, generator=g, requires_grad=True
    )
    teacher = make_layers((3, [(6, 17), (3, 9), (1, 1)]), dtype=torch.float64, generator=g)
    weights = [1.0, 0.5, 2.0]

    def fn(*s):
        return ops.attention_transfer_loss(
            list(s), teacher, p=p, weights=weights, mode=mode, distance=distance
        )

    assert torch.autograd.gradcheck(fn, tuple(student))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 5),
    layers=st.lists(
        st.tuples(st.integers(1, 24), st.integers(1, 24), st.integers(1, 3000)), min_size=1, max_size=10
    ),
    mode_distance=st.sampled_from(MODES),
    p=st.sampled_from([2.0, 1.0, 2.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_random_shapes(batch, layers, mode_distance, p, seed):
    mode, distance = mode_distance
    g = torch.Generator().manual_seed(seed)
    student = make_layers(
        (batch, [(cs, length) for cs, _, length in layers]), generator=g, requires_grad=True
    )
    teacher = make_layers((batch, [(ct, length) for _, ct, length in layers]), generator=g)
    weights = torch.rand(len(layers), generator=g).tolist()
    kw = dict(p=p, weights=weights, mode=mode, distance=distance)
    fused, ref = _both(student, teacher, **kw)
    torch.testing.assert_close(fused, ref, rtol=2e-4, atol=1e-7)
    g_fused = torch.autograd.grad(fused, student)
    g_ref = torch.autograd.grad(ref, student)
    for a, b in zip(g_fused, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-7)


def test_utime_like_layer_set_long_sequences(device):
    """Twelve taps of a 5-level U-Time on one 35-epoch window at 200 Hz, down-scaled in channels."""
    g = torch.Generator().manual_seed(0)
    lengths = [21000, 4200, 840, 210, 70, 70, 210, 840, 4200, 21000, 210000, 210000]
    shapes = (2, [(2, length) for length in lengths])
    student = make_layers(shapes, device=device, generator=g, requires_grad=True)
    teacher = make_layers((2, [(3, length) for length in lengths]), device=device, generator=g)
    for mode, distance in MODES:
        fused, ref = _both(student, teacher, mode=mode, distance=distance)
        torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-8)
        for a, b in zip(torch.autograd.grad(fused, student), torch.autograd.grad(ref, student), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(device, dtype):
    g = torch.Generator().manual_seed(3)
    student = make_layers(
        (4, [(8, 500), (16, 100)]), dtype=dtype, device=device, generator=g, requires_grad=True
    )
    teacher = make_layers((4, [(4, 500), (32, 100)]), dtype=dtype, device=device, generator=g)
    fused, ref = _both(student, teacher)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, ref, rtol=1e-3, atol=1e-6)
    grads = torch.autograd.grad(fused, student)
    ref_grads = torch.autograd.grad(ref, student)
    for a, b in zip(grads, ref_grads, strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=1e-5)


def test_non_contiguous_inputs(device):
    g = torch.Generator().manual_seed(4)
    base_s = torch.randn(3, 300, 10, generator=g).to(device)
    base_t = torch.randn(3, 12, 600, generator=g).to(device)
    student = [base_s.transpose(1, 2).requires_grad_(False)]  # (3, 10, 300), stride along L != 1
    teacher = [base_t[:, ::2, ::2]]  # (3, 6, 300), strided
    student = [student[0].detach().requires_grad_(True)]
    assert not student[0].is_contiguous() and not teacher[0].is_contiguous()
    for mode, distance in MODES:
        fused, ref = _both(student, teacher, mode=mode, distance=distance)
        torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(
            torch.autograd.grad(fused, student)[0], torch.autograd.grad(ref, student)[0], rtol=1e-3, atol=1e-9
        )


@pytest.mark.parametrize("mode,distance", MODES)
def test_all_zero_feature_maps_give_finite_values(device, mode, distance):
    student = [torch.zeros(2, 4, 50, device=device, requires_grad=True)]
    teacher = [torch.randn(2, 3, 50, device=device)]
    loss = ops.attention_transfer_loss(student, teacher, mode=mode, distance=distance)
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    both_zero = ops.attention_transfer_loss(
        student, [torch.zeros(2, 3, 50, device=device)], mode=mode, distance=distance
    )
    assert both_zero.item() == 0.0
    (grad,) = torch.autograd.grad(both_zero, student)
    assert torch.count_nonzero(grad) == 0


def test_teacher_receives_no_gradient():
    student = [torch.randn(2, 4, 30, requires_grad=True)]
    teacher = [torch.randn(2, 4, 30, requires_grad=True)]
    loss = ops.attention_transfer_loss(student, teacher)
    loss.backward()
    assert student[0].grad is not None and teacher[0].grad is None


def test_identical_maps_give_zero_loss():
    x = torch.randn(3, 5, 40)
    assert ops.attention_transfer_loss([x], [x.clone()]).item() == pytest.approx(0.0, abs=1e-10)
    assert ops.attention_transfer_loss([x], [x.clone()], mode="joshi").item() == pytest.approx(0.0, abs=1e-10)


def test_default_weights_and_joshi_mean():
    g = torch.Generator().manual_seed(5)
    student = make_layers((2, [(3, 20), (4, 10)]), generator=g)
    teacher = make_layers((2, [(3, 20), (4, 10)]), generator=g)
    per_layer = [
        ops.attention_transfer_loss([s], [t], mode="joshi", weights=[1.0])
        for s, t in zip(student, teacher, strict=True)
    ]
    mean = ops.attention_transfer_loss(student, teacher, mode="joshi")
    torch.testing.assert_close(mean, (per_layer[0] + per_layer[1]) / 2)
    total = ops.attention_transfer_loss(student, teacher)
    parts = [ops.attention_transfer_loss([s], [t]) for s, t in zip(student, teacher, strict=True)]
    torch.testing.assert_close(total, parts[0] + parts[1])


def test_many_layers(device):
    """More layers than one CUDA launch holds: split into groups whose losses add up."""
    g = torch.Generator().manual_seed(6)
    student = make_layers(
        (2, [(3, 11 + j) for j in range(40)]), device=device, generator=g, requires_grad=True
    )
    teacher = make_layers((2, [(2, 11 + j) for j in range(40)]), device=device, generator=g)
    fused, ref = _both(student, teacher)
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(
    "student,teacher,kw,exc,match",
    [
        ([], [], {}, ValueError, "empty"),
        ([torch.randn(2, 3, 10)], [], {}, ValueError, "1 student feature maps but 0 teacher"),
        ([torch.randn(2, 3, 10)], [torch.randn(2, 3, 11)], {}, ValueError, "layer 0 lengths differ"),
        ([torch.randn(2, 3, 10)], [torch.randn(3, 3, 10)], {}, ValueError, "batch size 3"),
        ([torch.randn(2, 10)], [torch.randn(2, 10)], {}, ValueError, r"must be \(B, C, L\)"),
        ([torch.randint(0, 3, (2, 3, 10))], [torch.randn(2, 3, 10)], {}, TypeError, "dtype torch.int64"),
        (
            [torch.randn(2, 3, 10), torch.randn(2, 3, 10, dtype=torch.float64)],
            [torch.randn(2, 3, 10), torch.randn(2, 3, 10)],
            {},
            TypeError,
            "share one dtype",
        ),
        ([torch.randn(2, 3, 10)], [torch.randn(2, 3, 10)], {"mode": "zk"}, ValueError, "mode must be"),
        (
            [torch.randn(2, 3, 10)],
            [torch.randn(2, 3, 10)],
            {"distance": "l1"},
            ValueError,
            "distance must be",
        ),
        ([torch.randn(2, 3, 10)], [torch.randn(2, 3, 10)], {"p": 0.5}, ValueError, "p must be"),
        (
            [torch.randn(2, 3, 10)],
            [torch.randn(2, 3, 10)],
            {"weights": [1.0, 2.0]},
            ValueError,
            "2 weights for 1",
        ),
        (torch.randn(2, 3, 10), torch.randn(2, 3, 10), {}, TypeError, "lists of"),
    ],
)
def test_bad_input_raises_clear_error(student, teacher, kw, exc, match):
    with pytest.raises(exc, match=match):
        ops.attention_transfer_loss(student, teacher, **kw)


def test_raw_op_checks_inputs_too():
    with pytest.raises(RuntimeError, match="lengths differ"):
        torch.ops.kdsleep.attention_transfer(
            [torch.randn(2, 3, 10)], [torch.randn(2, 3, 9)], 2.0, [1.0], "squared", "canonical", 1e-12
        )


@pytest.mark.parametrize("mode,distance", MODES)
def test_opcheck(device, mode, distance):
    g = torch.Generator().manual_seed(7)
    for requires_grad in (False, True):
        student = make_layers((2, [(3, 40), (5, 8)]), device=device, generator=g, requires_grad=requires_grad)
        teacher = make_layers((2, [(2, 40), (1, 8)]), device=device, generator=g)
        kernel_distance = "l2" if distance == "l2" else "squared"  # the op's own distances
        args = (student, teacher, 2.0, [1.0, 0.5], kernel_distance, mode, 1e-12)
        torch.library.opcheck(torch.ops.kdsleep.attention_transfer.default, args)
    _, saved, coeffs = torch.ops.kdsleep.attention_transfer(*args)
    assert coeffs.dtype == torch.float64 and coeffs.shape == (2, 2, 2)
    grad = torch.ones((), device=device)
    torch.library.opcheck(
        torch.ops.kdsleep.attention_transfer_backward.default,
        (grad, [s.detach() for s in student], saved.detach(), coeffs.detach(), 2.0, mode),
    )


def test_double_backward_is_a_clear_error():
    student = [torch.randn(2, 3, 20, dtype=torch.float64, requires_grad=True)]
    teacher = [torch.randn(2, 3, 20, dtype=torch.float64)]
    (grad,) = torch.autograd.grad(ops.attention_transfer_loss(student, teacher), student, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        grad.sum().backward()


def test_torch_compile_fullgraph(device):
    g = torch.Generator().manual_seed(8)
    student = make_layers((2, [(3, 64), (4, 16)]), device=device, generator=g, requires_grad=True)
    teacher = make_layers((2, [(5, 64), (2, 16)]), device=device, generator=g)

    def step(s0, s1, t0, t1):
        return ops.attention_transfer_loss([s0 * 2, s1], [t0, t1], distance="l2")

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    eager = step(*student, *teacher)
    out = compiled(*student, *teacher)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(torch.autograd.grad(out, student), torch.autograd.grad(eager, student))


# ---- per-layer normalisation: every layer counts ----


def _utime_tap_shapes() -> list[tuple[int, int]]:
    from kdsleep.models import UTime

    return list(UTime(n_chans=1, n_outputs=5, sfreq=200, n_epochs=35).tap_shapes.values())


def _gradient_share_spread(device: str, distance: str) -> float:
    """max / min over layers of ||d loss / d S_j|| on the 35-epoch U-Time layer set (B = 2, random maps)."""
    g = torch.Generator().manual_seed(11)
    shapes = _utime_tap_shapes()
    student = make_layers((2, shapes), device=device, generator=g, requires_grad=True)
    teacher = make_layers((2, shapes), device=device, generator=g)
    loss = ops.attention_transfer_loss(student, teacher, distance=distance)
    norms = torch.stack([grad.double().norm() for grad in torch.autograd.grad(loss, student)])
    assert torch.isfinite(norms).all() and (norms > 0).all()
    return (norms.max() / norms.min()).item()


def test_every_layer_counts_under_the_default(device):
    """Each layer's share of the gradient norm is within an order of magnitude of every other layer's.

    The U-Time layer set has L_j from 70 to 210 000. With ``squared_mean`` the shortest layers' gradients are
    thousands of times larger than the longest layers' (the test would catch a regression to it).
    """
    shapes = _utime_tap_shapes()
    lengths = [length for _, length in shapes]
    assert len(shapes) >= 10 and max(lengths) / min(lengths) >= 1000
    assert _gradient_share_spread(device, "squared_l2") < 10.0
    assert _gradient_share_spread(device, "squared_mean") > 1000.0


def test_squared_l2_is_the_default_and_bounded():
    g = torch.Generator().manual_seed(12)
    shapes = (3, [(4, 5000), (8, 7), (2, 1)])
    student = make_layers(shapes, generator=g)
    teacher = make_layers(shapes, generator=g)
    default = ops.attention_transfer_loss(student, teacher)
    torch.testing.assert_close(default, ops.attention_transfer_loss(student, teacher, distance="squared_l2"))
    for s, t in zip(student, teacher, strict=True):
        # unit-norm maps: ||u - v||^2 <= 4 (<= 2 for non-negative maps)
        term = ops.attention_transfer_loss([s], [t]).item()
        assert 0.0 <= term <= 2.0 + 1e-6
        worst = ops.attention_transfer_loss([s], [-s], p=1.0, mode="canonical").item()  # maps >= 0: same map
        assert worst == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_squared_l2_is_length_times_squared_mean(device, dtype):
    """The fused squared_l2 equals sum_j w_j L_j l_j(squared_mean), loss and gradient, and the reference."""
    g = torch.Generator().manual_seed(13)
    shapes = (2, [(3, 900), (5, 30), (4, 1)])
    student = make_layers(shapes, dtype=dtype, device=device, generator=g, requires_grad=True)
    teacher = make_layers(shapes, dtype=dtype, device=device, generator=g)
    weights = [0.5, 2.0, 1.0]
    new = ops.attention_transfer_loss(student, teacher, weights=weights)
    scaled = [w * s.shape[2] for w, s in zip(weights, student, strict=True)]
    old = ops.attention_transfer_loss(student, teacher, weights=scaled, distance="squared_mean")
    alias = ops.attention_transfer_loss(student, teacher, weights=scaled, distance="squared")
    ref = reference.attention_transfer_loss(student, teacher, weights=weights, distance="squared_l2")
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(new, old, **tol)
    torch.testing.assert_close(new, alias, **tol)
    torch.testing.assert_close(
        new, ref.to(new.dtype), **(tol if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-7))
    )
    for a, b in zip(torch.autograd.grad(new, student), torch.autograd.grad(old, student), strict=True):
        torch.testing.assert_close(a, b, **tol)
    # the same quantity by hand
    by_hand = sum(
        w * (F.normalize(s.pow(2).mean(1), dim=1) - F.normalize(t.pow(2).mean(1), dim=1)).pow(2).sum(1).mean()
        for w, s, t in zip(weights, student, teacher, strict=True)
    )
    torch.testing.assert_close(new, by_hand.to(new.dtype), rtol=1e-4, atol=1e-7)


# ---- precomputed teacher maps ----


@pytest.mark.parametrize("mode,distance", MODES)
@pytest.mark.parametrize("p", [2.0, 1.5])
def test_precomputed_teacher_maps_equal_the_live_teacher(device, mode, distance, p):
    """Maps stored once (float32 or float16) give the live teacher's loss and gradient."""
    g = torch.Generator().manual_seed(21)
    shapes = [(4, 3000), (16, 70), (8, 1)]
    student = make_layers((3, shapes), device=device, generator=g, requires_grad=True)
    teacher = make_layers((3, [(c * 2, length) for c, length in shapes]), device=device, generator=g)
    kw = dict(p=p, mode=mode, distance=distance, weights=[1.0, 0.5, 2.0])
    live = ops.attention_transfer_loss(student, teacher, **kw)
    (g_live,) = torch.autograd.grad(live, student[:1])
    # loss: relative; gradient: relative in norm (element-wise it cancels where student and teacher agree)
    # (measured: float16 canonical <= 9e-5 / 4e-4, joshi 4e-4 / 3e-2: its L1 gradient's sign flips where
    # the maps nearly agree)
    fp16 = (2e-4, 1e-3) if mode == "canonical" else (2e-3, 5e-2)
    for dtype, rtol, grad_rtol in ((torch.float32, 1e-5, 1e-4), (torch.float16, *fp16)):
        maps = ops.attention_maps(teacher, p=p, mode=mode, dtype=dtype)
        assert [tuple(m.shape) for m in maps] == [(3, length) for _, length in shapes]
        assert all(m.dtype == dtype and not m.requires_grad for m in maps)
        cached = ops.attention_transfer_loss(student, maps, teacher_maps=True, **kw)
        ref = reference.attention_transfer_loss(student, maps, teacher_maps=True, **kw)
        torch.testing.assert_close(cached, live, rtol=rtol, atol=1e-7)
        torch.testing.assert_close(ref, cached, rtol=2e-4, atol=1e-7)
        (g_cached,) = torch.autograd.grad(cached, student[:1])
        assert ((g_cached - g_live).norm() / g_live.norm()).item() <= grad_rtol


def test_precomputed_teacher_maps_bad_input():
    student = [torch.randn(2, 3, 10), torch.randn(2, 3, 5)]
    maps = ops.attention_maps([torch.randn(2, 4, 10), torch.randn(2, 4, 5)])
    with pytest.raises(ValueError, match=r"teacher map 1 has shape \(2, 4\); expected \(B, L\) = \(2, 5\)"):
        ops.attention_transfer_loss(student, [maps[0], maps[1][:, :4]], teacher_maps=True)
    with pytest.raises(ValueError, match="needs a list of 2"):
        ops.attention_transfer_loss(student, maps[:1], teacher_maps=True)
    with pytest.raises(ValueError, match=r"must be a \(B, C, L\)"):
        ops.attention_maps([torch.randn(2, 10)])
