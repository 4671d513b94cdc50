"""Loading of the compiled kernels and the one-time warning when they are missing."""

from __future__ import annotations

import functools
import logging
import warnings

import torch

logger = logging.getLogger(__name__)


class ExtensionMissingWarning(UserWarning):
    """The compiled kdsleep kernels are not available; a pure-PyTorch fallback is used."""


@functools.cache
def load() -> str | None:
    """Import ``kdsleep._C`` once. Returns the compiled backends (``"cpu"`` or ``"cpu,cuda"``), or None."""
    try:
        from kdsleep import _C  # type: ignore[attr-defined]  # noqa: F401  (compiled at install)
    except ImportError as err:
        logger.debug("kdsleep._C could not be imported: %s", err)
        return None
    return str(torch.ops.kdsleep.build_info()).split(";")[0]


def backends() -> frozenset[str]:
    """Device types with compiled kernels (empty when the extension is missing)."""
    info = load()
    return frozenset(info.split(",")) if info else frozenset()


# Resolved once at import so that code traced by torch.compile sees a constant.
BACKENDS = backends()


def has_op(name: str) -> bool:
    """Whether the loaded extension defines ``kdsleep::name`` (an extension built from older sources may not)."""
    if not BACKENDS:
        return False
    try:
        getattr(torch.ops.kdsleep, name)
    except (AttributeError, RuntimeError):
        return False
    return True


# The ops the loaded library defines (all of them unless it was built from older sources).
OPS = frozenset(
    op
    for op in (
        "attention_transfer",
        "attention_transfer_backward",
        "softmax_distillation",
        "self_distillation",
    )
    if has_op(op)
)


def has_kernel(device: torch.device, op: str | None = None) -> bool:
    """Whether a compiled kernel serves ``device`` (and, if given, the op ``kdsleep::op`` exists)."""
    return device.type in BACKENDS and (op is None or op in OPS)


@functools.cache
def warn_fallback(op: str, device_type: str) -> None:
    """Warn once per (op, device type) that the reference implementation is used instead of a kernel."""
    if load() is None:
        why = "the compiled extension kdsleep._C is missing (reinstall with `pip install --no-build-isolation .`)"
    elif device_type in BACKENDS:
        why = "the compiled extension is older than this kdsleep and lacks the op (reinstall to rebuild it)"
    else:
        why = f"kdsleep was built without {device_type} kernels (compiled: {load()})"
    warnings.warn(
        f"kdsleep.ops.{op}: {why}; using the slower pure-PyTorch reference implementation.",
        ExtensionMissingWarning,
        stacklevel=3,
    )
