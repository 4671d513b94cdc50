from __future__ import annotations

import pytest
import torch

from kdsleep.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_payload,
    save_checkpoint,
)
from kdsleep.data import PreprocessConfig
from kdsleep.models import UTime


def tiny_utime(n_outputs: int = 4) -> UTime:
    torch.manual_seed(0)
    return UTime(1, n_outputs, sfreq=8.0, n_epochs=3, pools=[2, 2, 2, 2, 3], filters=[2, 3, 4, 4, 4])


def save(path, model, **overrides):
    kwargs = dict(
        modality="ecg",
        channel="ECG I",
        grouping="w-l-d-r",
        preprocess=PreprocessConfig(sfreq=8.0, eeg_band=(0.3, 3.0), ecg_band=(0.3, 3.0)),
        variant={"name": "at_cl", "weight_kd": 0.0},
        metrics={"test": {"weighted_f1": 0.5}},
    )
    kwargs.update(overrides)
    return save_checkpoint(path, model, **kwargs)


def test_round_trip_rebuilds_model_and_metadata(tmp_path):
    model = tiny_utime()
    path = save(tmp_path / "m.pt", model, extra={"note": "x"})
    ckpt = load_checkpoint(path)
    assert ckpt.modality == "ecg" and ckpt.channel == "ECG I"
    assert ckpt.grouping == "w-l-d-r" and ckpt.class_names == ["W", "L", "D", "R"]
    assert ckpt.sfreq == 8.0 and ckpt.n_epochs == 3 and ckpt.epoch_seconds == 30.0
    assert ckpt.preprocess["sfreq"] == 8.0
    assert ckpt.variant["name"] == "at_cl" and ckpt.metrics["test"]["weighted_f1"] == 0.5
    assert ckpt.extra == {"note": "x"}
    assert ckpt.kdsleep_version
    assert ckpt.model.get_config() == model.get_config()
    assert not ckpt.model.training
    x = torch.randn(2, 1, model.n_times)
    model.eval()
    torch.testing.assert_close(ckpt.model(x), model(x), rtol=0, atol=0)
    # the writer leaves no temporary files behind
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_grouping_must_match_model_outputs(tmp_path):
    with pytest.raises(ValueError, match="3 classes but the model has 4 outputs"):
        save(tmp_path / "m.pt", tiny_utime(4), grouping="w-n-r")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a kdsleep checkpoint"):
        load_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = save(tmp_path / "m.pt", tiny_utime())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable kdsleep checkpoint"):
        load_checkpoint(path)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt"):
        load_checkpoint(text)


def test_unknown_format_version(tmp_path):
    path = save(tmp_path / "m.pt", tiny_utime())
    payload = read_checkpoint_payload(path)
    payload["format_version"] = CHECKPOINT_FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 2 is not known"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_check_compatible_names_the_mismatch(tmp_path):
    ckpt = load_checkpoint(save(tmp_path / "m.pt", tiny_utime()))
    ckpt.check_compatible(grouping=4, channel="ecg i", modality="ecg", sfreq=8.0, n_epochs=3)
    with pytest.raises(CheckpointError, match="4-class grouping 'w-l-d-r'.*3-class 'w-n-r'"):
        ckpt.check_compatible(grouping=3)
    with pytest.raises(CheckpointError, match="channel 'ECG I'.*'ECG II'"):
        ckpt.check_compatible(channel="ECG II")
    with pytest.raises(CheckpointError, match="ECG model"):
        ckpt.check_compatible(modality="eeg")
    with pytest.raises(CheckpointError, match="windows of 3 epochs"):
        ckpt.check_compatible(n_epochs=35)
