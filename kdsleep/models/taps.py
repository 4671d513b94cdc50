"""Intermediate feature taps by forward hooks keyed by module path.

Attention transfer needs the activations of many layers of both the teacher and the student. Returning them
from ``forward`` would clutter every call site (and the exported graph), so they are collected by forward hooks
registered only while they are wanted, keyed by the dotted module path as in ``model.named_modules()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureTaps"]


class FeatureTaps:
    """Context manager that records the outputs of named sub-modules during forward passes.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose sub-modules are tapped. A wrapper such as ``DistributedDataParallel`` may be passed;
        its ``module`` attribute is used.
    names : sequence of str
        Dotted module paths (as listed by ``model.named_modules()``) whose forward outputs are recorded, in the
        order in which :attr:`features` returns them.
    detach : bool
        Detach the recorded tensors from the autograd graph (for a frozen teacher). Default ``False``.

    Examples
    --------
    >>> with FeatureTaps(model, model.tap_names) as taps:  # doctest: +SKIP
    ...     logits = model(x)
    >>> feature_maps = taps.features  # doctest: +SKIP

    Notes
    -----
    Only the output of the most recent forward pass is kept for each name; a second forward pass inside the
    same ``with`` block replaces it.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], *, detach: bool = False) -> None:
        inner = getattr(model, "module", model)
        modules = dict(inner.named_modules())
        missing = [name for name in names if name not in modules]
        if missing:
            raise ValueError(
                f"cannot tap {missing}: no such sub-module in {type(inner).__name__} "
                f"(expected dotted paths from named_modules(), e.g. {list(modules)[1:4]})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"tap names must be unique, got {list(names)}")
        self.names: tuple[str, ...] = tuple(names)
        self.detach = detach
        self._modules = [modules[name] for name in self.names]
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook_for(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            self._outputs[name] = output.detach() if self.detach else output

        return hook

    def __enter__(self) -> FeatureTaps:
        if self._handles:
            raise RuntimeError("FeatureTaps is already active; it cannot be entered twice")
        self._outputs.clear()
        self._handles = [
            module.register_forward_hook(self._hook_for(name))
            for name, module in zip(self.names, self._modules, strict=True)
        ]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def features(self) -> list[torch.Tensor]:
        """The recorded outputs, in the order of :attr:`names`.

        Raises
        ------
        RuntimeError
            If some tapped module has not run since the taps were entered.
        """
        missing = [name for name in self.names if name not in self._outputs]
        if missing:
            raise RuntimeError(f"no output recorded for {missing}: run a forward pass inside the with block")
        return [self._outputs[name] for name in self.names]

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The recorded outputs keyed by module path."""
        return dict(zip(self.names, self.features, strict=True))

    def clear(self) -> None:
        """Forget the recorded outputs (they hold on to activations and their graphs)."""
        self._outputs.clear()
