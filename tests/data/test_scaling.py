"""Per-recording robust scaling."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.scaling import robust_scale


def test_median_zero_iqr_one_per_channel() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(5.0, 3.0, 10_000), rng.normal(-2e-5, 1e-6, 10_000)])
    y = robust_scale(x, clip=None)
    np.testing.assert_allclose(np.median(y, axis=1), 0.0, atol=1e-12)
    q25, q75 = np.percentile(y, [25, 75], axis=1)
    np.testing.assert_allclose(q75 - q25, 1.0, rtol=1e-12)


def test_clipping_and_nan_ignored() -> None:
    x = np.concatenate([np.linspace(-1, 1, 1000), [1e6, np.nan]])
    y = robust_scale(x, clip=20.0)
    assert np.nanmax(y) == 20.0
    assert np.isnan(y[-1])
    y_unclipped = robust_scale(x, clip=None)
    assert np.nanmax(y_unclipped) > 1e5


def test_axis_and_dtype() -> None:
    x = np.random.default_rng(1).standard_normal((500, 2)).astype(np.float32)
    y = robust_scale(x, axis=0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.median(y, axis=0), 0.0, atol=1e-6)


def test_flat_channel_is_named() -> None:
    x = np.stack([np.random.default_rng(2).standard_normal(100), np.zeros(100)])
    with pytest.raises(ValueError, match="ECG"):
        robust_scale(x, channel_names=["EEG", "ECG"])


def test_bad_clip() -> None:
    with pytest.raises(ValueError, match="clip"):
        robust_scale(np.arange(10.0), clip=-1.0)


def test_statistics_from_valid_samples_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000)
    polluted = x.copy()
    polluted[:4000] = 0.0  # a flat stretch
    valid = np.ones(x.size, bool)
    valid[:4000] = False
    expected = robust_scale(x[4000:], clip=None)
    out = robust_scale(polluted, clip=None, valid=valid)
    np.testing.assert_allclose(out[4000:], expected)
    assert not np.allclose(robust_scale(polluted, clip=None)[4000:], expected)
    with pytest.raises(ValueError, match="valid of shape"):
        robust_scale(x, valid=valid[:10])
    with pytest.raises(ValueError, match="no finite valid samples"):
        robust_scale(x, valid=np.zeros(x.size, bool))
