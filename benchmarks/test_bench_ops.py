"""Fused kdsleep ops against the eager and the torch.compile'd reference, side by side.

Groups pair the three implementations for one (op, phase, size, device); forward and forward+backward are
timed separately. CUDA timings are synchronised; on CUDA each benchmark also records the median of CUDA-event
timings (``cuda_event_median_ms``, device time without the host's synchronisation), which the bandwidth
figures use. Each benchmark's ``extra_info`` records the peak memory of one call and, for attention
transfer, the effective bandwidth counting each input read once and each output written once (and, on
CUDA, its fraction of the measured device-to-device copy bandwidth).
"""

from __future__ import annotations

import functools

import pytest
import torch

import kdsleep.ops as ops
from kdsleep._torch import saved_for_backward_bytes
from kdsleep.models.utime import UTime
from kdsleep.ops import reference

IMPLS = ["eager", "compiled", "fused"]
PHASES = ["fwd", "fwdbwd"]
BATCH = {"small": 2, "paper": 12}
SD_SHAPE = {"small": (12, 5, 35), "paper": (12, 5, 35)}  # 12 windows x 35 epochs, 5 stages
# DINO: 10 student views (2 global + 8 local crops), 2 teacher views, batch N, head of K outputs
DINO_SHAPE = {"small": (10, 2, 16, 4096), "paper": (10, 2, 64, 65536)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@functools.cache
def _compiled(name: str):
    fn = {
        "attention_transfer": reference.attention_transfer_loss,
        "distillation_loss": reference.distillation_loss,
        "self_distillation_loss": reference.self_distillation_loss,
    }[name]
    return torch.compile(fn)


def _impl(name: str, impl: str):
    if impl == "eager":
        return getattr(reference, name)
    if impl == "compiled":
        return _compiled(name)
    return getattr(ops, name)


def _peak_memory(fn, device: str) -> int | None:
    """Peak bytes allocated by torch during one call of ``fn`` beyond what was allocated before (CUDA only:
    PyTorch keeps no allocator statistics on the CPU)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@functools.cache
def _copy_bandwidth(device: str) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), median of 20 copies of 1 GiB."""
    src = torch.empty(2**28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * src.numel() * src.element_size() / times[len(times) // 2]


def _utime_layers(kd_size: str, device: str, seed: int, requires_grad: bool, n_outputs: int = 5):
    """Random feature maps with the tap shapes of a 5-level U-Time on 35-epoch windows at 200 Hz."""
    shapes = UTime(n_chans=1, n_outputs=n_outputs, sfreq=200.0, n_epochs=35).tap_shapes
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(BATCH[kd_size], c, length, generator=g).to(device).requires_grad_(requires_grad)
        for c, length in shapes.values()
    ]


def _cuda_event_median(fn, rounds: int) -> float:
    """Median device time of ``fn`` in seconds, between CUDA events recorded around each call."""
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def _run_bench(benchmark, fn, device: str, rounds: int, inputs: list[torch.Tensor]) -> float:
    """Benchmark ``fn``; returns the median time in seconds used for bandwidth figures (CUDA events on
    CUDA, the pytest-benchmark median otherwise)."""

    def run():
        fn()
        _sync(device)

    for _ in range(2):  # warm-up, and compilation for the torch.compile'd reference
        run()
    peak = _peak_memory(fn, device)
    if peak is not None:
        benchmark.extra_info["peak_memory_MiB"] = round(peak / 2**20, 2)
    benchmark.extra_info["saved_for_backward_MiB"] = round(saved_for_backward_bytes(fn, inputs) / 2**20, 3)
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    if device == "cuda":
        median = _cuda_event_median(fn, rounds)
        benchmark.extra_info["cuda_event_median_ms"] = round(median * 1e3, 4)
        return median
    return benchmark.stats.stats.median


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_attention_transfer(benchmark, impl, phase, kd_size, kd_device):
    benchmark.group = f"attention_transfer {phase} {kd_size} {kd_device}"
    student = _utime_layers(kd_size, kd_device, 0, requires_grad=True)
    teacher = _utime_layers(kd_size, kd_device, 1, requires_grad=False)
    loss_fn = _impl("attention_transfer_loss" if impl != "compiled" else "attention_transfer", impl)

    def fn():
        loss = loss_fn(student, teacher)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, student)

    in_bytes = sum(x.numel() * x.element_size() for x in student + teacher)
    out_bytes = sum(x.numel() * x.element_size() for x in student) if phase == "fwdbwd" else 0
    median = _run_bench(
        benchmark, fn, kd_device, rounds=20 if kd_size == "small" else 10, inputs=student + teacher
    )
    benchmark.extra_info["bytes_counted"] = in_bytes + out_bytes
    benchmark.extra_info["GBps"] = round((in_bytes + out_bytes) / median / 1e9, 2)
    if kd_device == "cuda":
        benchmark.extra_info["fraction_of_copy_bw"] = round(
            (in_bytes + out_bytes) / median / _copy_bandwidth("cuda"), 3
        )


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_distillation_loss(benchmark, impl, phase, kd_size, kd_device):
    benchmark.group = f"distillation_loss {phase} {kd_size} {kd_device}"
    g = torch.Generator().manual_seed(0)
    shape = SD_SHAPE[kd_size]
    student = (torch.randn(*shape, generator=g) * 3).to(kd_device).requires_grad_(True)
    teacher = (torch.randn(*shape, generator=g) * 3).to(kd_device)
    labels = torch.randint(-1, shape[1], (shape[0], shape[2]), generator=g).to(kd_device)
    weights = (torch.rand(shape[1], generator=g) + 0.5).to(kd_device)
    loss_fn = _impl("distillation_loss", impl)

    def fn():
        loss = loss_fn(student, teacher, labels, class_weights=weights, weight_kd=0.5, temperature=1.0)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, student)

    _run_bench(benchmark, fn, kd_device, rounds=200, inputs=[student, teacher, labels, weights])


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_self_distillation_loss(benchmark, impl, phase, kd_size, kd_device):
    benchmark.group = f"self_distillation_loss {phase} {kd_size} {kd_device}"
    n_student, n_teacher, rows, classes = DINO_SHAPE[kd_size]
    g = torch.Generator().manual_seed(0)
    student = torch.randn(n_student, rows, classes, generator=g).to(kd_device).requires_grad_(True)
    teacher = torch.randn(n_teacher, rows, classes, generator=g).to(kd_device)
    center = (torch.randn(classes, generator=g) * 0.1).to(kd_device)
    loss_fn = _impl("self_distillation_loss", impl)

    def fn():
        loss = loss_fn(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, student)

    _run_bench(benchmark, fn, kd_device, rounds=20, inputs=[student, teacher, center])
