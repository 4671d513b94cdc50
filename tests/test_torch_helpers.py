"""The small torch helpers shared by the package and the benchmarks."""

from __future__ import annotations

import torch

from kdsleep._torch import saved_for_backward_bytes


def test_saved_for_backward_bytes_counts_what_autograd_keeps() -> None:
    x = torch.randn(1000, requires_grad=True)
    # exp keeps its output (1000 float32) for backward; the input is excluded
    assert saved_for_backward_bytes(lambda: x.exp().sum(), [x]) == 4000
    # a product of two excluded tensors keeps nothing new
    w = torch.randn(1000, requires_grad=True)
    assert saved_for_backward_bytes(lambda: (x * w).sum(), [x, w]) == 0
    # the same storage saved twice counts once; without exclusions the inputs count
    assert saved_for_backward_bytes(lambda: (x * x).sum()) == 4000
