"""Per-recording robust scaling (median / inter-quartile range), as in U-Time."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

__all__ = ["robust_scale"]

logger = logging.getLogger(__name__)


def robust_scale(
    x: np.ndarray,
    axis: int = -1,
    clip: float | None = 20.0,
    channel_names: list[str] | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Centre each channel on its median and divide by its inter-quartile range.

    Statistics are taken over the whole recording (all samples along ``axis``), ignoring NaNs and the samples
    outside ``valid``, so one recording's amplitude scale (electrode impedance, amplifier gain) does not leak
    into the model, and neither does a stretch of artefact (a flat or saturated electrode).

    Parameters
    ----------
    x : array_like of float
        Signals, time along ``axis``; every other axis indexes channels.
    axis : int, default -1
        Time axis.
    clip : float or None, default 20.0
        After scaling, values beyond ``±clip`` (in IQR units) are clipped; U-Time clips at 20 times the IQR.
        ``None`` disables clipping.
    channel_names : list of str, optional
        Names used in error messages, one per channel of a 2-D ``x``.
    valid : array_like of bool, optional
        Samples the statistics are taken from (broadcast against ``x``); default all. Every sample is
        scaled.

    Returns
    -------
    ndarray
        Scaled signals, same shape; float32 input stays float32, anything else becomes float64.

    Raises
    ------
    ValueError
        When a channel is flat or all NaN (its IQR is zero or undefined).
    """
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    if x.ndim == 0:
        raise ValueError("robust_scale: x must have at least one dimension (time)")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"robust_scale: axis {axis} is out of range for an array with {x.ndim} dimensions")
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"robust_scale: clip must be a positive number of IQRs or None, got {clip!r}")
    x64 = x.astype(np.float64, copy=False)
    if valid is None:
        stats_from = x64
    else:
        try:
            mask = np.broadcast_to(np.asarray(valid, dtype=bool), x64.shape)
        except ValueError:
            raise ValueError(
                f"robust_scale: valid of shape {np.shape(valid)} does not match x of shape {x.shape}"
            ) from None
        stats_from = np.where(mask, x64, np.nan)
    with warnings.catch_warnings():
        # a channel without any finite valid sample is reported below, by name
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, median, q75 = np.nanpercentile(stats_from, [25, 50, 75], axis=axis, keepdims=True)
    iqr = q75 - q25
    bad = ~(iqr > 0)
    if bad.any():
        flat: list[Any] = np.argwhere(np.squeeze(bad, axis=axis)).tolist()
        if channel_names is not None and x.ndim == 2:
            flat = [channel_names[i[0]] for i in flat]
        raise ValueError(
            f"robust_scale: channel(s) {flat} are flat or have no finite valid samples (inter-quartile range 0); "
            "they cannot be scaled"
        )
    scaled = (x64 - median) / iqr
    if clip is not None:
        n_clipped = int(np.count_nonzero(np.abs(scaled) > clip))
        if n_clipped:
            logger.debug("robust_scale: clipped %d samples beyond %g IQR", n_clipped, clip)
        np.clip(scaled, -clip, clip, out=scaled)
    return scaled.astype(dtype, copy=False)
