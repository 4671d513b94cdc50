"""Options and shared helpers for the kdsleep benchmarks (pytest-benchmark).

``pytest benchmarks/`` runs the small CI size on the CPU (or the GPU when one is visible);
``--kd-size=paper`` uses the full paper-size shapes and ``--kd-device`` picks the device.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdsleep")
    group.addoption(
        "--kd-size",
        choices=["small", "paper"],
        default="small",
        help="benchmark shapes: 'small' (CI, batch 2) or 'paper' (batch 12 of 35-epoch windows at 200 Hz)",
    )
    group.addoption(
        "--kd-device",
        choices=["cpu", "cuda"],
        default=None,
        help="device to benchmark on (default: cuda when visible, else cpu)",
    )


@pytest.fixture(scope="session")
def kd_size(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--kd-size")


@pytest.fixture(scope="session")
def kd_device(request: pytest.FixtureRequest) -> str:
    device = request.config.getoption("--kd-device")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("--kd-device=cuda but no CUDA device is visible")
    return device
