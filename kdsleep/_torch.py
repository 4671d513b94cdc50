"""Small torch helpers shared by training, inference and the 12-lead application.

One place decides which device a run uses and how denormal floats are treated on the CPU, so the sleep
pipeline, prediction and :mod:`kdsleep.ecg12` behave alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["dist_info", "flush_denormals", "resolve_device", "saved_for_backward_bytes"]


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside ``torch.distributed``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def resolve_device(device: str | torch.device) -> torch.device:
    """The :class:`torch.device` for ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` is CUDA when a GPU is visible, else the CPU. Under ``torchrun`` a plain ``"cuda"`` becomes the
    local rank's GPU.

    Raises
    ------
    ValueError
        For an unknown device name, or CUDA requested where torch sees no CUDA GPU.
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(device)!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} was requested but this PyTorch build or machine has no CUDA GPU; use 'cpu'"
            )
        if resolved.index is None and dist_info()[1] > 1:
            resolved = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return resolved


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero on the CPU while training or predicting.

    Small models on real-valued recordings produce many denormal activations and gradients, which the CPU
    handles in microcode: with them flushed, a training step of the quick synthetic model is about ten times
    faster. The flag is process-wide; it is switched off again afterwards (PyTorch's default). Usable as a
    context manager or, called, as a decorator.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def saved_for_backward_bytes(forward: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``forward()``.

    Storages of the tensors in ``exclude`` (inputs, parameters: they exist whether or not a backward
    follows) are not counted; a storage saved several times counts once. The output of ``forward`` is
    dropped before returning.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(saved.values())
