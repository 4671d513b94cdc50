from __future__ import annotations

import os
from pathlib import Path

import pytest

#: A tiny setting: 8 Hz, 5-epoch windows, a U-Time with 2-3 filters per level, a few windows per epoch.
TINY = {
    "dataset": "synthetic",
    "synthetic_subjects": 5,
    "synthetic_hours": 4.0,
    "synthetic_sfreq": 64.0,
    "sfreq": 8.0,
    "eeg_band": [0.3, 3.5],
    "ecg_band": [0.3, 3.5],
    "window_epochs": 5,
    "pools": [2, 2, 2, 3, 5],
    "filters": [2, 3, 3, 4, 4],
    "epochs": 2,
    "at_epochs": 1,
    "batch_size": 4,
    "max_train_windows": 8,
    "device": "cpu",
    "amp": False,
    "num_threads": 1,
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Five synthetic 4-hour nights (one session-wide copy) and their preprocessed cache."""
    from kdsleep.data.synthetic import generate_synthetic_psg

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_psg(root, n_subjects=5, hours=4.0, seed=0, sfreq=64.0, progress=False)
    (root / ".kdsleep-synthetic-complete").write_text("complete\n")
    return root


@pytest.fixture
def tiny_config(tiny_data):
    from kdsleep.distill.config import TrainConfig

    def make(**changes):
        return TrainConfig.from_dict({**TINY, "data_dir": str(tiny_data), **changes})

    return make


@pytest.fixture(autouse=True)
def _kdsleep_home(tmp_path, monkeypatch):
    # never write generated data into the user's home during tests
    monkeypatch.setenv("KDSLEEP_HOME", os.fspath(tmp_path / "kdsleep-home"))


@pytest.fixture
def tiny_toml(tmp_path):
    """Write the tiny setting (with changes) as a TOML configuration file."""

    def write(path: Path | None = None, **changes) -> Path:
        path = path or tmp_path / "tiny.toml"
        lines = []
        for key, value in {**TINY, **changes}.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
        path.write_text("\n".join(lines) + "\n")
        return path

    return write
