"""Fused distillation losses: attention transfer, softmax distillation and self-distillation, on CPU and CUDA.

The compiled kernels are registered as ``torch.library`` custom ops in the ``kdsleep`` namespace
(``torch.ops.kdsleep.*``), with fake kernels and autograd registered here, so they work with
``torch.compile(fullgraph=True)``. When the extension is missing, or built without kernels for the input's
device, the functions fall back to :mod:`kdsleep.ops.reference` with a one-time warning.
"""

from __future__ import annotations

from kdsleep.ops import reference
from kdsleep.ops._extension import BACKENDS, ExtensionMissingWarning
from kdsleep.ops.attention import attention_maps, attention_transfer_loss
from kdsleep.ops.distill import distillation_loss, tempered_kl
from kdsleep.ops.self_distill import self_distillation_loss

__all__ = [
    "BACKENDS",
    "ExtensionMissingWarning",
    "attention_maps",
    "attention_transfer_loss",
    "distillation_loss",
    "extension_available",
    "reference",
    "self_distillation_loss",
    "tempered_kl",
]


def extension_available(device_type: str = "cpu") -> bool:
    """Whether compiled kernels exist for ``device_type`` ("cpu" or "cuda")."""
    return device_type in BACKENDS
