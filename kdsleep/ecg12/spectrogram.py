"""Per-lead magnitude spectrograms of 12-lead ECG windows, computed on the fly in torch.

Phan et al. (arXiv 2210.06297) feed a 2-D encoder with the short-time Fourier transform of each lead of a
2.5-s window at 100 Hz (12 x 250 samples): Hann window of 25 samples, 12 samples of overlap, magnitude,
which gives 13 frequencies x 21 frames per lead. The frame count is that of ``scipy.signal.stft`` with its
defaults: the signal is extended by half a window of zeros at each end, then zero-padded to a whole number
of hops, and the transform is scaled by the window's sum. :func:`spectrogram` reproduces those numbers
exactly, on the device and in the dtype of its input, for any batch shape.
"""

from __future__ import annotations

import torch
from torch import nn

#: Window length in samples (Phan et al.: 25 at 100 Hz).
N_FFT = 25
#: Overlap between consecutive windows in samples (Phan et al.: 12).
N_OVERLAP = 12
#: Sampling frequency of the windows (Phan et al.: 100 Hz).
SFREQ = 100.0
#: Samples per window (2.5 s at 100 Hz).
WINDOW_SAMPLES = 250


def _padding(n_times: int, n_fft: int, hop: int) -> tuple[int, int]:
    """Zeros added before and after the signal (scipy's ``boundary='zeros', padded=True``)."""
    half = n_fft // 2
    extended = n_times + 2 * half
    n_frames = max(1, -(-(extended - n_fft) // hop) + 1)  # ceil division, at least one frame
    return half, n_fft + (n_frames - 1) * hop - extended + half


def spectrogram_shape(n_times: int, n_fft: int = N_FFT, n_overlap: int = N_OVERLAP) -> tuple[int, int]:
    """(n_freqs, n_frames) of :func:`spectrogram` for windows of ``n_times`` samples (13, 21 for 250)."""
    _check_params(n_fft, n_overlap)
    hop = n_fft - n_overlap
    before, after = _padding(n_times, n_fft, hop)
    return n_fft // 2 + 1, (n_times + before + after - n_fft) // hop + 1


def _check_params(n_fft: int, n_overlap: int) -> None:
    if n_fft < 2:
        raise ValueError(f"n_fft must be at least 2, got {n_fft}")
    if not 0 <= n_overlap < n_fft:
        raise ValueError(f"n_overlap must be in [0, n_fft={n_fft}), got {n_overlap}")


def spectrogram(x: torch.Tensor, n_fft: int = N_FFT, n_overlap: int = N_OVERLAP) -> torch.Tensor:
    """Magnitude STFT of each lead, on the device and in the dtype of ``x``.

    Parameters
    ----------
    x : Tensor, shape (..., n_leads, n_times)
        Real signals, e.g. (batch, 12, 250) for 2.5-s windows at 100 Hz. Any leading shape.
    n_fft : int
        Length of the (periodic) Hann window and of the FFT (25 in Phan et al.).
    n_overlap : int
        Samples shared by consecutive windows (12 in Phan et al.); the hop is ``n_fft - n_overlap``.

    Returns
    -------
    Tensor, shape (..., n_leads, n_fft // 2 + 1, n_frames)
        ``|STFT| / sum(window)``, e.g. (batch, 12, 13, 21); equal to ``abs(scipy.signal.stft(x, nperseg=n_fft,
        noverlap=n_overlap)[2])``. Differentiable.
    """
    _check_params(n_fft, n_overlap)
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., n_times) with n_times >= 1, got {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError("x must be real")
    if not x.is_floating_point():
        x = x.float()
    hop = n_fft - n_overlap
    leading = x.shape[:-1]
    n_times = x.shape[-1]
    before, after = _padding(n_times, n_fft, hop)
    flat = torch.nn.functional.pad(x.reshape(-1, n_times), (before, after))
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    stft = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=window,
        center=False,
        onesided=True,
        return_complex=True,
    )
    magnitude = stft.abs() / window.sum()
    return magnitude.reshape(*leading, *magnitude.shape[-2:])


class Spectrogram(nn.Module):
    """Module form of :func:`spectrogram` (no parameters), for use at the input of a 2-D encoder.

    Parameters
    ----------
    n_fft : int
        Hann window length (25 in Phan et al.).
    n_overlap : int
        Overlap of consecutive windows (12 in Phan et al.).
    """

    def __init__(self, n_fft: int = N_FFT, n_overlap: int = N_OVERLAP) -> None:
        super().__init__()
        _check_params(n_fft, n_overlap)
        self.n_fft = n_fft
        self.n_overlap = n_overlap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spectrogram(x, self.n_fft, self.n_overlap)

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, n_overlap={self.n_overlap}"


def random_windows(
    signal: torch.Tensor,
    n_windows: int,
    n_times: int = WINDOW_SAMPLES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random windows of consecutive samples from one record (Phan et al.: 2.5 s at 100 Hz, 12 x 250).

    Parameters
    ----------
    signal : Tensor, shape (n_leads, n_samples)
    n_windows : int
    n_times : int
        Samples per window (250).
    generator : torch.Generator or None
        Source of the random start samples (seed it for reproducible windows).

    Returns
    -------
    Tensor, shape (n_windows, n_leads, n_times)
        Records shorter than ``n_times`` are rejected rather than padded.
    """
    if signal.ndim != 2:
        raise ValueError(f"signal must have shape (n_leads, n_samples), got {tuple(signal.shape)}")
    n_samples = signal.shape[-1]
    if n_samples < n_times:
        raise ValueError(f"the record has {n_samples} samples, fewer than a window of {n_times}")
    starts = torch.randint(0, n_samples - n_times + 1, (n_windows,), generator=generator)
    index = starts[:, None] + torch.arange(n_times)[None, :]
    return signal[:, index.to(signal.device)].permute(1, 0, 2).contiguous()


def consecutive_windows(
    signal: torch.Tensor, n_times: int = WINDOW_SAMPLES, stride: int | None = None
) -> torch.Tensor:
    """Windows of ``n_times`` samples every ``stride`` samples (default: no overlap) from one record.

    Used at inference to cover a whole record; trailing samples that do not fill a window are dropped.

    Returns
    -------
    Tensor, shape (n_windows, n_leads, n_times)
    """
    if signal.ndim != 2:
        raise ValueError(f"signal must have shape (n_leads, n_samples), got {tuple(signal.shape)}")
    stride = n_times if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    if signal.shape[-1] < n_times:
        raise ValueError(f"the record has {signal.shape[-1]} samples, fewer than a window of {n_times}")
    return signal.unfold(-1, n_times, stride).permute(1, 0, 2).contiguous()
