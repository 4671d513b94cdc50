"""Versions and compiled backends: ``python -m kdsleep.info`` or ``kdsleep info``."""

from __future__ import annotations

import importlib
import platform
import sys

import torch

from kdsleep import __version__
from kdsleep.ops import _extension


def collect() -> dict[str, str]:
    """What a bug report needs: versions of kdsleep and its main dependencies, and what was compiled."""
    info: dict[str, str] = {
        "kdsleep": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "CUDA devices": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        or "none visible",
    }
    for name in ("numpy", "scipy", "numba", "mne", "wfdb"):
        try:
            info[name] = importlib.import_module(name).__version__
        except ImportError:
            info[name] = "not installed"
    compiled = _extension.load()
    info["compiled kernels"] = compiled or "missing (pure-PyTorch fallback in use)"
    try:  # written by the build of the extension; a source tree that was never built has none
        from kdsleep import _build_config as build
    except ImportError:
        pass
    else:
        info["built against torch"] = build.TORCH_VERSION
        info["CUDA kernels"] = ("built for " + build.CUDA_ARCH_LIST) if build.WITH_CUDA else build.CUDA_REASON
    return info


def main() -> int:
    info = collect()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
