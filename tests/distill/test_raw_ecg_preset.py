"""The raw-ECG preset of the synthetic default: picked by ``--ecg-input raw``, at a rate that keeps the QRS."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsleep.cli import build_parser
from kdsleep.cli.train import resolve_config
from kdsleep.distill.config import (
    SYNTHETIC_QUICKSTART,
    SYNTHETIC_RAW_QUICKSTART,
    TrainConfig,
    load_config_file,
)
from kdsleep.models import UTime

ROOT = Path(__file__).resolve().parents[2]


def _resolve(argv: list[str]) -> TrainConfig:
    return resolve_config(build_parser().parse_args(argv))


@pytest.mark.parametrize("command", ["train", "experiment"])
def test_raw_ecg_input_without_config_picks_the_raw_preset(command):
    config = _resolve([command, "--ecg-input", "raw"])
    expected = TrainConfig.from_dict(SYNTHETIC_RAW_QUICKSTART)
    assert config.to_dict() == expected.to_dict()
    assert config.data.ecg_input == "raw"
    # the other inputs (and no flag) keep the quick preset
    for argv in ([command], [command, "--ecg-input", "both"], [command, "--ecg-input", "ihr"]):
        other = _resolve(argv)
        assert (other.data.sfreq, other.model.pools) == (
            SYNTHETIC_QUICKSTART["sfreq"],
            SYNTHETIC_QUICKSTART["pools"],
        )


def test_raw_preset_keeps_the_qrs_and_builds_a_valid_utime():
    config = TrainConfig.from_dict(SYNTHETIC_RAW_QUICKSTART)
    assert config.data.sfreq >= 100.0
    # the generated nights must carry what the model rate keeps (no upsampling of a 64-Hz night)
    assert config.data.synthetic_sfreq >= config.data.sfreq
    assert config.data.ecg_band[1] < config.data.sfreq / 2 and config.data.ecg_band[1] >= 35.0
    assert config.data.ecg_input == "raw"  # the paper's student: the waveform only, no heart-rate channel
    model = UTime(
        1,
        4,
        sfreq=config.data.sfreq,
        n_epochs=config.model.window_epochs,
        pools=config.model.pools,
        filters=config.model.filters,
    )
    assert model.n_times == round(config.data.sfreq * 30) * config.model.window_epochs


def test_raw_preset_flags_and_config_file_still_override():
    config = _resolve(["train", "--ecg-input", "raw", "--epochs", "3", "--seed", "4"])
    assert (config.training.epochs, config.training.seed, config.data.sfreq) == (
        3,
        4,
        SYNTHETIC_RAW_QUICKSTART["sfreq"],
    )
    # a configuration file replaces the preset (the dataclass defaults are the paper's protocol)
    config = _resolve(["train", "--ecg-input", "raw", "--config", str(ROOT / "configs" / "paper.toml")])
    assert config.data.sfreq == 200.0 and config.training.epochs == 150
    # real data never gets a synthetic preset
    config = _resolve(["train", "--ecg-input", "raw", "--dataset", "slpdb", "--data-dir", "/nowhere"])
    assert config.data.synthetic_sfreq == TrainConfig().data.synthetic_sfreq and config.data.sfreq == 200.0


def test_raw_config_file_matches_the_built_in_preset():
    preset = {k: v for k, v in SYNTHETIC_RAW_QUICKSTART.items() if v is not None}
    assert load_config_file(ROOT / "configs" / "synthetic_raw.toml") == preset


def test_grid_config_is_the_quick_preset_with_twelve_test_subjects():
    """configs/synthetic_grid.toml changes only the number of nights and the split of the quick preset."""
    from kdsleep.distill.config import SYNTHETIC_QUICKSTART
    from kdsleep.distill.split import _part_sizes

    grid = load_config_file(ROOT / "configs" / "synthetic_grid.toml")
    quick = {k: v for k, v in SYNTHETIC_QUICKSTART.items() if v is not None}
    changed = {k for k in grid.keys() | quick.keys() if grid.get(k) != quick.get(k)}
    assert changed == {"synthetic_subjects", "split_fractions"}
    sizes = _part_sizes(grid["synthetic_subjects"], grid["split_fractions"])
    assert sizes == (16, 4, 12) and sizes[0] == round(quick["synthetic_subjects"] * 0.8)
