"""Checks of the synthetic generator: per-epoch features, the separability proxy, the stage figure."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from kdsleep.cli import main
from kdsleep.data.stages import SleepStage
from kdsleep.data.synthetic import synthesize_night
from kdsleep.evaluation.synthetic_checks import (
    epoch_features,
    plot_stage_epochs,
    proxy_separability,
    separability_of_nights,
)

W, N1, N2, N3, R = (int(s) for s in (SleepStage.W, SleepStage.N1, SleepStage.N2, SleepStage.N3, SleepStage.R))


def test_eeg_separates_stages_well_and_ecg_weakly_but_above_chance():
    # Cheap stand-in for the teacher / student gap: logistic regression on per-epoch features,
    # held-out subjects. Real data: EEG ~0.85, ECG ~0.45 weighted F1 (4-class, Joshi et al. Table I).
    result = proxy_separability(n_subjects=10, hours=4.0, seed=0, sfreq=100.0)
    assert result["eeg_f1"] >= 0.8
    assert result["eeg_f1_wldr"] >= 0.8
    assert result["ecg_f1"] >= result["chance_f1"] + 0.1
    assert result["ecg_f1_wldr"] >= result["chance_f1_wldr"] + 0.1
    assert result["ecg_f1"] <= result["eeg_f1"] - 0.2
    assert result["ecg_f1_wldr"] <= result["eeg_f1_wldr"] - 0.2


def test_separability_leaves_unscored_epochs_out_and_needs_both_sides():
    rng = np.random.default_rng(0)
    nights = []
    for _ in range(4):
        stages = np.tile(np.array([W, N1, N2, N3, R, int(SleepStage.UNSCORED)], dtype=np.int8), 20)
        eeg = (
            rng.normal(size=(stages.shape[0], 7)) + 3.0 * stages[:, None]
        )  # the stage shows in every feature
        ecg = rng.normal(size=(stages.shape[0], 4))  # nothing to learn
        nights.append((eeg, ecg, stages))
    result = separability_of_nights(nights, [False, False, False, True])
    assert (
        result["n_test_epochs"] == 100 and result["n_train_epochs"] == 300
    )  # the 20 "?" epochs of each night dropped
    assert result["eeg_f1"] > 0.95
    assert result["ecg_f1"] < 0.45
    with pytest.raises(ValueError, match="both sides"):
        separability_of_nights(nights, [False] * 4)


def test_epoch_features_find_the_heart_beats():
    night = synthesize_night(0, hours=0.25, seed=0, sfreq=128.0)
    _, ecg_features, stages = epoch_features(night)
    true_rr = np.diff(night.beat_times).mean()
    assert np.median(ecg_features[:, 0]) == pytest.approx(true_rr, rel=0.05)
    assert ecg_features.shape == (stages.shape[0], 4)


def test_stage_figure_is_a_png_and_leaves_pyplot_alone(tmp_path):
    night = synthesize_night(2, hours=1.0, seed=0, sfreq=64.0)
    path = plot_stage_epochs(night, tmp_path / "figures" / "stages.png")
    assert path == tmp_path / "figures" / "stages.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["stages.png"]  # no temporary file left behind
    # an object-oriented figure: no pyplot state (and no backend switch) for the caller to inherit
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_synth_check_prints_the_separability(tmp_path, capsys):
    out = tmp_path / "synthetic"
    argv = ["synth", "--out", str(out), "--subjects", "3", "--hours", "1", "--sfreq", "64", "--check"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 files (3 nights)" in printed
    assert "5-class  EEG" in printed and "W-L-D-R  chance" in printed
