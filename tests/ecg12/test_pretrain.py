"""Self-distillation pre-training: EMA teacher, centre, checkpoints and strict loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kdsleep.ecg12.pretrain import PretrainConfig, load_pretrained_encoder, pretrain, read_signals

pytestmark = pytest.mark.usefixtures("one_thread")


def _signals(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((12, 400)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("modality", ["time", "spectrogram"])
def test_pretrain_writes_a_loadable_checkpoint(tmp_path, modality) -> None:
    config = dataclasses.replace(PretrainConfig.small(modality, n_steps=3), batch_size=4)
    result = pretrain(_signals(), config, tmp_path / f"{modality}.pt", progress=False)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    ckpt = torch.load(result.checkpoint, weights_only=False)
    assert ckpt["modality"] == modality and ckpt["center"].shape == (config.head.out_dim,)
    # The centre moved away from zero (EMA of teacher outputs with momentum 0.9).
    assert ckpt["center"].abs().sum() > 0
    # Teacher is an EMA of the student: close to it but not equal after a few steps.
    t, s = ckpt["teacher"], ckpt["student"]
    diffs = [(t[k] - s[k]).abs().max().item() for k in t if t[k].is_floating_point() and "running" not in k]
    assert max(diffs) > 0
    encoder = load_pretrained_encoder(result.checkpoint, modality)
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, ckpt["teacher_encoder"][k])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def test_teacher_follows_student_with_momentum(tmp_path) -> None:
    # With momentum 0 the teacher is the student after every step.
    config = dataclasses.replace(PretrainConfig.small("time", n_steps=2), batch_size=4, teacher_momentum=0.0)
    result = pretrain(_signals(), config, tmp_path / "t.pt", progress=False)
    ckpt = torch.load(result.checkpoint, weights_only=False)
    for k, v in ckpt["student"].items():
        if v.is_floating_point() and "running" not in k and "num_batches" not in k:
            assert torch.allclose(v, ckpt["teacher"][k]), k


def test_wrong_modality_and_config_are_rejected(tmp_path) -> None:
    config = dataclasses.replace(PretrainConfig.small("time", n_steps=1), batch_size=2)
    result = pretrain(_signals(3), config, tmp_path / "time.pt", progress=False)
    with pytest.raises(ValueError, match="field 'modality'"):
        load_pretrained_encoder(result.checkpoint, "spectrogram")
    with pytest.raises(ValueError, match="needs an SEResNetConfig"):
        PretrainConfig(modality="spectrogram")
    with pytest.raises(ValueError, match="teacher_momentum"):
        dataclasses.replace(config, teacher_momentum=1.0)


def test_read_signals_on_the_unlabelled_records(shared_data) -> None:
    records = read_signals(shared_data / "cinc2020" / "unlabelled")
    assert len(records) == 48
    assert all(r.signal.shape[0] == 12 and r.signal.shape[1] >= 250 for r in records)
    assert all(r.signal.dtype == np.float32 for r in records)
