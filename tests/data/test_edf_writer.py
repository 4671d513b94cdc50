"""The EDF / EDF+ / BDF writer: mne must read back what it writes."""

from __future__ import annotations

import os
from datetime import datetime

import mne
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdsleep.data.edf_writer import format_tal, write_edf


def _sines(seconds: int):
    eeg = 40.0 * np.sin(2 * np.pi * 10 * np.arange(256 * seconds) / 256)
    ecg = 900.0 * np.sin(2 * np.pi * 1.1 * np.arange(128 * seconds) / 128)
    return eeg, ecg


def test_edf_plus_round_trip_through_mne(tmp_path):
    eeg, ecg = _sines(65)
    start = datetime(2011, 5, 6, 23, 1, 2)
    ann = [(0.0, 30.0, "Sleep stage W"), (30.0, 30.0, "Sleep stage N2"), (33.43, 0.0, "Lights off")]
    path = write_edf(
        tmp_path / "n.edf", [eeg, ecg], [256, 128], ["EEG C3-A2", "ECG I"], ["uV", "mV"], start, ann
    )
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == ["EEG C3-A2", "ECG I"]
    assert raw.info["meas_date"].replace(tzinfo=None) == start
    data = raw.get_data(picks=["EEG C3-A2"])[0]
    # 16-bit quantisation of a +-40 uV range: error below one step (80/65535 uV)
    assert np.abs(data[: eeg.size] * 1e6 - eeg).max() < 80 / 65535 + 1e-9
    annotations = mne.read_annotations(path)
    assert list(annotations.description) == ["Sleep stage W", "Sleep stage N2", "Lights off"]
    np.testing.assert_allclose(annotations.onset, [0, 30, 33.43])
    np.testing.assert_allclose(annotations.duration, [30, 30, 0])


def test_units_are_written_verbatim(tmp_path):
    eeg, _ = _sines(4)
    path = write_edf(tmp_path / "u.edf", [eeg], 256, ["EEG"], "UV")
    header = path.read_bytes()[: 256 * 2]
    assert header[256 + 16 + 80 : 256 + 16 + 80 + 8] == b"UV      "
    assert header[0:8] == b"0       " and header[192:197] != b"EDF+C"  # plain EDF without annotations


def test_annotation_only_file_like_hmc_scoring(tmp_path):
    ann = [(30.0 * i, 30.0, "Sleep stage N2") for i in range(1000)]
    path = write_edf(tmp_path / "SN999_sleepscoring.edf", [], [], [], [], annotations=ann)
    annotations = mne.read_annotations(path)
    assert len(annotations) == 1000 and annotations.onset[-1] == 29970.0


def test_many_annotations_spread_over_records(tmp_path):
    eeg, _ = _sines(20)
    ann = [(0.01 * i, None, f"event {i}") for i in range(500)]
    path = write_edf(tmp_path / "m.edf", [eeg], 256, ["EEG"], "uV", annotations=ann)
    annotations = mne.read_annotations(path)
    assert len(annotations) == 500 and annotations.description[499] == "event 499"


def test_bdf_round_trip(tmp_path):
    eeg, _ = _sines(8)
    path = write_edf(
        tmp_path / "b.bdf", [eeg], 256, ["EEG Fpz-Cz"], "uV", bdf=True, annotations=[(1, 2, "x")]
    )
    raw = mne.io.read_raw_bdf(path, preload=True, verbose="error")
    assert np.abs(raw.get_data()[0] * 1e6 - eeg).max() < 80 / 2**24 * 2
    assert list(raw.annotations.description) == ["x"]


def test_partial_last_record_is_padded_and_flat_channel_allowed(tmp_path):
    flat = np.full(256 * 3 + 100, 5.0)
    path = write_edf(tmp_path / "f.edf", [flat], 256, ["EEG"], "uV")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.n_times == 256 * 4
    np.testing.assert_allclose(raw.get_data()[0] * 1e6, 5.0, atol=1e-3)


def test_bad_input_errors_and_no_half_written_file(tmp_path):
    eeg, _ = _sines(2)
    target = tmp_path / "bad.edf"
    with pytest.raises(ValueError, match="NaN"):
        write_edf(target, [np.r_[eeg, np.nan]], 256, ["EEG"], "uV")
    with pytest.raises(ValueError, match="at most 16 characters"):
        write_edf(target, [eeg], 256, ["a label that is far too long"], "uV")
    with pytest.raises(ValueError, match="different durations"):
        write_edf(target, [eeg, eeg[:100]], 256, ["A", "B"], "uV")
    with pytest.raises(ValueError, match="1985-2084"):
        write_edf(target, [eeg], 256, ["A"], "uV", start=datetime(1970, 1, 1))
    assert os.listdir(tmp_path) == []


def test_tal_encoding():
    assert format_tal(0, None, []) == b"+0\x14\x14\x00"
    assert format_tal(33.43, 0, ["Lights off"]) == b"+33.43\x150\x14Lights off\x14\x00"
    assert format_tal(1.5, 30, ["a", "b"]) == b"+1.5\x1530\x14a\x14b\x14\x00"


@settings(max_examples=20, deadline=None)
@given(
    rates=st.lists(st.sampled_from([50.0, 100.0, 128.0, 200.0, 250.0, 256.0]), min_size=1, max_size=3),
    seconds=st.integers(1, 4),
    scale=st.floats(1e-2, 1e4),
    offset=st.floats(-1e3, 1e3),
    texts=st.lists(
        st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), min_size=1, max_size=12), max_size=6
    ),
    bdf=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(tmp_path_factory, rates, seconds, scale, offset, texts, bdf, seed):
    rng = np.random.default_rng(seed)
    signals = [offset + scale * rng.standard_normal(int(f * seconds)) for f in rates]
    names = [f"CH{i}" for i in range(len(rates))]
    ann = [(i + round(float(rng.uniform(0, 0.9)), 3), float(i), t) for i, t in enumerate(texts)]
    path = tmp_path_factory.mktemp("rt") / ("x.bdf" if bdf else "x.edf")
    write_edf(path, signals, rates, names, "uV", annotations=ann or None, bdf=bdf)
    reader = mne.io.read_raw_bdf if bdf else mne.io.read_raw_edf
    for name, x, f in zip(names, signals, rates, strict=True):
        raw = reader(path, include=[name], preload=True, verbose="error")
        assert raw.info["sfreq"] == f
        y = raw.get_data()[0] * 1e6
        span = x.max() - x.min()
        step = span / (2**24 - 1 if bdf else 65535)
        # quantisation (half a step) plus the outward rounding of the 8-character range fields
        assert np.abs(y[: x.size] - x).max() <= step + 1e-6 * max(abs(x).max(), 1.0) + 1e-9 * span
    if ann:
        got = mne.read_annotations(path)
        assert list(got.description) == [a[2] for a in ann]  # UTF-8 text, spaces kept
        np.testing.assert_allclose(got.onset, [a[0] for a in ann], atol=1e-6)
        np.testing.assert_allclose(got.duration, [a[1] for a in ann], atol=1e-6)
