"""One distillation training step with the fused kdsleep losses vs the pure-PyTorch reference losses.

A step of AT+SD+CL as the pipeline runs it: the frozen U-Time teacher's forward pass under ``no_grad`` (logits
and the twelve feature maps), the student's forward pass with its feature maps, the attention-transfer loss
plus the softmax distillation loss, backward and an Adam update. Both implementations share one benchmark
group, so pytest-benchmark prints their ratio.

``--kd-size=small`` (default, CI): batch 2 of 5-epoch windows at 50 Hz with a narrow U-Time.
``--kd-size=paper``: batch 12 of 35-epoch windows at 200 Hz with the full U-Time (as in the paper).
"""

from __future__ import annotations

import pytest
import torch

from kdsleep.distill.losses import FeatureLoss, FinalLoss
from kdsleep.distill.trainer import flush_denormals
from kdsleep.models import FeatureTaps, UTime

SIZES = {
    "small": {
        "batch": 2,
        "model": {"sfreq": 50.0, "n_epochs": 5, "pools": [5, 5, 3, 2, 2], "filters": [8, 16, 16, 32, 32]},
    },
    "paper": {"batch": 12, "model": {"sfreq": 200.0, "n_epochs": 35}},
}


def make_step(backend: str, size: str, device: str):
    torch.manual_seed(0)
    shape = SIZES[size]
    teacher = UTime(1, 4, **shape["model"]).to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student = UTime(1, 4, **shape["model"]).to(device).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    eeg = torch.randn(shape["batch"], 1, student.n_times, device=device)
    ecg = torch.randn(shape["batch"], 1, student.n_times, device=device)
    labels = torch.randint(0, 4, (shape["batch"], student.n_epochs), device=device)
    labels[:, 0] = -1  # an unscored epoch in every window
    final_loss = FinalLoss(torch.tensor([0.5, 0.8, 2.0, 1.2], device=device), weight_kd=0.5, backend=backend)
    feature_loss = FeatureLoss(backend=backend)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher_logits, teacher_maps = teacher.features(eeg, detach=True)
        with FeatureTaps(student, student.tap_names) as taps:
            logits = student(ecg)
        loss = feature_loss(taps.features, teacher_maps) + final_loss(logits, labels, teacher_logits)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    return step


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_train_step(benchmark, backend, kd_size, kd_device):
    benchmark.group = f"train_step {kd_size} {kd_device}"
    step = make_step(backend, kd_size, kd_device)
    # as in training: denormal activations would dominate the CPU timings otherwise
    with flush_denormals():
        step()  # warm-up (allocations, first-call dispatch)
        loss = benchmark.pedantic(step, rounds=5 if kd_size == "small" else 10, iterations=1, warmup_rounds=1)
    assert torch.isfinite(torch.tensor(loss))


def test_fused_and_reference_steps_agree(kd_device):
    """The two backends give the same first loss (same weights, same inputs)."""
    fused = make_step("fused", "small", kd_device)()
    reference = make_step("reference", "small", kd_device)()
    assert fused == pytest.approx(reference, rel=1e-4, abs=1e-6)
