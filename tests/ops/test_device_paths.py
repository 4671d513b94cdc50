"""Every kernel path on every device with compiled kernels, against the pure-PyTorch reference.

The same tests run on the CPU and, where a GPU is visible, on CUDA (``-m cuda``), so one GPU run checks
every path the CPU tests cover: p != 2, float64, more than 32 layers (several CUDA launches), B = 1, L = 1,
deep short layers (channels split across warps), the per-layer normalisations, the KL reductions, rows
beyond one CUDA grid, and DINO heads whose classes are split across blocks.
"""

from __future__ import annotations

import pytest
import torch

import kdsleep.ops as ops
from kdsleep.ops import reference

from .conftest import make_layers

AT_CASES = [
    ("canonical", "squared_l2"),
    ("canonical", "squared_mean"),
    ("canonical", "l2"),
    ("joshi", "squared_l2"),
]

# (batch, [(student C, teacher C, L), ...]): B = 1, L = 1, a deep short layer (512 + 512 channels, L = 70,
# the U-Time bottleneck), long thin layers, a length just past one CUDA tile
LAYER_SETS = {
    "b1": (1, [(3, 2, 100), (4, 4, 1), (16, 8, 33)]),
    "l1": (3, [(5, 7, 1), (1, 1, 1)]),
    "deep_short": (2, [(512, 512, 70), (256, 256, 210), (5, 16, 1025)]),
    "long_thin": (2, [(2, 3, 5000), (1, 1, 2049)]),
}


def _layers(batch, spec, *, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    student = make_layers(
        (batch, [(cs, length) for cs, _, length in spec]),
        dtype=dtype,
        device=device,
        generator=g,
        requires_grad=True,
    )
    teacher = make_layers(
        (batch, [(ct, length) for _, ct, length in spec]), dtype=dtype, device=device, generator=g
    )
    return student, teacher


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-7)


def _grad_tol(dtype):
    return dict(rtol=1e-9, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-3, atol=1e-8)


@pytest.mark.parametrize("layer_set", list(LAYER_SETS))
@pytest.mark.parametrize("mode,distance", AT_CASES)
@pytest.mark.parametrize("p", [2.0, 1.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_transfer_paths(device, layer_set, mode, distance, p, dtype):
    batch, spec = LAYER_SETS[layer_set]
    student, teacher = _layers(batch, spec, dtype=dtype, device=device, seed=len(spec))
    weights = [0.5 + j for j in range(len(spec))]
    kw = dict(p=p, weights=weights, mode=mode, distance=distance)
    fused = ops.attention_transfer_loss(student, teacher, **kw)
    ref = reference.attention_transfer_loss(student, teacher, **kw)
    assert fused.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(fused, ref.to(fused.dtype), **_tol(dtype))
    grads = torch.autograd.grad(fused, student)
    ref_grads = torch.autograd.grad(ref, student)
    for a, b in zip(grads, ref_grads, strict=True):
        assert a.dtype == dtype and a.shape == b.shape
        torch.testing.assert_close(a, b.to(a.dtype), **_grad_tol(dtype))


@pytest.mark.parametrize("mode,distance", AT_CASES)
def test_attention_transfer_more_than_32_layers(device, mode, distance):
    """40 layers: two CUDA launches whose losses add up; weights kept in double precision."""
    spec = [(1 + j % 5, 1 + j % 3, 1 + 7 * j) for j in range(40)]
    student, teacher = _layers(2, spec, dtype=torch.float64, device=device, seed=40)
    weights = [1.0 + 1e-9 * j for j in range(40)]  # differences a float32 weight would lose
    kw = dict(p=2.0, weights=weights, mode=mode, distance=distance)
    fused = ops.attention_transfer_loss(student, teacher, **kw)
    ref = reference.attention_transfer_loss(student, teacher, **kw)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-14)
    for a, b in zip(torch.autograd.grad(fused, student), torch.autograd.grad(ref, student), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("mode,distance", AT_CASES)
@pytest.mark.parametrize("p", [2.0, 3.0])
def test_attention_transfer_gradcheck(device, mode, distance, p):
    student, teacher = _layers(
        1, [(3, 2, 9), (2, 4, 1), (4, 3, 5)], dtype=torch.float64, device=device, seed=9
    )
    assert torch.autograd.gradcheck(
        lambda *s: ops.attention_transfer_loss(list(s), teacher, p=p, mode=mode, distance=distance),
        tuple(student),
    )


def test_saved_coefficients_are_their_own_float64_tensor(device):
    """The backward's coefficients never share storage with the float32 maps."""
    student, teacher = _layers(2, [(3, 3, 20), (2, 2, 5)], dtype=torch.float32, device=device, seed=2)
    loss, saved, coeffs = torch.ops.kdsleep.attention_transfer(
        [s.detach() for s in student], teacher, 2.0, [1.0, 1.0], "squared", "canonical", 1e-12
    )
    assert saved.dtype == torch.float32 and saved.numel() == 2 * 2 * (20 + 5)
    assert coeffs.dtype == torch.float64 and coeffs.shape == (2, 2, 2)
    assert saved.untyped_storage().data_ptr() != coeffs.untyped_storage().data_ptr()


def test_raw_backward_validates_every_layer(device):
    student, teacher = _layers(2, [(3, 3, 20), (2, 2, 5)], dtype=torch.float32, device=device, seed=3)
    s = [x.detach() for x in student]
    _, saved, coeffs = torch.ops.kdsleep.attention_transfer(
        s, teacher, 2.0, [1.0, 1.0], "squared", "canonical", 1e-12
    )
    grad = torch.ones((), device=device)
    bad_layers = [
        ([s[0], s[1].double()], "student layer 1 has dtype"),
        ([s[0], s[1][:1]], "student layer 1 has shape"),
        ([s[0], s[1][0]], "student layer 1 must be"),
        ([s[0], s[1][:, :, :4]], "saved maps"),
    ]
    for layers, match in bad_layers:
        with pytest.raises(RuntimeError, match=match):
            torch.ops.kdsleep.attention_transfer_backward(grad, layers, saved, coeffs, 2.0, "canonical")
    with pytest.raises(RuntimeError, match="coefficients"):
        torch.ops.kdsleep.attention_transfer_backward(grad, s, saved, coeffs.float(), 2.0, "canonical")
    with pytest.raises(RuntimeError, match="coefficients"):
        torch.ops.kdsleep.attention_transfer_backward(grad, s, saved, coeffs[:1], 2.0, "canonical")


@pytest.mark.parametrize("rows", [1, 420, 300_000])
@pytest.mark.parametrize("kl_reduction", ["row", "element"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distillation_paths(device, rows, kl_reduction, dtype):
    """1 row, the paper's 12 x 35 rows, and more rows than one grid of 1024 blocks x 256 threads."""
    g = torch.Generator().manual_seed(rows)
    s = (torch.randn(rows, 5, generator=g, dtype=torch.float64) * 3).to(device=device, dtype=dtype)
    s.requires_grad_(True)
    t = (torch.randn(rows, 5, generator=g, dtype=torch.float64) * 3).to(device=device, dtype=dtype)
    y = torch.randint(-1, 5, (rows,), generator=g).to(device)
    if rows == 1:
        y[0] = 2
    w = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], device=device, dtype=dtype)
    kw = dict(class_weights=w, weight_kd=0.4, temperature=2.0, kl_reduction=kl_reduction)
    fused = ops.distillation_loss(s, t, y, **kw)
    ref = reference.distillation_loss(s, t, y, **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused, ref.to(fused.dtype), **tol)
    torch.testing.assert_close(torch.autograd.grad(fused, s)[0], torch.autograd.grad(ref, s)[0], **tol)
    mask = y != -1
    kl = ops.tempered_kl(s.detach(), t, temperature=2.0, mask=mask, kl_reduction=kl_reduction)
    ref_kl = reference.tempered_kl(s.detach(), t, temperature=2.0, mask=mask, kl_reduction=kl_reduction)
    torch.testing.assert_close(kl, ref_kl.to(kl.dtype), **tol)


@pytest.mark.parametrize("classes", [3, 4097, 65536])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_self_distillation_paths(device, classes, dtype):
    """Small heads (one block per row) and DINO-size heads (classes split across blocks)."""
    g = torch.Generator().manual_seed(classes)
    s = torch.randn(4, 3, classes, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    s.requires_grad_(True)
    t = torch.randn(2, 3, classes, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    c = (torch.randn(classes, generator=g, dtype=torch.float64) * 0.1).to(device=device, dtype=dtype)
    fused = ops.self_distillation_loss(s, t, c)
    ref = reference.self_distillation_loss(s, t, c)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(fused, ref.to(fused.dtype), **tol)
    torch.testing.assert_close(torch.autograd.grad(fused, s)[0], torch.autograd.grad(ref, s)[0], **tol)


def test_autograd_runs_in_cpp_and_refuses_double_backward(device):
    """Each op's backward node is the C++ autograd function (no Python autograd.Function per call), and no
    second derivative is ever silently wrong: attention transfer raises; the softmax and DINO gradients
    carry no graph (PyTorch refuses to differentiate them) unless the incoming gradient itself requires
    grad, in which case they raise too."""
    g = torch.Generator().manual_seed(5)
    s = torch.randn(2, 5, 7, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    t = torch.randn(2, 5, 7, generator=g, dtype=torch.float64).to(device)
    y = torch.randint(0, 5, (2, 7), generator=g).to(device)
    views = torch.randn(3, 4, 6, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    center = torch.zeros(6, device=device, dtype=torch.float64)
    maps = make_layers((2, [(3, 9)]), dtype=torch.float64, device=device, generator=g, requires_grad=True)
    scale = torch.tensor(2.0, device=device, dtype=torch.float64, requires_grad=True)

    loss = ops.attention_transfer_loss(maps, [m.detach() for m in maps])
    assert "AttentionTransferFunction" in loss.grad_fn.name()
    (grad,) = torch.autograd.grad(loss, maps[0], create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        torch.autograd.grad(grad.sum(), maps[0])

    for name, make_loss, x in (
        ("SoftmaxDistillationFunction", lambda: ops.distillation_loss(s, t, y), s),
        ("SelfDistillationFunction", lambda: ops.self_distillation_loss(views, views[:2], center), views),
    ):
        loss = make_loss()
        assert name in loss.grad_fn.name()
        (grad,) = torch.autograd.grad(loss, x, create_graph=True)
        assert not grad.requires_grad
        (grad,) = torch.autograd.grad(scale * make_loss(), x, create_graph=True)
        assert grad.requires_grad
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.autograd.grad(grad.sum(), scale)
