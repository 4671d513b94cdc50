"""Heart rate from beat times: RR outlier rejection and resampling onto a regular time base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdsleep.data.heart_rate import RRIntervals, heart_rate_signal, rr_intervals


def test_constant_rhythm_gives_constant_rate_inside_and_masks_outside() -> None:
    beats = np.arange(1.0, 11.0, 1.0)  # 60 bpm from 1 s to 10 s
    hr = heart_rate_signal(beats, sfreq=4.0, n_times=60)  # 0 … 14.75 s
    t = np.arange(60) / 4.0
    inside = (t > 1.0) & (t <= 10.0)
    assert np.array_equal(hr.mask, inside)
    assert np.allclose(hr.values[inside], 60.0)
    assert np.all(np.isnan(hr.values[~inside]))
    assert hr.sfreq == 4.0


def test_linear_interpolation_between_beats() -> None:
    # RR 1.0 s (60 bpm, placed at t=1) then 0.8 s (75 bpm, placed at t=1.8)
    beats = np.array([0.0, 1.0, 1.8])
    hr = heart_rate_signal(beats, sfreq=10.0, n_times=19, max_relative_change=0.5)
    t = np.arange(19) / 10.0
    # inside the second interval the rate runs linearly from 60 at t=1.0 to 75 at t=1.8
    second = (t > 1.0) & (t <= 1.8)
    assert np.allclose(hr.values[second], 60.0 + 15.0 * (t[second] - 1.0) / 0.8)
    # the first interval has no valid predecessor: its rate is held
    first = (t > 0.0) & (t <= 1.0)
    assert np.allclose(hr.values[first], 60.0)


def test_previous_interpolation_is_a_step_function() -> None:
    beats = np.array([0.0, 1.0, 1.8, 2.6])
    hr = heart_rate_signal(beats, sfreq=10.0, n_times=27, interpolation="previous", max_relative_change=0.5)
    t = np.arange(27) / 10.0
    expected = np.where(t <= 1.0, 60.0, 75.0)
    assert np.allclose(hr.values[hr.mask], expected[hr.mask])
    assert hr.mask.sum() == 26  # every sample in (0, 2.6]


def test_ectopic_short_long_pair_is_rejected() -> None:
    beats = np.array([0.0, 1.0, 2.0, 3.0, 3.5, 5.0, 6.0, 7.0, 8.0])  # premature beat at 3.5 s
    rr = rr_intervals(beats)
    assert np.allclose(rr.rr, [1, 1, 1, 0.5, 1.5, 1, 1, 1])
    assert rr.valid.tolist() == [True, True, True, False, False, True, True, True]
    hr = heart_rate_signal(rr, sfreq=2.0, n_times=18)
    t = np.arange(18) / 2.0
    assert not hr.mask[(t > 3.0) & (t <= 5.0)].any()
    assert hr.mask[(t > 5.0) & (t <= 8.0)].all()


def test_absolute_limits_reject_gaps_and_too_short_intervals() -> None:
    beats = np.array([0.0, 1.0, 2.0, 2.25, 3.25, 4.25, 7.0, 8.0, 9.0])
    rr = rr_intervals(beats, max_relative_change=10.0)  # only the absolute range acts
    assert rr.valid.tolist() == [True, True, False, True, True, False, True, True]
    hr = heart_rate_signal(rr, sfreq=4.0, n_times=40)
    t = np.arange(40) / 4.0
    assert not hr.mask[(t > 4.25) & (t <= 7.0)].any()  # a 2.75 s gap (masked detector stretch)


def test_hold_sfreq_repeats_low_rate_values() -> None:
    rng = np.random.default_rng(0)
    beats = np.cumsum(0.8 + 0.05 * rng.standard_normal(100))
    low = heart_rate_signal(beats, sfreq=4.0, n_times=300, fill_value=0.0)
    held = heart_rate_signal(beats, sfreq=200.0, n_times=15000, hold_sfreq=4.0, fill_value=0.0)
    assert held.values.shape == (15000,)
    assert np.array_equal(held.values, np.repeat(low.values, 50))
    assert np.array_equal(held.mask, np.repeat(low.mask, 50))
    assert np.all(held.values[~held.mask] == 0.0)
    with pytest.raises(ValueError, match="hold_sfreq"):
        heart_rate_signal(beats, sfreq=200.0, n_times=100, hold_sfreq=3.0)


def test_start_offsets_the_time_base() -> None:
    beats = np.arange(100.0, 111.0, 0.5)  # 120 bpm
    hr = heart_rate_signal(beats, sfreq=1.0, n_times=5, start=102.0)
    assert hr.mask.all() and np.allclose(hr.values, 120.0)


@pytest.mark.parametrize("beats", [np.array([]), np.array([3.0])])
def test_too_few_beats_mask_everything(beats: np.ndarray) -> None:
    hr = heart_rate_signal(beats, sfreq=10.0, n_times=50)
    assert hr.values.shape == (50,) and not hr.mask.any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beat_times": np.array([0.0, 2.0, 1.0])}, "strictly increasing"),
        ({"beat_times": np.array([0.0, np.nan])}, "finite"),
        ({"beat_times": np.zeros((2, 2))}, "1-D"),
        ({"sfreq": 0.0}, "sfreq"),
        ({"n_times": -1}, "n_times"),
        ({"interpolation": "cubic"}, "interpolation"),
    ],
)
def test_bad_input_raises(kwargs: dict, match: str) -> None:
    args = {"beat_times": np.arange(10.0), "sfreq": 4.0, "n_times": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        heart_rate_signal(**args)


def test_rr_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="min_rr"):
        rr_intervals(np.arange(5.0), min_rr=2.0, max_rr=1.0)


def test_real_record_heart_rate(shared_data: Path) -> None:
    from kdsleep.data.heartbeats import detect_heartbeats
    from kdsleep.data.readers.wfdb_io import read_annotated_ecg

    path = shared_data / "ecg-beats" / "mitdb" / "100"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"{path} not found")
    record = read_annotated_ecg(path)
    beats = detect_heartbeats(record.ecg, record.sfreq) / record.sfreq
    n_times = int(record.ecg.size / record.sfreq * 200)
    hr = heart_rate_signal(beats, sfreq=200.0, n_times=n_times, hold_sfreq=4.0)
    # 2273 annotated beats in 30:05 min: about 75.6 bpm; record 100 is sinus rhythm with few ectopics
    assert hr.mask.mean() > 0.97
    assert 73.0 < np.nanmean(hr.values) < 78.0
    assert np.nanmin(hr.values) >= 30.0 and np.nanmax(hr.values) <= 200.0
    assert isinstance(rr_intervals(beats), RRIntervals)


def test_heart_rate_channel_scaled_filled_and_masked():
    from kdsleep.data.heart_rate import heart_rate_channel

    # 60 bpm for 200 s, then 90 bpm for 200 s; the first and last seconds have no interval
    beats = np.concatenate([np.arange(1.0, 201.0, 1.0), 200.0 + np.arange(2, 300) * (2 / 3)])
    values, mask = heart_rate_channel(beats, 8.0, 8 * 420)
    assert values.dtype == np.float32 and values.shape == (8 * 420,)
    assert not mask[:8].any() and not mask[-8 * 10 :].any()
    assert mask[16 : 8 * 190].all()
    # the faster half lies above the slower one; the gaps sit at the median (0 after centring)
    assert values[8 * 50] < values[8 * 300] and values[8 * 300] > 0
    assert values[0] == 0.0 and values[-1] == 0.0
    assert np.isfinite(values).all()


def test_heart_rate_channel_without_beats_names_the_source():
    from kdsleep.data.heart_rate import heart_rate_channel

    with pytest.raises(ValueError, match="rec7: no heart rate"):
        heart_rate_channel(np.array([1.0]), 8.0, 80, source="rec7")
