"""Augmentations and multi-crop views of the self-distillation pre-training."""

from __future__ import annotations

import pytest
import torch

from kdsleep.ecg12.augment import (
    MultiCropConfig,
    frequency_mask,
    gaussian_noise,
    lead_mask,
    multi_crop_spectrogram,
    multi_crop_time,
    random_resized_crop,
    spectrogram_crop,
    time_mask,
)


def test_full_scale_crop_is_identity() -> None:
    x = torch.randn(3, 12, 250)
    y = random_resized_crop(x, scale=(1.0, 1.0))
    assert torch.allclose(x, y, atol=1e-3)


def test_crop_of_a_ramp_is_a_monotone_sub_span() -> None:
    ramp = torch.linspace(0, 1, 250).expand(4, 12, 250).contiguous()
    g = torch.Generator().manual_seed(1)
    y = random_resized_crop(ramp, out_len=100, scale=(0.2, 0.4), generator=g)
    assert y.shape == (4, 12, 100)
    span = y[:, 0, -1] - y[:, 0, 0]
    assert torch.all(span >= 0.2 - 1e-3) and torch.all(span <= 0.4 + 1e-3)
    assert torch.all(y.diff(dim=-1) >= -1e-6)


def test_lead_mask_zeroes_whole_leads() -> None:
    x = torch.ones(50, 12, 30)
    y = lead_mask(x, 0.5, torch.Generator().manual_seed(0))
    per_lead = y.sum(-1)
    assert set(per_lead.unique().tolist()) <= {0.0, 30.0}
    assert 0.3 < (per_lead == 0).float().mean() < 0.7


def test_gaussian_noise_level() -> None:
    x = torch.zeros(20, 12, 250)
    y = gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert abs(y.std().item() - 0.1) < 0.005


def test_time_and_frequency_masks_zero_contiguous_bands() -> None:
    x = torch.ones(40, 12, 13, 21)
    g = torch.Generator().manual_seed(0)
    t = time_mask(x, 4, g)
    zero_frames = (t[:, 0, 0, :] == 0).sum(-1)
    assert zero_frames.max() <= 4 and zero_frames.max() >= 1
    # Masking is the same across leads and frequencies.
    assert torch.equal(t[:, :1, :1, :].expand_as(t), t)
    f = frequency_mask(x, 3, g)
    zero_freqs = (f[:, 0, :, 0] == 0).sum(-1)
    assert zero_freqs.max() <= 3 and zero_freqs.max() >= 1
    assert torch.equal(frequency_mask(x, 0, g), x)


def test_multi_crop_shapes() -> None:
    cfg = MultiCropConfig(n_global=2, n_local=3, local_time_samples=100, local_frames=9)
    g = torch.Generator().manual_seed(0)
    gv, lv = multi_crop_time(torch.randn(4, 12, 250), cfg, g)
    assert [v.shape for v in gv] == [(4, 12, 250)] * 2 and [v.shape for v in lv] == [(4, 12, 100)] * 3
    assert not torch.equal(gv[0], gv[1])
    gs, ls = multi_crop_spectrogram(torch.rand(4, 12, 13, 21), cfg, g)
    assert [v.shape for v in gs] == [(4, 12, 13, 21)] * 2 and [v.shape for v in ls] == [(4, 12, 13, 9)] * 3
    assert spectrogram_crop(torch.rand(2, 12, 13, 21), 9).shape == (2, 12, 13, 9)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="crop scale"):
        MultiCropConfig(local_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="probability"):
        lead_mask(torch.ones(1, 12, 5), 1.5)
