"""Beat readers: WFDB annotations of any extension, R-peak lists, RR exports, EDF through the detector."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from kdsleep.data.edf_writer import write_edf
from kdsleep.data.heart_rate import rr_intervals
from kdsleep.data.readers.beats import (
    BeatsFormatError,
    detect_beats_format,
    read_beats,
    read_peak_times,
    read_rr_intervals,
)
from kdsleep.data.readers.wfdb_io import BEAT_SYMBOLS, read_wfdb_beats


def _rr_ms(n: int, seed: int = 0) -> np.ndarray:
    """A plausible night of RR intervals in whole milliseconds (about 60 bpm with slow and beat-to-beat changes)."""
    rng = np.random.default_rng(seed)
    slow = 1000.0 + 120.0 * np.sin(np.arange(n) / 400.0)
    return np.round(slow + 25.0 * rng.standard_normal(n)).astype(int)


# --------------------------------------------------------------------------------------------------
# WFDB
# --------------------------------------------------------------------------------------------------


def test_slpdb_ecg_annotations_give_the_study_beats_start_and_length(shared_data) -> None:
    import wfdb

    path = shared_data / "slpdb" / "slp01a.ecg"
    assert detect_beats_format(path) == "wfdb"
    beats = read_beats(path)
    ann = wfdb.rdann(str(path.with_suffix("")), "ecg")
    is_beat = np.isin(np.asarray(ann.symbol), list(BEAT_SYMBOLS))
    np.testing.assert_array_equal(beats.times, np.asarray(ann.sample)[is_beat] / 250.0)
    assert beats.n_ignored == int((~is_beat).sum())
    assert beats.format == "wfdb"
    # header: "slp01a 4 250/... 1800000 23:07:00 19/1/1989"
    assert beats.start == datetime(1989, 1, 19, 23, 7, 0)
    assert beats.duration == pytest.approx(1800000 / 250)
    assert beats.end == pytest.approx(7200.0)


def test_mitdb_atr_skips_non_beat_annotations(shared_data) -> None:
    path = shared_data / "ecg-beats" / "mitdb" / "100.atr"
    beats = read_beats(path)
    reference = read_wfdb_beats(path.with_suffix(""), "atr")
    kept = reference.beats_only()
    np.testing.assert_array_equal(beats.times, kept.times)
    assert beats.n_ignored == reference.n_beats - kept.n_beats > 0  # e.g. the rhythm mark "+"
    assert beats.start is None  # the header has no base time
    assert beats.duration == pytest.approx(650000 / 360)


@pytest.mark.parametrize("extension", ["qrs", "myann"])
def test_wfdb_annotations_with_any_extension(shared_data, tmp_path, extension) -> None:
    source = shared_data / "ecg-beats" / "mitdb"
    shutil.copy(source / "100.atr", tmp_path / f"100.{extension}")
    shutil.copy(source / "100.hea", tmp_path / "100.hea")
    path = tmp_path / f"100.{extension}"
    assert detect_beats_format(path) == "wfdb"  # by extension (.qrs) or by binary content (.myann)
    beats = read_beats(path)
    np.testing.assert_array_equal(beats.times, read_beats(source / "100.atr").times)


# --------------------------------------------------------------------------------------------------
# Text: chest-strap RR exports, RR tables, peak times
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "RR", "RR-interval [ms]"])
def test_chest_strap_rr_export_in_ms(tmp_path, header) -> None:
    rr = _rr_ms(600)
    lines = ([header] if header else []) + [str(v) for v in rr]
    path = tmp_path / "polar_h10.txt"
    path.write_text("\n".join(lines) + "\n")
    assert detect_beats_format(path) == "rr"
    beats = read_beats(path)
    assert beats.format == "rr"
    assert "ms" in beats.detail
    np.testing.assert_allclose(beats.times, np.concatenate([[0.0], np.cumsum(rr) / 1000.0]))
    assert beats.start is None and beats.duration is None
    assert beats.end == pytest.approx(rr.sum() / 1000.0)


def test_rr_in_seconds_by_magnitude_and_by_flag(tmp_path) -> None:
    rr = _rr_ms(300) / 1000.0
    path = tmp_path / "rr.csv"
    path.write_text("\n".join(f"{v:.3f}" for v in rr))
    auto = read_rr_intervals(path)
    np.testing.assert_allclose(auto.times[1:], np.cumsum(rr))
    # the flag wins over the magnitude: read as milliseconds, the intervals are a thousand times shorter
    with pytest.warns(
        UserWarning, match="300 of 300 RR intervals lie outside.*check the RR unit, or the file format"
    ):
        forced = read_beats(path, "rr", rr_unit="ms")
    np.testing.assert_allclose(forced.times[1:], np.cumsum(rr) / 1000.0)


def test_rr_table_column_chosen_by_name_and_unit_from_header(tmp_path) -> None:
    rr = _rr_ms(200)
    path = tmp_path / "export.csv"
    rows = ["timestamp;HR [bpm];RR [s]"] + [f"{i};{60000 / v:.1f};{v / 1000:.3f}" for i, v in enumerate(rr)]
    path.write_text("\n".join(rows))
    beats = read_beats(path)
    assert beats.format == "rr" and "from the header" in beats.detail
    np.testing.assert_allclose(beats.times[1:], np.cumsum(rr) / 1000.0)


def test_rr_values_that_are_missing_zero_or_negative_are_dropped_without_shifting_time(tmp_path) -> None:
    path = tmp_path / "rr.txt"
    path.write_text("1000\n\n0\n1000\nnan\n-5\n1000\n1000\n")
    beats = read_rr_intervals(path)
    np.testing.assert_allclose(beats.times, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert beats.n_ignored == 3  # 0, nan, -5 (the empty line is no entry)


def test_csv_of_peak_times_with_header_and_extra_columns(tmp_path) -> None:
    times = np.cumsum(_rr_ms(400) / 1000.0) + 2.5
    path = tmp_path / "peaks.csv"
    path.write_text(
        "r_peak_s,amplitude\n" + "\n".join(f"{t:.3f},{1.0 + 0.1 * i % 3}" for i, t in enumerate(times))
    )
    assert detect_beats_format(path) == "peaks"
    beats = read_beats(path)
    assert beats.format == "peaks"
    np.testing.assert_allclose(beats.times, np.round(times, 3))


def test_plain_list_of_peak_times_is_told_from_rr_by_content(tmp_path) -> None:
    times = np.cumsum(_rr_ms(400) / 1000.0)
    path = tmp_path / "beats.txt"
    path.write_text("\n".join(f"{t:.4f}" for t in times))
    assert detect_beats_format(path) == "peaks"
    np.testing.assert_allclose(read_beats(path).times, np.round(times, 4))


def test_start_and_duration_from_flags_when_the_file_has_none(tmp_path) -> None:
    path = tmp_path / "rr.txt"
    path.write_text("\n".join(str(v) for v in _rr_ms(100)))
    start = datetime(2024, 3, 1, 23, 5)
    beats = read_beats(path, start=start, duration=3600.0)
    assert beats.start == start and beats.duration == 3600.0 and beats.end == 3600.0


# --------------------------------------------------------------------------------------------------
# EDF through the detector
# --------------------------------------------------------------------------------------------------


def _ecg_edf(path: Path, beat_times: np.ndarray, seconds: float, sfreq: float = 256.0) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * sfreq)) / sfreq
    ecg = 20.0 * rng.standard_normal(t.size)
    for b in beat_times:  # a narrow R wave (about 10 ms wide) at each beat, 1 mV
        near = slice(max(0, int((b - 0.05) * sfreq)), int((b + 0.05) * sfreq) + 1)
        ecg[near] += 1000.0 * np.exp(-0.5 * ((t[near] - b) / 0.01) ** 2)
    return write_edf(path, [ecg], sfreq, ["ECG I"], units="uV", start=datetime(2021, 5, 4, 22, 30))


def test_edf_ecg_goes_through_the_beat_detector(tmp_path) -> None:
    times = 1.0 + np.cumsum(_rr_ms(280, seed=4) / 1000.0)
    seconds = float(np.ceil(times[-1] + 2.0))
    path = _ecg_edf(tmp_path / "night.edf", times, seconds)
    assert detect_beats_format(path) == "edf"
    beats = read_beats(path)
    assert beats.format == "edf"
    assert beats.start == datetime(2021, 5, 4, 22, 30)
    assert beats.duration == pytest.approx(seconds, abs=1.0)
    # every beat found within 20 ms, nothing else
    assert beats.n_beats == times.size
    assert np.max(np.abs(beats.times - times)) < 0.02


def test_edf_without_an_ecg_channel(tmp_path) -> None:
    path = write_edf(tmp_path / "eeg.edf", [np.zeros(2560)], 256.0, ["EEG C3-A2"], units="uV")
    with pytest.raises(BeatsFormatError, match=r"eeg\.edf: no ECG channel.*EEG C3-A2"):
        read_beats(path)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_no_beats(tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(BeatsFormatError, match=r"empty\.txt: empty file; expected"):
        read_beats(empty, "rr")
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("peak_time_s\n")
    with pytest.raises(BeatsFormatError, match=r"header_only\.csv: no beats found; expected R-peak times"):
        read_peak_times(header_only)
    one = tmp_path / "one.txt"
    one.write_text("12.5\n")
    with pytest.raises(BeatsFormatError, match=r"one\.txt: only one beat"):
        read_peak_times(one)


def test_wfdb_file_with_only_non_beat_annotations(shared_data, tmp_path) -> None:
    # slpdb's .st stage file is a WFDB annotation file without a single beat code
    shutil.copy(shared_data / "slpdb" / "slp01a.st", tmp_path / "slp01a.st")
    shutil.copy(shared_data / "slpdb" / "slp01a.hea", tmp_path / "slp01a.hea")
    with pytest.raises(BeatsFormatError, match=r"slp01a\.st: no beats found; expected WFDB beat annotations"):
        read_beats(tmp_path / "slp01a.st", "wfdb")


def test_non_monotonic_peak_times_name_the_line(tmp_path) -> None:
    path = tmp_path / "peaks.txt"
    path.write_text("time_s\n1.0\n2.0\n3.0\n2.5\n4.0\n")
    with pytest.raises(BeatsFormatError, match=r"peaks\.txt: beat times are not strictly increasing: line 5"):
        read_beats(path, "peaks")
    path.write_text("1.0\n2.0\n2.0\n3.0\n")
    with pytest.raises(BeatsFormatError, match=r"line 3 \(2 s\) repeats"):
        read_beats(path, "peaks")


def test_non_numeric_value_names_the_line(tmp_path) -> None:
    path = tmp_path / "rr.txt"
    path.write_text("800\n810\nabc\n790\n")
    with pytest.raises(
        BeatsFormatError, match=r"rr\.txt: line 3: 'abc' is not a number; expected RR intervals"
    ):
        read_beats(path, "rr")


def test_rr_outside_the_physiological_range_is_counted_warned_and_masked(tmp_path) -> None:
    rr = _rr_ms(300)
    rr[[50, 120, 121]] = [150, 2600, 4000]  # one too short, two too long (a dropout)
    path = tmp_path / "strap.txt"
    path.write_text("\n".join(str(v) for v in rr))
    with pytest.warns(UserWarning, match=r"strap\.txt: 3 of 300 RR intervals lie outside .*0\.3-2 s.*masked"):
        beats = read_beats(path)
    assert beats.n_out_of_range == 3
    valid = rr_intervals(beats.times).valid
    assert not valid[[50, 120, 121]].any()
    assert "3 RR intervals outside" in beats.describe()


def test_peak_times_in_milliseconds_are_refused_with_a_hint(tmp_path) -> None:
    path = tmp_path / "peaks_ms.txt"
    path.write_text("\n".join(str(int(t)) for t in np.cumsum(_rr_ms(50))))
    with pytest.raises(BeatsFormatError, match=r"peaks_ms\.txt: .*expected seconds"):
        read_beats(path)


def test_unknown_formats(tmp_path) -> None:
    words = tmp_path / "notes.txt"
    words.write_text("slept well\nwoke at 3\n")
    with pytest.raises(BeatsFormatError, match=r"notes\.txt: .*Unknown beat format: expected WFDB"):
        read_beats(words)
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\x00\x01\x02\xff" * 10)
    with pytest.raises(BeatsFormatError, match=r"blob\.csv: binary content"):
        read_beats(binary)
    with pytest.raises(BeatsFormatError, match=r"unknown beat format 'json'; expected one of auto, wfdb"):
        read_beats(words, "json")
    garbage = tmp_path / "rec.atr"
    garbage.write_bytes(b"\x00\x00garbage")
    with pytest.raises(BeatsFormatError, match=r"rec\.atr: .*expected"):
        read_beats(garbage)
    with pytest.raises(BeatsFormatError, match=r"missing\.ecg: no such file"):
        read_beats(tmp_path / "missing.ecg")


def test_table_with_unnamed_columns_asks_for_one(tmp_path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("1.0,5\n2.0,6\n3.0,7\n")
    with pytest.raises(BeatsFormatError, match=r"two\.csv: 2 columns .*choose one by name or index") as info:
        read_beats(path, "peaks")
    assert info.value.remedy == ("column",)
    assert read_beats(path, "peaks", column=0).n_beats == 3


def test_wfdb_header_or_signal_file_points_to_the_annotation_file(shared_data) -> None:
    folder = shared_data / "slpdb"
    with pytest.raises(
        BeatsFormatError, match=r"slp01a\.hea: the header of a WFDB record.*beside it: .*slp01a\.ecg"
    ):
        read_beats(folder / "slp01a.hea")


def test_phone_logger_table_with_timestamps_and_rr_column(tmp_path) -> None:
    rr = _rr_ms(150)
    path = tmp_path / "logger.txt"
    rows = ["Phone timestamp;RR-interval [ms]"] + [
        f"2024-03-01T23:{5 + i // 60:02d}:{i % 60:02d}.000;{v}" for i, v in enumerate(rr)
    ]
    path.write_text("\n".join(rows))
    assert detect_beats_format(path) == "rr"
    beats = read_beats(path)
    assert "RR in ms (from the header)" in beats.detail
    np.testing.assert_allclose(beats.times[1:], np.cumsum(rr) / 1000.0)


def test_utf16_export_with_decimal_commas(tmp_path) -> None:
    rr = _rr_ms(120) / 1000.0
    path = tmp_path / "export.csv"
    text = "Index;RR (s)\r\n" + "\r\n".join(f"{i};{v:.3f}".replace(".", ",") for i, v in enumerate(rr))
    path.write_bytes(text.encode("utf-16"))
    assert detect_beats_format(path) == "rr"
    np.testing.assert_allclose(read_beats(path).times[1:], np.cumsum(np.round(rr, 3)))
