"""The heart-rate stager and its recipe: shapes, a short training that learns, save/load, slpdb inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.hr_bundle import HRStagerBundle, HRStagerError, RecipeSettings, beat_inputs, is_hr_stager_file
from kdsleep.models.hr_stager import HRStager
from kdsleep.study.hr_recipe import RecipeRecord, load_slpdb_records, train_stager

REFERENCE = Path(__file__).with_name("data") / "hr_recipe_slp01a_reference.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_shapes_and_parameter_count() -> None:
    model = HRStager(28, 3, 60)
    out = model(torch.zeros(2, 7, 28), torch.zeros(2, 7, 60))
    assert out.shape == (2, 7, 3)
    # the architecture cross-validated on slpdb: 42,531 parameters for 3 classes, 42,596 for 4
    assert sum(p.numel() for p in model.parameters()) == 42_531
    assert sum(p.numel() for p in HRStager(28, 4, 60).parameters()) == 42_596
    # a night is one sequence of any length
    assert model(torch.zeros(1, 1, 28), torch.zeros(1, 1, 60)).shape == (1, 1, 3)


@pytest.mark.parametrize(
    ("features", "heart_rate", "message"),
    [
        ((2, 7, 27), (2, 7, 60), r"features: expected shape \(batch, n_epochs, 28\)"),
        ((2, 7, 28), (2, 7, 61), r"heart_rate: expected shape \(batch, n_epochs, 60\)"),
        ((2, 7, 28), (2, 6, 60), "differ in batch or epochs"),
        ((7, 28), (7, 60), "features: expected shape"),
    ],
)
def test_model_refuses_wrong_shapes(features, heart_rate, message) -> None:
    with pytest.raises(ValueError, match=message):
        HRStager(28, 3, 60)(torch.zeros(features), torch.zeros(heart_rate))


def test_model_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_outputs must be >= 2"):
        HRStager(28, 1)
    with pytest.raises(ValueError, match="drop_prob"):
        HRStager(28, 3, drop_prob=1.0)
    with pytest.raises(ValueError, match="n_times"):
        HRStager(28, 3, n_times=2)


def _synthetic_night(rng: np.random.Generator, name: str, n_epochs: int = 160) -> RecipeRecord:
    """A night whose class is visible in one feature column and in the heart-rate level, with noise."""
    # stages in runs of 10 epochs: W (0), N2 (2), REM (4) -> classes W, N, R of w-n-r
    stages = np.repeat(rng.choice([0, 2, 4], size=n_epochs // 10), 10).astype(np.int8)
    level = {0: 1.0, 2: -0.5, 4: 0.3}
    signal = np.array([level[int(s)] for s in stages], dtype=np.float32)
    features = rng.normal(0, 1, (n_epochs, 6)).astype(np.float32)
    features[:, 0] += 2 * signal
    features[:, 1] += 2 * (stages == 4)
    heart_rate = (signal[:, None] + rng.normal(0, 0.5, (n_epochs, 12))).astype(np.float32)
    return RecipeRecord(name, name, features, heart_rate, stages, [f"x{i}" for i in range(6)])


def _tiny_settings(**kw) -> RecipeSettings:
    base = RecipeSettings(hidden=8, sfreq=0.4, crop=40, batch=4, steps=10, max_epochs=6, patience=3, lr=1e-2)
    return replace(base, **kw)


def test_short_training_beats_chance_and_round_trips(tmp_path) -> None:
    from kdsleep.evaluation.metrics import compute_metrics

    rng = np.random.default_rng(0)
    train = [_synthetic_night(rng, f"t{i}") for i in range(4)]
    val = [_synthetic_night(rng, "v0")]
    test = _synthetic_night(rng, "x0")
    bundle = train_stager(train, "w-n-r", _tiny_settings(), val_records=val)
    assert bundle.class_names == ("W", "N", "R") and bundle.model.n_times == 12
    assert 1 <= bundle.training["epochs_run"] <= 6 and bundle.training["best_val_kappa"] is not None
    probs = bundle.predict_proba(test.features, test.heart_rate)
    assert probs.shape == (160, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    kappa = compute_metrics(test.labels("w-n-r"), probs.argmax(1), 3).cohen_kappa
    assert kappa > 0.3  # chance is 0

    bundle.training["versions"] = {"torch": torch.__version__}  # not a plain str: must still load safely
    path = bundle.save(tmp_path / "stager.pt")
    assert is_hr_stager_file(path)
    loaded = HRStagerBundle.load(path)
    assert loaded.class_names == bundle.class_names and loaded.grouping == "w-n-r"
    assert loaded.settings == bundle.settings and loaded.sfreq == 0.4
    assert loaded.training["versions"]["torch"] == str(torch.__version__)
    np.testing.assert_array_equal(loaded.feature_mean, bundle.feature_mean)
    np.testing.assert_array_equal(loaded.feature_sd, bundle.feature_sd)
    np.testing.assert_array_equal(loaded.predict_proba(test.features, test.heart_rate), probs)


def test_fixed_epochs_without_validation() -> None:
    rng = np.random.default_rng(1)
    train = [_synthetic_night(rng, f"t{i}") for i in range(2)]
    bundle = train_stager(train, "w-n-r", _tiny_settings(steps=2), n_epochs=3)
    assert bundle.training["epochs_run"] == 3 and bundle.training["best_val_kappa"] is None
    with pytest.raises(ValueError, match="either val_records"):
        train_stager(train, "w-n-r", _tiny_settings(), val_records=train, n_epochs=3)


def test_load_refuses_other_files(tmp_path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    assert not is_hr_stager_file(other)
    with pytest.raises(HRStagerError, match=r"other\.pt: not a heart-rate stager"):
        HRStagerBundle.load(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    assert not is_hr_stager_file(text)
    with pytest.raises(HRStagerError, match=r"text\.pt: not a heart-rate stager"):
        HRStagerBundle.load(text)
    with pytest.raises(HRStagerError, match="no such"):
        HRStagerBundle.load(tmp_path / "absent.pt")


def test_damaged_file_is_named(tmp_path) -> None:
    rng = np.random.default_rng(2)
    bundle = train_stager([_synthetic_night(rng, "t")], "w-n-r", _tiny_settings(steps=1), n_epochs=1)
    data = bundle.to_dict()
    data["feature_mean"] = data["feature_mean"][:-1]
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(HRStagerError, match=r"bad\.pt: feature_mean/feature_sd/feature_names lengths"):
        HRStagerBundle.load(tmp_path / "bad.pt")


def test_beat_inputs_shapes() -> None:
    beats = np.cumsum(np.full(3000, 0.9))
    features, hr, names = beat_inputs(beats, 80)
    assert features.shape == (80, 28) and hr.shape == (80, 60) and len(names) == 28
    assert features.dtype == np.float32 and hr.dtype == np.float32


def test_slpdb_inputs_match_the_cross_validated_ones(shared_data) -> None:
    """The inputs of slp01a equal those the recipe was cross-validated on (values saved at that time)."""
    folder = shared_data / "slpdb"
    if not (folder / "slp01a.ecg").is_file():
        pytest.skip(f"{folder}/slp01a.ecg not found")
    reference = json.loads(REFERENCE.read_text())
    records = load_slpdb_records(folder)
    record = next(r for r in records if r.name == "slp01a")
    assert record.features.shape == (reference["n_epochs"], 28)
    assert record.heart_rate.shape == (reference["n_epochs"], 60)
    assert record.feature_names == reference["feature_names"]
    epoch = reference["epoch"]
    expected = np.array([np.nan if v is None else v for v in reference["features_epoch"]], dtype=np.float32)
    np.testing.assert_allclose(record.features[epoch], expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(record.heart_rate[epoch], reference["heart_rate_epoch"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.nanmean(record.features, 0), reference["feature_column_nanmean"], rtol=1e-5, atol=1e-6
    )
    assert record.heart_rate.mean() == pytest.approx(reference["heart_rate_mean"], rel=1e-6, abs=1e-7)
    assert int(record.stages.astype(int).sum()) == reference["stages_sum"]
    # the study's folds over the 15 records
    from kdsleep.study.hr_recipe import slpdb_folds

    assert [f.test for f in slpdb_folds(records)][0] == ("slp02", "slp32", "slp48")
