"""Fixtures for the ops tests: devices with compiled kernels and random feature-map builders."""

from __future__ import annotations

import os

import pytest
import torch

import kdsleep.ops as ops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    dev = request.param
    if dev == "cuda" and not ops.extension_available("cuda"):
        pytest.fail(
            "a GPU is visible but kdsleep was built without CUDA kernels (rebuild with a CUDA toolkit)"
        )
    return dev


@pytest.fixture(autouse=True, scope="session")
def _require_extension():
    """The suite tests the compiled kernels: fail loudly rather than silently testing the fallback."""
    if not ops.extension_available("cpu") and os.environ.get("KDSLEEP_ALLOW_NO_EXTENSION") != "1":
        pytest.fail("kdsleep._C is not built; install with `pip install --no-build-isolation .`")


def make_layers(shapes, *, dtype=torch.float32, device="cpu", generator=None, requires_grad=False):
    """Random (B, C, L) feature maps, one per (C, L) in `shapes` for a shared batch size."""
    batch, layer_shapes = shapes
    out = []
    for channels, length in layer_shapes:
        x = torch.randn(batch, channels, length, generator=generator, dtype=torch.float64)
        out.append(x.to(device=device, dtype=dtype).requires_grad_(requires_grad))
    return out
