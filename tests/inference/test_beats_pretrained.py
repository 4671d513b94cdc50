"""The registry of shipped models: loading by name, checksum at load, and what an unknown name says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kdsleep.models.pretrained as pretrained
from kdsleep._io import sha256_file
from kdsleep.checkpoint import Checkpoint
from kdsleep.inference import InferenceError
from kdsleep.models.pretrained import (
    PretrainedModel,
    PretrainedModelError,
    available_models,
    load_pretrained,
    model_info,
    registry_entry,
    resolve_model,
)

from .test_beats_predict import save_hr_checkpoint


@pytest.fixture()
def weights(tmp_path) -> tuple[dict[str, PretrainedModel], Path]:
    folder = tmp_path / "weights"
    folder.mkdir()
    path = save_hr_checkpoint(folder / "hr-test-3class.pt")
    entry = registry_entry("hr-test-3class", path, "test heart-rate stager, W/N/R")
    return {entry.name: entry}, folder


def test_nothing_is_registered_before_weights_exist() -> None:
    # The registry lists only models whose weight files are in the package.
    for name in available_models():
        assert pretrained.weights_path(name).is_file()
    if pretrained.DEFAULT_MODEL is not None:
        assert pretrained.DEFAULT_MODEL in available_models()
    if not available_models():
        with pytest.raises(PretrainedModelError, match="no model is shipped with this version"):
            resolve_model(None)


def test_registry_entry_reads_checksum_classes_and_inputs(weights) -> None:
    registry, folder = weights
    entry = registry["hr-test-3class"]
    assert entry.sha256 == sha256_file(folder / entry.filename) and len(entry.sha256) == 64
    assert entry.classes == ("W", "N", "R") and entry.inputs == ("ihr",)


def test_load_by_name(weights) -> None:
    registry, folder = weights
    checkpoint = load_pretrained("hr-test-3class", registry=registry, weights_dir=folder)
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.class_names == ["W", "N", "R"] and checkpoint.inputs == ["ihr"]
    assert resolve_model("hr-test-3class", registry=registry, weights_dir=folder).class_names == [
        "W",
        "N",
        "R",
    ]
    default = resolve_model(None, registry=registry, weights_dir=folder, default="hr-test-3class")
    assert default.path == folder / "hr-test-3class.pt"


def test_checksum_mismatch_is_refused(weights) -> None:
    registry, folder = weights
    path = folder / "hr-test-3class.pt"
    with path.open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(
        PretrainedModelError, match=r"hr-test-3class\.pt: checksum mismatch .*expected [0-9a-f]{64}"
    ):
        load_pretrained("hr-test-3class", registry=registry, weights_dir=folder)


def test_missing_weight_file(weights, tmp_path) -> None:
    registry, _folder = weights
    with pytest.raises(
        PretrainedModelError, match="weight file of shipped model 'hr-test-3class' is missing"
    ):
        load_pretrained("hr-test-3class", registry=registry, weights_dir=tmp_path / "elsewhere")


def test_entry_that_does_not_match_its_file(weights) -> None:
    registry, folder = weights
    wrong = {
        "hr-test-3class": pretrained.PretrainedModel(
            **{**vars(registry["hr-test-3class"]), "classes": ("W", "S")}
        )
    }
    with pytest.raises(
        PretrainedModelError, match=r"predicts \['W', 'N', 'R'\], but its registry entry says"
    ):
        load_pretrained("hr-test-3class", registry=wrong, weights_dir=folder)


def test_unknown_name_lists_the_registered_ones(weights) -> None:
    registry, folder = weights
    with pytest.raises(
        PretrainedModelError, match=r"unknown model 'hr-x'.*shipped models: hr-test-3class \(test"
    ):
        model_info("hr-x", registry)
    with pytest.raises(
        PretrainedModelError, match=r"model 'hr-x': neither a checkpoint file nor a shipped model"
    ):
        resolve_model("hr-x", registry=registry, weights_dir=folder)
    with pytest.raises(
        PretrainedModelError, match=r"model '.*nope\.pt': no such checkpoint file; shipped models"
    ):
        resolve_model(folder / "nope.pt", registry=registry, weights_dir=folder)
    with pytest.raises(PretrainedModelError, match="no model is shipped"):
        resolve_model("hr-x", registry={})


def test_a_file_path_wins_over_a_name(weights, tmp_path) -> None:
    registry, folder = weights
    local = shutil.copy(folder / "hr-test-3class.pt", tmp_path / "mine.pt")
    assert resolve_model(str(local), registry=registry).path == Path(local)
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(InferenceError, match=r"notes\.pt: not a kdsleep checkpoint"):
        resolve_model(not_a_checkpoint, registry=registry)
