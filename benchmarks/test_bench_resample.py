"""Resampling an 8-hour single-channel night: the numba polyphase kernel against scipy's resample_poly.

Run with ``python -m pytest benchmarks/test_bench_resample.py --benchmark-only``; each group pairs the two
implementations on the same input, so pytest-benchmark's table shows the ratio of their medians.
Set ``KDSLEEP_BENCH_ROUNDS`` for more rounds (default 3, kept short for CI).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.signal import resample_poly

from kdsleep.data import resample
from kdsleep.data.resample import resample_ratio

ROUNDS = int(os.environ.get("KDSLEEP_BENCH_ROUNDS", "3"))
HOURS = 8
SFREQ_OUT = 200


@pytest.fixture(scope="module")
def night() -> dict[tuple[int, str], np.ndarray]:
    rng = np.random.default_rng(0)
    cache = {}
    for sfreq_in in (256,):
        x = rng.standard_normal(HOURS * 3600 * sfreq_in)
        cache[(sfreq_in, "float64")] = x
        cache[(sfreq_in, "float32")] = x.astype(np.float32)
    # compile outside the timed region
    resample(np.zeros(4096), 256, SFREQ_OUT)
    resample(np.zeros(4096, np.float32), 256, SFREQ_OUT)
    return cache


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl", ["kdsleep", "scipy"])
def test_resample_8h_night(benchmark, night, impl: str, dtype: str) -> None:
    sfreq_in = 256
    x = night[(sfreq_in, dtype)]
    up, down = resample_ratio(sfreq_in, SFREQ_OUT)
    benchmark.group = f"resample 8 h {sfreq_in}->{SFREQ_OUT} Hz {dtype}"
    if impl == "kdsleep":
        y = benchmark.pedantic(resample, args=(x, sfreq_in, SFREQ_OUT), rounds=ROUNDS, warmup_rounds=1)
    else:
        y = benchmark.pedantic(resample_poly, args=(x, up, down), rounds=ROUNDS, warmup_rounds=1)
    assert y.shape == (HOURS * 3600 * SFREQ_OUT,)
