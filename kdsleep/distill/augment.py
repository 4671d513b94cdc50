"""Training-time augmentation of the student's input.

:func:`rate_stretch` plays each window of an ECG waveform faster or slower. The heart rate of a recording
carries its subject's resting rate as much as the sleep stage; stretching the beats by a random factor per
window makes that rate uninformative, so a waveform-only student has to stage from how the rhythm changes
(variability, surges, breathing), as a per-night normalised heart-rate channel does by construction.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rate_stretch"]


def rate_stretch(
    x: torch.Tensor,
    max_stretch: float,
    samples_per_epoch: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Resample each window at a random rate, every epoch about its own centre.

    Parameters
    ----------
    x : Tensor, shape (batch, channels, epochs * samples_per_epoch)
        Windows of consecutive epochs laid end to end (all channels of a window share the factor).
    max_stretch : float
        ``a`` in ``[0, 1)``: the rate factor ``s`` of each window is ``exp(u)`` with ``u`` uniform in
        ``[-log(1 + a), log(1 + a)]``.
    samples_per_epoch : int
        Samples of one scored epoch.
    generator : torch.Generator, optional
        Source of the factors (default: torch's global generator, so a seeded stage draws the same factors).

    Returns
    -------
    Tensor
        Same shape and dtype: sample ``t`` of epoch ``e`` is ``x`` at ``c_e + (t - c_e) * s`` (``c_e`` the
        epoch's centre), linearly interpolated and clamped to the window. With ``s > 1`` the beats come
        faster and an epoch reads a little of its neighbours' edges; with ``s < 1`` slower, and the outer
        ``(1 - s) / 2`` of each epoch is left out. ``max_stretch = 0`` returns ``x`` unchanged.
    """
    if not 0 <= max_stretch < 1:
        raise ValueError(f"max_stretch must be in [0, 1), got {max_stretch!r}")
    if x.ndim != 3 or x.shape[-1] % samples_per_epoch:
        raise ValueError(
            f"expected windows of shape (batch, channels, epochs * {samples_per_epoch}), got {tuple(x.shape)}"
        )
    if max_stretch == 0:
        return x
    batch, channels, length = x.shape
    bound = math.log1p(max_stretch)
    u = torch.rand(batch, 1, generator=generator, device=generator.device if generator else "cpu")
    factor = torch.exp((2 * u - 1) * bound).to(x.device)
    t = torch.arange(length, device=x.device, dtype=torch.float64)
    centre = (
        torch.div(t, samples_per_epoch, rounding_mode="floor") * samples_per_epoch
        + (samples_per_epoch - 1) / 2
    )
    pos = (centre + (t - centre) * factor.double()).clamp_(0, length - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_(max=length - 1)
    w = (pos - lo).to(x.dtype).unsqueeze(1)
    lo = lo.unsqueeze(1).expand(batch, channels, length)
    hi = hi.unsqueeze(1).expand(batch, channels, length)
    return torch.lerp(x.gather(2, lo), x.gather(2, hi), w)
