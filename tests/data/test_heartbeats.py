"""Heartbeat detector: synthetic robustness and accuracy floors on real annotated ECG.

The floors are the values measured with ``python scripts/evaluate_heartbeats.py`` (the table in
docs/results/heartbeat_detector.md) minus a small margin: changes to the detector must not make them
worse. The fast tests score a subset of records; the full table is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from kdsleep.data.filters import sosfiltfilt
from kdsleep.data.heartbeat_kernels import qrs_bandpass, slope_feature
from kdsleep.data.heartbeats import MIN_SFREQ, detect_heartbeats, detect_heartbeats_with_quality
from kdsleep.data.readers.wfdb_io import read_annotated_ecg
from kdsleep.evaluation.beats import match_beats

# (sensitivity %, positive predictive value %) measured on MLII, 150 ms tolerance
MITDB_MEASURED = {
    "100": (100.00, 100.00),
    "101": (99.95, 99.79),
    "103": (100.00, 100.00),
    "105": (99.77, 98.54),
    "106": (99.95, 99.90),
    "108": (97.22, 95.43),
    "114": (99.95, 100.00),
    "118": (100.00, 99.96),
    "119": (100.00, 99.95),
    "200": (99.88, 99.92),
    "201": (99.54, 100.00),
    "203": (98.79, 99.43),
    "207": (100.00, 99.52),
    "208": (99.63, 99.90),
    "210": (99.58, 99.92),
    "213": (99.97, 100.00),
    "221": (99.92, 100.00),
    "228": (99.95, 99.18),
    "231": (100.00, 100.00),
    "232": (100.00, 99.94),
}
MARGIN = 0.3  # percentage points
FAST_RECORDS = ("100", "108", "114", "203", "232")
# nstdb 118 with electrode-motion noise: measured (Se %, PPV %)
NSTDB_MEASURED = {
    "118e24": (100.00, 99.91),
    "118e18": (100.00, 99.39),
    "118e12": (100.00, 93.51),
    "118e06": (97.41, 83.30),
    "118e00": (92.71, 75.81),
    "118e_6": (86.26, 70.20),
}


def synthetic_ecg(
    sfreq: float, duration: float = 60.0, heart_rate: float = 70.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A clean single-lead ECG (sum of Gaussian P, Q, R, S, T waves, in mV) and its R-peak samples."""
    rng = np.random.default_rng(seed)
    rr_mean = 60.0 / heart_rate
    times = [0.6]
    while times[-1] < duration - 1.0:
        times.append(times[-1] + rr_mean * (1 + 0.05 * rng.standard_normal()))
    r_times = np.array(times[:-1])
    t = np.arange(int(duration * sfreq)) / sfreq
    ecg = np.zeros_like(t)
    waves = [
        (-0.2, 0.15, 0.025),
        (-0.03, -0.15, 0.008),
        (0.0, 1.2, 0.01),
        (0.03, -0.3, 0.01),
        (0.3, 0.35, 0.06),
    ]
    for r in r_times:
        lo, hi = np.searchsorted(t, [r - 0.4, r + 0.6])
        seg = t[lo:hi] - r
        for offset, amplitude, width in waves:
            ecg[lo:hi] += amplitude * np.exp(-0.5 * ((seg - offset) / width) ** 2)
    ecg += 0.01 * rng.standard_normal(t.size)
    return ecg, np.round(r_times * sfreq).astype(np.int64)


def _se_ppv(detected: np.ndarray, reference: np.ndarray, sfreq: float, exclude=None) -> tuple[float, float]:
    score = match_beats(detected, reference, sfreq, exclude=exclude)
    return 100 * score.sensitivity, 100 * score.positive_predictive_value


def test_kernels_match_numpy_and_scipy_references() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).cumsum()
    sos = signal.butter(2, [5.0, 20.0], btype="bandpass", fs=180.0, output="sos")
    # the detector's band-pass is the package's zero-phase filter (kdsleep.data.filters), not a copy of it
    assert np.array_equal(qrs_bandpass(x, 180.0, 5.0, 20.0), sosfiltfilt(sos, x))
    assert np.allclose(qrs_bandpass(x, 180.0, 5.0, 20.0), signal.sosfiltfilt(sos, x), atol=1e-10)
    # mean square of the central-difference slope over a centred window that shrinks at the edges
    for n, width in [(3000, 27), (3000, 28), (20, 27), (2, 5)]:
        f = x[:n]
        squared = (np.gradient(f) * 180.0) ** 2
        half_left, half_right = width // 2, width - width // 2 - 1
        reference = np.array([squared[max(0, i - half_left) : i + half_right + 1].mean() for i in range(n)])
        assert np.allclose(slope_feature(f, 180.0, width), reference, rtol=1e-9, atol=1e-9)


def test_coarse_quantisation_with_flat_baseline_is_not_clipping() -> None:
    # a coarsely quantised recording (50 uV steps) whose isoelectric line is constant for long runs: only
    # runs on the record's lowest or highest value count as clipping
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, seed=6)
    coarse = np.round(ecg * 20) / 20
    assert np.max(np.diff(np.flatnonzero(np.diff(coarse) != 0))) > 0.1 * sfreq  # long flat runs exist
    result = detect_heartbeats_with_quality(coarse, sfreq)
    assert result.masked_intervals.shape == (0, 2)
    assert _se_ppv(result.beats, truth, sfreq) == (100.0, 100.0)


# --------------------------------------------------------------------------------------------------------
# synthetic robustness
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sfreq", [100.0, 128.0, 250.0, 360.0, 500.0, 1000.0])
def test_synthetic_ecg_at_any_sampling_rate(sfreq: float) -> None:
    ecg, truth = synthetic_ecg(sfreq)
    beats = detect_heartbeats(ecg, sfreq)
    assert beats.dtype == np.int64 and np.all(np.diff(beats) > 0)
    assert _se_ppv(beats, truth, sfreq) == (100.0, 100.0)
    # the refinement lands on the R peak, not merely within the 150 ms tolerance
    nearest = np.abs(beats[:, None] - truth[None, :]).min(axis=1)
    assert nearest.max() <= max(2, int(0.01 * sfreq))


def test_inverted_polarity_finds_the_same_beats() -> None:
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, seed=1)
    beats = detect_heartbeats(-ecg, sfreq)
    assert _se_ppv(beats, truth, sfreq) == (100.0, 100.0)
    assert np.abs(beats - truth).max() <= 3


def test_baseline_wander_and_mains_do_not_matter() -> None:
    sfreq = 360.0
    ecg, truth = synthetic_ecg(sfreq, duration=120.0, seed=2)
    t = np.arange(ecg.size) / sfreq
    disturbed = ecg + 2.0 * np.sin(2 * np.pi * 0.15 * t) + 0.02 * t + 0.2 * np.sin(2 * np.pi * 50 * t) + 40.0
    assert _se_ppv(detect_heartbeats(disturbed, sfreq), truth, sfreq) == (100.0, 100.0)


@pytest.mark.parametrize("kind", ["constant", "nan", "saturated", "artefact"])
def test_unusable_stretch_is_masked_and_reported(kind: str) -> None:
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, duration=120.0, seed=3)
    start, stop = int(40 * sfreq), int(60 * sfreq)
    bad = ecg.copy()
    if kind == "constant":
        bad[start:stop] = 0.123
    elif kind == "nan":
        bad[start:stop] = np.nan
    elif kind == "saturated":
        bad[start:stop] = np.clip(50 * bad[start:stop], -5.0, 5.0)
    else:
        bad[start:stop] += 200 * np.random.default_rng(0).standard_normal(stop - start)
    result = detect_heartbeats_with_quality(bad, sfreq)
    # reported: one masked stretch covering the damage (window granularity 2 s)
    assert result.masked_intervals.shape == (1, 2)
    m_start, m_stop = result.masked_intervals[0]
    assert m_start <= start and m_stop >= stop
    assert m_stop - m_start <= (stop - start) + 4 * sfreq
    assert 20.0 <= result.masked_seconds <= 24.0
    # masked: no beats inside, and everything outside is still found
    beats = result.beats
    assert not np.any((beats >= m_start) & (beats < m_stop))
    outside = truth[(truth < m_start - 0.2 * sfreq) | (truth >= m_stop + 0.2 * sfreq)]
    se, ppv = _se_ppv(
        beats, outside, sfreq, exclude=np.array([[m_start - 0.2 * sfreq, m_stop + 0.2 * sfreq]])
    )
    assert se == 100.0 and ppv == 100.0


@pytest.mark.parametrize("noise", ["white", "mains"])
@pytest.mark.parametrize("level", [0.02, 0.3])
def test_electrodes_off_noise_is_masked_not_beats(noise: str, level: float) -> None:
    # 60 % of the recording is noise without ECG (electrodes off): masked, no beats there
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, duration=300.0, seed=5)
    cut = int(0.6 * ecg.size)
    rng = np.random.default_rng(1)
    ecg[:cut] = level * rng.standard_normal(cut)
    if noise == "mains":
        ecg[:cut] += 0.5 * np.sin(2 * np.pi * 50 * np.arange(cut) / sfreq)
    result = detect_heartbeats_with_quality(ecg, sfreq)
    assert result.masked_seconds >= 150.0
    assert np.sum(result.beats < cut) <= 3
    later = truth[truth > cut + sfreq]
    assert _se_ppv(result.beats, later, sfreq, exclude=np.array([[0, cut + sfreq]])) == (100.0, 100.0)


@pytest.mark.parametrize("gain", [0.1, 10.0])
def test_sudden_gain_change_is_followed(gain: float) -> None:
    # an electrode or amplifier change halfway: the levels adapt within a few beats
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, duration=600.0, seed=7)
    ecg[int(300 * sfreq) :] *= gain
    score = match_beats(detect_heartbeats(ecg, sfreq), truth, sfreq)
    assert score.false_positives == 0
    assert score.false_negatives <= 8  # measured: 5 for the tenfold drop, 0 for the rise


def test_mostly_lead_off_night_keeps_its_real_ecg() -> None:
    # electrodes off (low noise, not exactly constant) for 60 % of the recording: the reference amplitude
    # must still come from the ECG, so that the ECG is not taken for an artefact
    sfreq = 250.0
    ecg, truth = synthetic_ecg(sfreq, duration=300.0, seed=5)
    cut = int(0.6 * ecg.size)
    ecg[:cut] = 0.005 * np.random.default_rng(1).standard_normal(cut)
    result = detect_heartbeats_with_quality(ecg, sfreq)
    assert result.masked_intervals.shape == (1, 2)
    assert result.masked_intervals[0, 0] == 0 and abs(result.masked_intervals[0, 1] - cut) <= 2 * sfreq
    later = truth[truth > cut + sfreq]
    se, ppv = _se_ppv(result.beats, later, sfreq, exclude=np.array([[0, cut + sfreq]]))
    assert se == 100.0 and ppv == 100.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros(600 * 250),
        lambda: np.full(600 * 250, 7.0),
        lambda: np.full(600 * 250, np.nan),
        lambda: np.random.default_rng(0).standard_normal(600 * 250),
        lambda: np.zeros(100),
        lambda: np.zeros(0),
        lambda: np.array([1.0]),
        lambda: np.r_[np.zeros(250 * 30), 1e9, np.zeros(250 * 30)],
    ],
    ids=["zeros", "constant", "all-nan", "white-noise", "short", "empty", "one-sample", "single-spike"],
)
def test_degenerate_inputs_return_promptly(make) -> None:
    ecg = make()
    result = detect_heartbeats_with_quality(ecg, 250.0)
    assert result.beats.dtype == np.int64
    assert np.all(np.diff(result.beats) > 0)
    assert np.all((result.beats >= 0) & (result.beats < max(ecg.size, 1)))
    if ecg.size and not np.any(np.isfinite(ecg) & (ecg != ecg[0])):
        # nothing but a constant or missing values: all masked, no beats
        assert result.beats.size == 0
        assert result.masked_seconds == pytest.approx(ecg.size / 250.0)


def test_integer_adc_input() -> None:
    ecg, truth = synthetic_ecg(360.0, seed=4)
    adc = np.round(ecg * 200 + 1024).astype(np.int16)
    assert _se_ppv(detect_heartbeats(adc, 360.0), truth, 360.0) == (100.0, 100.0)


@pytest.mark.parametrize(
    ("ecg", "sfreq", "match"),
    [
        (np.zeros((2, 1000)), 250.0, "ecg: expected a 1-D"),
        (np.zeros(1000, dtype=complex), 250.0, "ecg: expected real"),
        (np.zeros(1000), 50.0, "sfreq: expected a sampling frequency >= 100"),
        (np.zeros(1000), "fast", "sfreq: expected a number"),
        (np.zeros(1000), float("nan"), "sfreq"),
    ],
)
def test_bad_input_raises_a_clear_error(ecg, sfreq, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        detect_heartbeats(ecg, sfreq)


def test_min_sfreq_is_the_rate_the_detector_enforces() -> None:
    ecg, truth = synthetic_ecg(MIN_SFREQ, seed=5)
    assert _se_ppv(detect_heartbeats(ecg, MIN_SFREQ), truth, MIN_SFREQ) == (100.0, 100.0)
    with pytest.raises(ValueError, match=f">= {MIN_SFREQ:g} Hz"):
        detect_heartbeats(ecg, np.nextafter(MIN_SFREQ, 0.0))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=5000),
    sfreq=st.sampled_from([100.0, 128.0, 256.0, 500.0]),
    scale=st.floats(min_value=1e-6, max_value=1e6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_random_signals_never_crash(n: int, sfreq: float, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ecg = scale * rng.standard_normal(n)
    if n > 10:
        ecg[rng.integers(0, n, size=n // 10)] = rng.choice([np.nan, 0.0, scale * 100])
    beats = detect_heartbeats(ecg, sfreq)
    assert beats.dtype == np.int64
    assert np.all(np.diff(beats) > 0)
    assert np.all((beats >= 0) & (beats < max(n, 1)))


# --------------------------------------------------------------------------------------------------------
# real annotated ECG
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecg_beats(shared_data: Path) -> Path:
    folder = shared_data / "ecg-beats"
    if not (folder / "mitdb").is_dir():
        pytest.skip(f"annotated ECG not found at {folder}")
    return folder


def test_reader_picks_mlii_and_flutter_exclusions(ecg_beats: Path) -> None:
    record = read_annotated_ecg(ecg_beats / "mitdb" / "114")
    assert record.lead == "MLII" and record.sfreq == 360.0 and record.ecg.shape == (650000,)
    flutter = read_annotated_ecg(ecg_beats / "mitdb" / "207")
    assert flutter.exclude.shape == (6, 2)
    assert np.all(flutter.exclude[:, 1] > flutter.exclude[:, 0])
    with pytest.raises(ValueError, match="lead 'V9' not found"):
        read_annotated_ecg(ecg_beats / "mitdb" / "114", lead="V9")


@pytest.mark.parametrize("name", FAST_RECORDS)
def test_mitdb_subset_floors(ecg_beats: Path, name: str) -> None:
    record = read_annotated_ecg(ecg_beats / "mitdb" / name)
    se, ppv = _se_ppv(detect_heartbeats(record.ecg, record.sfreq), record.beats, record.sfreq, record.exclude)
    floor_se, floor_ppv = MITDB_MEASURED[name]
    assert se >= floor_se - MARGIN
    assert ppv >= floor_ppv - MARGIN


def test_real_record_inverted_and_with_wander(ecg_beats: Path) -> None:
    record = read_annotated_ecg(ecg_beats / "mitdb" / "100")
    t = np.arange(record.ecg.size) / record.sfreq
    for ecg in (-record.ecg, record.ecg + 3.0 * np.sin(2 * np.pi * 0.1 * t)):
        se, ppv = _se_ppv(detect_heartbeats(ecg, record.sfreq), record.beats, record.sfreq)
        assert se >= 99.9 and ppv >= 99.9


def test_real_record_with_lead_off_stretch(ecg_beats: Path) -> None:
    record = read_annotated_ecg(ecg_beats / "mitdb" / "100")
    sfreq = record.sfreq
    ecg = record.ecg.copy()
    start, stop = int(300 * sfreq), int(330 * sfreq)
    ecg[start:stop] = ecg[start]  # lead off: the amplifier holds its last value
    result = detect_heartbeats_with_quality(ecg, sfreq)
    assert result.masked_intervals.shape[0] == 1
    m_start, m_stop = result.masked_intervals[0]
    assert m_start <= start and m_stop >= stop
    se, ppv = _se_ppv(result.beats, record.beats, sfreq, exclude=np.array([[m_start - 54, m_stop + 54]]))
    assert se >= 99.9 and ppv >= 99.9


def test_svdb_800_at_128_hz(ecg_beats: Path) -> None:
    record = read_annotated_ecg(ecg_beats / "svdb" / "800")
    assert record.sfreq == 128.0
    se, ppv = _se_ppv(detect_heartbeats(record.ecg, record.sfreq), record.beats, record.sfreq, record.exclude)
    assert se >= 99.7 and ppv >= 99.6  # measured 100.00 / 99.89


def test_ludb_lead_ii_all_beats(ecg_beats: Path) -> None:
    headers = sorted((ecg_beats / "ludb").glob("*.hea"))
    if not headers:
        pytest.skip("LUDB records not found")
    tp = fp = fn = 0
    for header in headers:
        record = read_annotated_ecg(
            header.with_suffix(""), extension="ii", lead="ii", annotated_span_only=True
        )
        s = match_beats(
            detect_heartbeats(record.ecg, record.sfreq), record.beats, record.sfreq, exclude=record.exclude
        )
        tp, fp, fn = tp + s.true_positives, fp + s.false_positives, fn + s.false_negatives
    # measured on the 40 records here: 397 / 0 / 0
    assert tp >= 395 and fp <= 2 and fn <= 2


@pytest.mark.slow
def test_mitdb_full_table_floors_and_mean(ecg_beats: Path) -> None:
    se_all, ppv_all, failures = [], [], []
    for name, (floor_se, floor_ppv) in MITDB_MEASURED.items():
        path = ecg_beats / "mitdb" / name
        if not path.with_suffix(".hea").exists():
            continue
        record = read_annotated_ecg(path)
        se, ppv = _se_ppv(
            detect_heartbeats(record.ecg, record.sfreq), record.beats, record.sfreq, record.exclude
        )
        se_all.append(se)
        ppv_all.append(ppv)
        if se < floor_se - MARGIN or ppv < floor_ppv - MARGIN:
            failures.append(
                f"{name}: Se {se:.2f} (floor {floor_se - MARGIN:.2f}), PPV {ppv:.2f} (floor {floor_ppv - MARGIN:.2f})"
            )
    assert len(se_all) == len(MITDB_MEASURED), "some MIT-BIH records are missing"
    assert not failures, "; ".join(failures)
    assert np.mean(se_all) >= 99.5
    assert np.mean(ppv_all) >= 99.5


@pytest.mark.slow
def test_noise_stress_floors(ecg_beats: Path) -> None:
    results = {}
    for name, (floor_se, floor_ppv) in NSTDB_MEASURED.items():
        record = read_annotated_ecg(ecg_beats / "nstdb" / name)
        se, ppv = _se_ppv(
            detect_heartbeats(record.ecg, record.sfreq), record.beats, record.sfreq, record.exclude
        )
        results[name] = (se, ppv)
        assert se >= floor_se - 1.0, f"{name}: Se {se:.2f}"
        assert ppv >= floor_ppv - 1.0, f"{name}: PPV {ppv:.2f}"
    # the detector degrades with the noise, it does not break down at any SNR
    assert results["118e24"][0] >= results["118e_6"][0]
    assert results["118e_6"][0] >= 80.0


@pytest.mark.slow
def test_at_least_as_accurate_as_sleepecg(ecg_beats: Path) -> None:
    sleepecg = pytest.importorskip("sleepecg")
    ours, theirs = [], []
    for name in MITDB_MEASURED:
        record = read_annotated_ecg(ecg_beats / "mitdb" / name)
        ecg = np.ascontiguousarray(record.ecg)
        ours.append(_se_ppv(detect_heartbeats(ecg, record.sfreq), record.beats, record.sfreq, record.exclude))
        theirs.append(
            _se_ppv(sleepecg.detect_heartbeats(ecg, record.sfreq), record.beats, record.sfreq, record.exclude)
        )
    ours_mean = np.mean(ours, axis=0)
    theirs_mean = np.mean(theirs, axis=0)
    assert ours_mean[0] >= theirs_mean[0]
    assert ours_mean[1] >= theirs_mean[1]


def test_public_entry_point_is_the_detector():
    import kdsleep.data

    assert kdsleep.data.detect_heartbeats is detect_heartbeats
    assert callable(kdsleep.data.heart_rate_signal) and callable(kdsleep.data.rr_intervals)
