"""Shared fixtures and markers for the kdsleep test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KDSLEEP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def one_thread():
    """Run the test with PyTorch on one thread, then restore the thread count.

    Small models run faster on one thread of a shared machine, and exact comparisons between computations
    with different batch sizes need it: with several threads a convolution may split its sums by batch
    size and round differently.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public data files beside the repository (``../shared/data``).

    Tests that need it are skipped with a clear reason when it is absent; set ``KDSLEEP_SHARED_DATA`` to
    point elsewhere.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set KDSLEEP_SHARED_DATA)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="no CUDA device visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
