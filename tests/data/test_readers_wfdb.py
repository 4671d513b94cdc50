"""WFDB readers on the real slpdb annotations and on synthetic records."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from kdsleep.data.readers import (
    BEAT_SYMBOLS,
    read_annotated_ecg,
    read_slpdb_annotations,
    read_wfdb_beats,
    read_wfdb_header,
    read_wfdb_record,
    read_wfdb_stages,
)
from kdsleep.data.stages import SleepStage, UnknownStageLabelError

S = SleepStage

# From PROVENANCE.md: record -> (scored epochs, W, 1, 2, 3, 4, R, MT/M, beats)
SLPDB = {
    "slp01a": (240, 7, 1, 105, 47, 66, 13, 1, 7806),
    "slp01b": (360, 180, 27, 128, 0, 0, 25, 0, 11467),
    "slp02a": (360, 44, 18, 206, 5, 2, 77, 8, 16145),
    "slp02b": (270, 107, 14, 119, 0, 0, 29, 1, 11317),
    "slp03": (720, 151, 105, 312, 78, 0, 74, 0, 24917),
    "slp04": (720, 162, 60, 442, 33, 0, 23, 0, 27029),
    "slp14": (714, 321, 188, 126, 30, 12, 36, 1, 22920),
    "slp16": (694, 316, 108, 181, 22, 2, 65, 0, 27604),
    "slp32": (640, 394, 27, 159, 43, 17, 0, 0, 21718),
    "slp37": (698, 75, 21, 591, 0, 0, 11, 0, 30611),
    "slp48": (760, 213, 241, 272, 2, 0, 31, 1, 24711),
    "slp59": (458, 140, 105, 98, 50, 30, 35, 0, 16901),
    "slp60": (710, 286, 344, 49, 0, 0, 31, 0, 25017),
    "slp66": (439, 175, 143, 116, 5, 0, 0, 0, 15775),
    "slp67x": (154, 72, 41, 40, 1, 0, 0, 0, 5374),
}
LATE_START = {"slp14", "slp16", "slp37", "slp59"}


@pytest.mark.parametrize("record", sorted(SLPDB))
def test_slpdb_stages_and_beats_match_provenance_table(shared_data, record):
    scored, w, s1, s2, s3, s4, r, mt, beats = SLPDB[record]
    path = shared_data / "slpdb" / record
    hyp = read_wfdb_stages(path)
    labels = np.array(hyp.labels)
    annotated = labels != ""
    assert annotated.sum() == scored
    words = {k: int((labels == k).sum()) for k in ("W", "1", "2", "3", "4", "R")}
    assert words == {"W": w, "1": s1, "2": s2, "3": s3, "4": s4, "R": r}
    assert int(np.isin(labels, ["MT", "M"]).sum()) == mt
    counts = hyp.counts()
    assert counts.get(S.N3, 0) == s3 + s4  # R&K S3 + S4 -> N3
    assert counts.get(S.MOVEMENT, 0) == mt
    # epochs of the record length that carry no annotation are unscored, never guessed
    assert counts.get(S.UNSCORED, 0) == hyp.n_epochs - scored
    assert hyp.n_epochs == wfdb.rdheader(str(path)).sig_len // 7500
    assert (hyp.stages[0] == S.UNSCORED) == (record in LATE_START)
    assert read_wfdb_beats(path).n_beats == beats


def test_slpdb_beats_timing(shared_data):
    beats = read_wfdb_beats(shared_data / "slpdb" / "slp01a")
    assert beats.sfreq == 250.0
    rr = np.diff(beats.times)
    assert 0.4 < np.median(rr) < 1.5 and np.all(rr > 0)
    assert set(beats.beats_only().symbols) <= BEAT_SYMBOLS


def test_beat_symbols_are_the_standard_beat_classes() -> None:
    assert BEAT_SYMBOLS == set("NLRBAaJSVrFejnE/fQ?")
    assert not {"+", "~", "|", "[", "]", "!", "x"} & BEAT_SYMBOLS


def test_slpdb_header_and_annotations_agree_with_the_readers(shared_data):
    path = shared_data / "slpdb" / "slp01a"
    header = read_wfdb_header(path.with_suffix(".hea"))
    assert header.sfreq == 250.0 and header.start is not None
    assert header.n_samples == wfdb.rdheader(str(path)).sig_len
    assert header.duration == pytest.approx(header.n_samples / 250.0)
    night = read_slpdb_annotations(path)
    assert np.array_equal(night.stages, read_wfdb_stages(path).stages) and night.stages.dtype == np.int8
    assert night.duration == header.duration
    beats = read_wfdb_beats(path).beats_only()
    assert np.array_equal(night.beat_times, beats.times) and night.beat_times.size == 7806
    assert night.ventricular.dtype == bool and night.ventricular.sum() == beats.symbols.count("V")


def _write_st(folder, record, samples, notes, fs=250, sig_len=None):
    if sig_len is not None:
        wfdb.wrsamp(
            record,
            fs=fs,
            units=["mV"],
            sig_name=["ECG"],
            p_signal=np.zeros((sig_len, 1)),
            fmt=["16"],
            write_dir=str(folder),
        )
    wfdb.wrann(
        record,
        "st",
        np.asarray(samples),
        symbol=['"'] * len(samples),
        aux_note=notes,
        fs=fs,
        write_dir=str(folder),
    )


def test_slpdb_quirks_nul_and_m_and_apnea_codes(tmp_path):
    _write_st(tmp_path, "rec", [1, 7501, 15001, 30001], ["W\x00", "M", "2 H OA", "R"])
    hyp = read_wfdb_stages(tmp_path / "rec")
    assert hyp.stages.tolist() == [S.W, S.MOVEMENT, S.N2, S.UNSCORED, S.R]
    assert hyp.labels == ("W", "M", "2", "", "R")


def test_slpdb_unknown_stage_and_past_end(tmp_path):
    _write_st(tmp_path, "bad", [1, 7501], ["W", "X"])
    with pytest.raises(UnknownStageLabelError, match="'X'.*'slpdb'"):
        read_wfdb_stages(tmp_path / "bad")
    _write_st(tmp_path, "long", [1, 7501, 15001], ["W", "1", "2"], sig_len=15000)
    with pytest.raises(ValueError, match="past the end of the signal.*epoch 2.*2 whole epochs"):
        read_wfdb_stages(tmp_path / "long")


def test_slpdb_annotations_validate_stages_rather_than_clip(tmp_path):
    _write_st(tmp_path, "long", [1, 7501, 15001], ["W", "1", "2"], sig_len=15000)
    with pytest.raises(FileNotFoundError, match=r"needs its \.hea, \.st and \.ecg.*long\.ecg"):
        read_slpdb_annotations(tmp_path / "long")
    wfdb.wrann("long", "ecg", np.array([100, 400]), symbol=["N", "V"], fs=250, write_dir=str(tmp_path))
    # the third stage annotation lies past the 2 whole epochs of the signal: an error, not a dropped epoch
    with pytest.raises(ValueError, match="long.st: annotations past the end of the signal"):
        read_slpdb_annotations(tmp_path / "long")
    _write_st(tmp_path, "long", [1, 7501], ["W", "1"], sig_len=15000)
    night = read_slpdb_annotations(tmp_path / "long")
    assert night.stages.tolist() == [S.W, S.N1]
    assert night.beat_times.tolist() == [0.4, 1.6] and night.ventricular.tolist() == [False, True]
    assert night.duration == 60.0


def test_header_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.hea: WFDB header not found"):
        read_wfdb_header(tmp_path / "nothing")


def test_annotated_ecg_picks_the_lead_and_excludes_flutter(tmp_path):
    fs, n = 360, 3600
    leads = np.c_[np.linspace(-1, 1, n), np.linspace(0, 2, n)]
    wfdb.wrsamp(
        "rec",
        fs=fs,
        units=["mV", "mV"],
        sig_name=["V1", "MLII"],
        p_signal=leads,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "rec",
        "atr",
        np.array([100, 500, 900, 1000, 1300, 2000]),
        symbol=["N", "+", "[", "!", "]", "V"],
        fs=fs,
        write_dir=str(tmp_path),
    )
    record = read_annotated_ecg(tmp_path / "rec")
    assert record.lead == "MLII" and record.sfreq == 360.0 and record.name == "rec"
    np.testing.assert_allclose(record.ecg, leads[:, 1], atol=1e-3)
    assert record.beats.tolist() == [100, 2000]  # rhythm, flutter and bracket marks are not beats
    assert record.exclude.tolist() == [[900, 1300]]
    assert read_annotated_ecg(tmp_path / "rec", lead="v1").lead == "V1"
    assert read_annotated_ecg(tmp_path / "rec", lead=0).lead == "V1"
    span = read_annotated_ecg(tmp_path / "rec", annotated_span_only=True)
    assert span.exclude.tolist() == [[900, 1300], [0, 99], [2001, n]]
    with pytest.raises(ValueError, match=r"rec\.hea: lead 'V9' not found"):
        read_annotated_ecg(tmp_path / "rec", lead="V9")
    with pytest.raises(ValueError, match=r"channel 2 out of range 0\.\.1"):
        read_annotated_ecg(tmp_path / "rec", lead=2)
    with pytest.raises(FileNotFoundError, match=r"\.qrs annotations not found"):
        read_annotated_ecg(tmp_path / "rec", extension="qrs")


def test_wfdb_record_signals(tmp_path):
    fs, n = 250, 250 * 60
    t = np.arange(n) / fs
    ecg = np.sin(2 * np.pi * 1.2 * t)
    eeg = 0.03 * np.sin(2 * np.pi * 10 * t)
    wfdb.wrsamp(
        "slp99",
        fs=fs,
        units=["mV", "mV"],
        sig_name=["ECG", "EEG (C4-A1)"],
        p_signal=np.c_[ecg, eeg],
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    rec = read_wfdb_record(tmp_path / "slp99", ["C4-A1", "ECG"])
    assert rec.subject == "slp99" and rec["C4-A1"].sfreq == 250.0 and rec["ECG"].unit == "V"
    np.testing.assert_allclose(rec["ECG"].data, ecg * 1e-3, atol=1e-6)
    np.testing.assert_allclose(rec["C4-A1"].data, eeg * 1e-3, atol=1e-6)
    with pytest.raises(KeyError, match=r"available channels: \['ECG', 'EEG \(C4-A1\)'\]"):
        read_wfdb_record(tmp_path / "slp99", ["C3-A2"])
