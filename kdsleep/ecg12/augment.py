"""Augmentations and multi-crop views for the self-distillation pre-training (Phan et al., arXiv 2210.06297).

Time series (B, 12, n_times): random resized crop, per-lead random masking, Gaussian noise.
Spectrogram (B, 12, n_freqs, n_frames): time crop (resized), time masking, frequency masking (dead code in the
authors' implementation; it works here and can be switched off with ``freq_mask_max=0``).

Each function draws its randomness from an optional ``torch.Generator`` so views are reproducible, and
works on whole batches (one draw per window) on the input's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MultiCropConfig",
    "gaussian_noise",
    "lead_mask",
    "multi_crop_spectrogram",
    "multi_crop_time",
    "random_resized_crop",
    "spectrogram_crop",
    "frequency_mask",
    "time_mask",
]


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _check_scale(scale: tuple[float, float]) -> None:
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {scale}")


def _crop_resize_last_dim(
    x: Tensor, out_len: int, scale: tuple[float, float], generator: torch.Generator | None
) -> Tensor:
    """Crop a random span of ``scale`` times the last dimension of each item and resize it to ``out_len``.

    Linear interpolation through ``grid_sample`` so every item of the batch gets its own span in one call.
    """
    _check_scale(scale)
    batch, n = x.shape[0], x.shape[-1]
    frac = _uniform(batch, *scale, generator)
    start = torch.rand(batch, generator=generator) * (1.0 - frac)
    # Positions in [-1, 1] (align_corners=True): item b samples [start, start + frac] of its span.
    t = torch.linspace(0.0, 1.0, out_len)
    pos = (start[:, None] + frac[:, None] * t[None, :]) * 2.0 - 1.0
    pos = pos.to(device=x.device, dtype=x.dtype)
    flat = x.reshape(batch, -1, 1, n)
    grid = torch.stack([pos, torch.zeros_like(pos)], dim=-1)[:, None, :, :]  # (B, 1, out_len, 2)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(*x.shape[:-1], out_len)


def random_resized_crop(
    x: Tensor,
    out_len: int | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random span of each window (a fraction in ``scale`` of its length), resized to ``out_len`` samples.

    Parameters
    ----------
    x : Tensor, shape (B, n_leads, n_times)
    out_len : int or None
        Output samples (``n_times`` by default).
    scale : (float, float)
        Range of the cropped fraction of the window.
    generator : torch.Generator or None
    """
    if x.dim() != 3:
        raise ValueError(f"random_resized_crop expects (B, n_leads, n_times), got {tuple(x.shape)}")
    return _crop_resize_last_dim(x, out_len or x.shape[-1], scale, generator)


def lead_mask(x: Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """Zero each lead of each window with probability ``p`` (per-lead random masking)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"lead masking probability must be in [0, 1), got {p}")
    keep = torch.rand(x.shape[0], x.shape[1], generator=generator) >= p
    shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
    return x * keep.to(device=x.device, dtype=x.dtype).reshape(shape)


def gaussian_noise(x: Tensor, std: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """Add white Gaussian noise of standard deviation ``std`` (millivolts for time series)."""
    if std < 0:
        raise ValueError(f"noise standard deviation must be >= 0, got {std}")
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return x + std * noise


def _band_mask(x: Tensor, dim: int, max_width: int, generator: torch.Generator | None) -> Tensor:
    n = x.shape[dim]
    if max_width < 0:
        raise ValueError(f"mask width must be >= 0, got {max_width}")
    if max_width == 0:
        return x
    width = torch.randint(0, min(max_width, n) + 1, (x.shape[0],), generator=generator)
    start = (torch.rand(x.shape[0], generator=generator) * (n - width + 1)).long()
    idx = torch.arange(n)
    masked = (idx[None, :] >= start[:, None]) & (idx[None, :] < (start + width)[:, None])  # (B, n)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = n
    return x.masked_fill(masked.reshape(shape).to(x.device), 0.0)


def time_mask(x: Tensor, max_frames: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Zero a random band of up to ``max_frames`` frames of each spectrogram (B, leads, freqs, frames)."""
    if x.dim() != 4:
        raise ValueError(f"time_mask expects (B, n_leads, n_freqs, n_frames), got {tuple(x.shape)}")
    return _band_mask(x, 3, max_frames, generator)


def frequency_mask(x: Tensor, max_freqs: int = 3, generator: torch.Generator | None = None) -> Tensor:
    """Zero a random band of up to ``max_freqs`` frequencies of each spectrogram (B, leads, freqs, frames)."""
    if x.dim() != 4:
        raise ValueError(f"frequency_mask expects (B, n_leads, n_freqs, n_frames), got {tuple(x.shape)}")
    return _band_mask(x, 2, max_freqs, generator)


def spectrogram_crop(
    x: Tensor,
    out_frames: int | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random span of frames of each spectrogram, resized along time to ``out_frames``."""
    if x.dim() != 4:
        raise ValueError(f"spectrogram_crop expects (B, n_leads, n_freqs, n_frames), got {tuple(x.shape)}")
    return _crop_resize_last_dim(x, out_frames or x.shape[-1], scale, generator)


@dataclass(frozen=True)
class MultiCropConfig:
    """Views of one window for self-distillation.

    Attributes
    ----------
    n_global, n_local : int
        Global and local crops (Phan et al., DINO: 2 and 8).
    global_scale, local_scale : (float, float)
        Fraction of the window each crop covers (DINO: 0.4-1 and 0.05-0.4; wider local crops here because
        a 2.5-s window is short).
    local_time_samples : int
        Samples of a local time-series crop after resizing (global crops keep the window's 250).
    local_frames : int
        Frames of a local spectrogram crop after resizing (global crops keep 21).
    lead_mask_p, noise_std : float
        Per-lead masking probability and Gaussian noise (mV) of time-series views.
    time_mask_max, freq_mask_max : int
        Widest time and frequency mask of spectrogram views.
    """

    n_global: int = 2
    n_local: int = 8
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)
    local_time_samples: int = 100
    local_frames: int = 9
    lead_mask_p: float = 0.2
    noise_std: float = 0.05
    time_mask_max: int = 4
    freq_mask_max: int = 3

    def __post_init__(self) -> None:
        if self.n_global < 1 or self.n_local < 0:
            raise ValueError(f"need n_global >= 1 and n_local >= 0, got {self.n_global} and {self.n_local}")
        _check_scale(self.global_scale)
        _check_scale(self.local_scale)


def _time_view(x: Tensor, out_len: int, scale: tuple[float, float], cfg: MultiCropConfig, g) -> Tensor:
    v = random_resized_crop(x, out_len, scale, g)
    v = lead_mask(v, cfg.lead_mask_p, g)
    return gaussian_noise(v, cfg.noise_std, g)


def multi_crop_time(
    x: Tensor, config: MultiCropConfig | None = None, generator: torch.Generator | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """Global and local augmented views of time-series windows (B, 12, n_times).

    Returns
    -------
    global_views : list of Tensor (B, 12, n_times)
    local_views : list of Tensor (B, 12, config.local_time_samples)
    """
    cfg = config or MultiCropConfig()
    n = x.shape[-1]
    global_views = [_time_view(x, n, cfg.global_scale, cfg, generator) for _ in range(cfg.n_global)]
    local_views = [
        _time_view(x, cfg.local_time_samples, cfg.local_scale, cfg, generator) for _ in range(cfg.n_local)
    ]
    return global_views, local_views


def _spec_view(x: Tensor, out_frames: int, scale: tuple[float, float], cfg: MultiCropConfig, g) -> Tensor:
    v = spectrogram_crop(x, out_frames, scale, g)
    # Masks scaled to the view's length, so a short local crop is not masked out entirely.
    v = time_mask(v, max(0, round(cfg.time_mask_max * out_frames / x.shape[-1])), g)
    return frequency_mask(v, cfg.freq_mask_max, g)


def multi_crop_spectrogram(
    x: Tensor, config: MultiCropConfig | None = None, generator: torch.Generator | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """Global and local augmented views of spectrograms (B, 12, n_freqs, n_frames).

    Returns
    -------
    global_views : list of Tensor (B, 12, n_freqs, n_frames)
    local_views : list of Tensor (B, 12, n_freqs, config.local_frames)
    """
    cfg = config or MultiCropConfig()
    n = x.shape[-1]
    global_views = [_spec_view(x, n, cfg.global_scale, cfg, generator) for _ in range(cfg.n_global)]
    local_views = [
        _spec_view(x, cfg.local_frames, cfg.local_scale, cfg, generator) for _ in range(cfg.n_local)
    ]
    return global_views, local_views
