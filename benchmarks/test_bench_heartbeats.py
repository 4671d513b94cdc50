"""Heartbeat detection speed: kdsleep's numba detector against sleepecg's (C backend) on the same input.

Two groups, each pairing both detectors so that pytest-benchmark's table shows them side by side:

* ``heartbeats mitdb 100 (30 min, 360 Hz)``: one MIT-BIH record, MLII lead;
* ``heartbeats 8 h (mitdb 100 tiled, 360 Hz)``: the same record repeated to the length of a night.

Run with ``python -m pytest benchmarks/test_bench_heartbeats.py --benchmark-only``. sleepecg comes
with the test extra (``pip install '.[test]'``); its cases are skipped when it is missing. Set
``KDSLEEP_BENCH_ROUNDS`` for more rounds (default 5) and ``KDSLEEP_SHARED_DATA`` for the data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kdsleep.data.heartbeats import detect_heartbeats
from kdsleep.data.readers.wfdb_io import read_annotated_ecg

ROUNDS = int(os.environ.get("KDSLEEP_BENCH_ROUNDS", "5"))
SHARED_DATA = Path(
    os.environ.get("KDSLEEP_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
NIGHT_HOURS = 8


@pytest.fixture(scope="module")
def record():
    path = SHARED_DATA / "ecg-beats" / "mitdb" / "100"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH record not found at {path} (set KDSLEEP_SHARED_DATA)")
    rec = read_annotated_ecg(path)
    ecg = np.ascontiguousarray(rec.ecg)
    # compile the numba kernels outside the timed region
    detect_heartbeats(ecg[:20000], rec.sfreq)
    return rec, ecg


def _detector(impl: str):
    if impl == "kdsleep":
        return detect_heartbeats
    sleepecg = pytest.importorskip(
        "sleepecg", reason="sleepecg is a test and benchmark dependency (pip install '.[test]')"
    )
    return lambda ecg, sfreq: sleepecg.detect_heartbeats(ecg, sfreq)


@pytest.mark.parametrize("impl", ["kdsleep", "sleepecg"])
def test_detect_30min_record(benchmark, record, impl: str) -> None:
    rec, ecg = record
    detect = _detector(impl)
    benchmark.group = "heartbeats mitdb 100 (30 min, 360 Hz)"
    beats = benchmark.pedantic(detect, args=(ecg, rec.sfreq), rounds=ROUNDS, warmup_rounds=1)
    assert abs(len(beats) - len(rec.beats)) <= 0.01 * len(rec.beats)


@pytest.mark.parametrize("impl", ["kdsleep", "sleepecg"])
def test_detect_8h_night(benchmark, record, impl: str) -> None:
    rec, ecg = record
    repeats = int(np.ceil(NIGHT_HOURS * 3600 * rec.sfreq / ecg.size))
    night = np.ascontiguousarray(np.tile(ecg, repeats))
    detect = _detector(impl)
    benchmark.group = f"heartbeats {NIGHT_HOURS} h (mitdb 100 tiled, 360 Hz)"
    beats = benchmark.pedantic(detect, args=(night, rec.sfreq), rounds=max(1, ROUNDS // 2), warmup_rounds=1)
    assert abs(len(beats) - repeats * len(rec.beats)) <= 0.01 * repeats * len(rec.beats)
