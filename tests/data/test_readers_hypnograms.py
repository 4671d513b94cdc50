"""Hypnogram readers: EDF+ annotations (real HMC file, MASS 20-s widening, Sleep-EDF), NSRR XML, text."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.edf_writer import write_edf
from kdsleep.data.readers import (
    read_edf_hypnogram,
    read_nsrr_xml,
    read_text_hypnogram,
    widen_epochs,
)
from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import SleepStage, UnknownStageLabelError

S = SleepStage


def test_hmc_scoring_file(shared_data):
    hyp = read_edf_hypnogram(shared_data / "hmc" / "SN001_sleepscoring.edf")
    assert hyp.n_epochs == 854 and hyp.epoch_length == 30.0 and hyp.onset == 0.0
    assert hyp.counts() == {S.W: 151, S.N1: 109, S.N2: 430, S.N3: 23, S.R: 141}
    assert hyp.labels[0] == "Sleep stage W"


def test_all_ucddb_hypnograms_parse(shared_data):
    files = sorted((shared_data / "ucddb-hypnograms").glob("*_stage.txt"))
    assert len(files) == 25
    seen = set()
    for path in files:
        hyp = read_text_hypnogram(path, mapping="ucddb")
        assert 600 < hyp.n_epochs < 1000, path
        seen.update(hyp.labels)
        # the undocumented code 8 (and 6, 7) never become a sleep stage
        for code in ("6", "7", "8"):
            assert np.all(hyp.stages[np.array(hyp.labels) == code] >= S.MOVEMENT)
    assert "8" in seen
    hyp = read_text_hypnogram(shared_data / "ucddb-hypnograms" / "ucddb008_stage.txt", mapping="ucddb")
    assert hyp.counts()[S.UNSCORED] == 11


def test_ucddb_codes_need_their_mapping(shared_data):
    with pytest.raises(UnknownStageLabelError, match="'0'.*'auto'"):
        read_text_hypnogram(shared_data / "ucddb-hypnograms" / "ucddb002_stage.txt")


def test_mass_20s_scoring_widened_to_30s(tmp_path):
    labels = [
        "Sleep stage W",
        "Sleep stage 1",
        "Sleep stage 2",
        "Sleep stage 3",
        "Sleep stage 4",
        "Sleep stage R",
    ]
    # MASS SS2-style: scoring starts a little after the recording start, 20-s epochs
    ann = [(12.0 + 20 * i, 20.0, labels[i % 6]) for i in range(30)]
    path = write_edf(tmp_path / "01-02-0001 Base.edf", [], [], [], [], annotations=ann)
    hyp20 = read_edf_hypnogram(path)
    assert hyp20.epoch_length == 20 and hyp20.onset == 12 and hyp20.n_epochs == 30
    hyp = read_edf_hypnogram(path, widen_to=30.0, signal_duration=12 + 600)
    assert hyp.epoch_length == 30 and hyp.epoch_step == 20
    assert hyp.onset == 7.0  # 12 - 5 s
    # the last widened window would end 5 s past the signal: dropped
    assert hyp.n_epochs == 29 and hyp.end <= 612
    assert hyp.stages[:6].tolist() == [S.W, S.N1, S.N2, S.N3, S.N3, S.R]
    np.testing.assert_allclose(hyp.epoch_onsets[:3], [7, 27, 47])


def test_widening_drops_a_window_that_would_start_before_the_recording():
    hyp = widen_epochs(Hypnogram(np.array([0, 1, 2], dtype=np.int8), 20.0, 0.0), 30.0)
    assert hyp.n_epochs == 2 and hyp.onset == 15.0 and hyp.stages.tolist() == [1, 2]


def test_sleep_edf_hypnogram_with_long_events_and_overhang(tmp_path):
    ann = [
        (0, 300, "Sleep stage W"),
        (300, 60, "Sleep stage 1"),
        (360, 90, "Sleep stage 2"),
        (450, 30, "Movement time"),
        (480, 1800, "Sleep stage ?"),
    ]
    path = write_edf(tmp_path / "SC4001EC-Hypnogram.edf", [], [], [], [], annotations=ann)
    hyp = read_edf_hypnogram(path, epoch_length=30)
    assert hyp.n_epochs == 76
    assert hyp.counts() == {S.W: 10, S.N1: 2, S.N2: 3, S.MOVEMENT: 1, S.UNSCORED: 60}
    # the trailing unscored overhang is cropped to the signal length, silently
    assert read_edf_hypnogram(path, epoch_length=30, signal_duration=600).n_epochs == 20


def test_scored_annotations_past_the_end_of_the_signal(tmp_path):
    ann = [(30 * i, 30, "Sleep stage N2") for i in range(10)]
    path = write_edf(tmp_path / "h.edf", [], [], [], [], annotations=ann)
    with pytest.raises(
        ValueError,
        match="past the end of the signal: the last epoch ends at 300 s but the signal lasts 240 s",
    ):
        read_edf_hypnogram(path, signal_duration=240)


def test_unknown_stage_annotation_is_an_error_other_annotations_skipped(tmp_path):
    ok = [(0, 30, "Sleep stage W"), (12.5, 0, "Lights off"), (30, 30, "Sleep stage N2")]
    hyp = read_edf_hypnogram(write_edf(tmp_path / "a.edf", [], [], [], [], annotations=ok))
    assert hyp.stages.tolist() == [S.W, S.N2]
    bad = ok + [(60, 30, "Sleep stage 5")]
    with pytest.raises(
        UnknownStageLabelError,
        match=r"b\.edf: unknown sleep-stage label 'Sleep stage 5' for label mapping 'auto'",
    ):
        read_edf_hypnogram(write_edf(tmp_path / "b.edf", [], [], [], [], annotations=bad))


PROFUSION = """<?xml version="1.0" encoding="UTF-8"?>
<CMPStudyConfig><EpochLength>30</EpochLength>
<ScoredEvents><ScoredEvent><Name>SaO2 artifact</Name><Start>10</Start><Duration>5</Duration></ScoredEvent></ScoredEvents>
<SleepStages><SleepStage>0</SleepStage><SleepStage>1</SleepStage><SleepStage>2</SleepStage><SleepStage>3</SleepStage>
<SleepStage>4</SleepStage><SleepStage>5</SleepStage><SleepStage>6</SleepStage><SleepStage>9</SleepStage></SleepStages>
</CMPStudyConfig>"""

NSRR_EVENTS = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation><SoftwareVersion>Compumedics</SoftwareVersion><EpochLength>30</EpochLength><ScoredEvents>
<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start><Duration>32520.0</Duration><ClockTime>00.00.00 23.00.00</ClockTime></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept><Start>0.0</Start><Duration>90.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Respiratory|Respiratory</EventType><EventConcept>Hypopnea|Hypopnea</EventConcept><Start>95.2</Start><Duration>12.1</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 1 sleep|1</EventConcept><Start>90.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 2 sleep|2</EventConcept><Start>120.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 4 sleep|4</EventConcept><Start>180.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>REM sleep|5</EventConcept><Start>210.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Unscored|9</EventConcept><Start>240.0</Start><Duration>30.0</Duration></ScoredEvent>
</ScoredEvents></PSGAnnotation>"""


def test_nsrr_profusion_xml(tmp_path):
    path = tmp_path / "shhs1-200001-profusion.xml"
    path.write_text(PROFUSION)
    hyp = read_nsrr_xml(path)
    assert hyp.stages.tolist() == [S.W, S.N1, S.N2, S.N3, S.N3, S.R, S.MOVEMENT, S.UNSCORED]


def test_nsrr_events_xml(tmp_path):
    path = tmp_path / "shhs1-200001-nsrr.xml"
    path.write_text(NSRR_EVENTS)
    hyp = read_nsrr_xml(path)
    assert hyp.onset == 0 and hyp.epoch_length == 30
    assert hyp.stages.tolist() == [S.W, S.W, S.W, S.N1, S.N2, S.N2, S.N3, S.R, S.UNSCORED]


def test_nsrr_bad_files(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<PSGAnnotation><ScoredEvents>")
    with pytest.raises(ValueError, match="broken.xml: not a readable XML file"):
        read_nsrr_xml(broken)
    unknown = tmp_path / "unknown.xml"
    unknown.write_text(PROFUSION.replace("<SleepStage>6</SleepStage>", "<SleepStage>8</SleepStage>"))
    with pytest.raises(UnknownStageLabelError, match="'8'.*'profusion'"):
        read_nsrr_xml(unknown)


def test_csv_hypnograms(tmp_path):
    per_epoch = tmp_path / "per_epoch.csv"
    per_epoch.write_text("epoch,stage\n0,W\n1,N1\n2,N2\n3,R\n")
    assert read_text_hypnogram(per_epoch).stages.tolist() == [S.W, S.N1, S.N2, S.R]
    events = tmp_path / "events.csv"
    events.write_text("onset,duration,description\n30,60,Sleep stage 2\n90,30,Sleep stage R\n")
    hyp = read_text_hypnogram(events)
    assert hyp.stages.tolist() == [S.UNSCORED, S.N2, S.N2, S.R]
    no_header = tmp_path / "bad.csv"
    no_header.write_text("0,W\n1,N2\n")
    with pytest.raises(ValueError, match="needs a header row with a stage column"):
        read_text_hypnogram(no_header)


def test_read_hypnogram_dispatches_on_extension(shared_data, tmp_path):
    from kdsleep.data.readers import read_hypnogram

    assert read_hypnogram(shared_data / "hmc" / "SN001_sleepscoring.edf").n_epochs == 854
    assert read_hypnogram(shared_data / "slpdb" / "slp01a.st").n_epochs == 240
    ucddb = read_hypnogram(shared_data / "ucddb-hypnograms" / "ucddb002_stage.txt", mapping="ucddb")
    assert ucddb.n_epochs == 748
    # an unscored tail past the signal is cropped, a scored one is an error
    assert read_hypnogram(shared_data / "slpdb" / "slp66.st", signal_duration=439 * 30).n_epochs == 439
    with pytest.raises(ValueError, match="past the end of the signal"):
        read_hypnogram(shared_data / "slpdb" / "slp66.st", signal_duration=400 * 30)
    xml = tmp_path / "x-profusion.xml"
    xml.write_text(PROFUSION)
    assert read_hypnogram(xml).n_epochs == 8


def test_scoring_file_starting_later_than_the_signal_is_aligned(tmp_path, caplog):
    from datetime import datetime, timedelta

    signal_start = datetime(2018, 1, 1, 22, 0, 0)
    ann = [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage N2")]
    path = write_edf(tmp_path / "s.edf", [], [], [], [], signal_start + timedelta(seconds=60), ann)
    assert read_edf_hypnogram(path).onset == 0  # no signal start: onsets as written
    hyp = read_edf_hypnogram(path, recording_start=signal_start)
    assert hyp.onset == 60 and hyp.stages.tolist() == [S.W, S.N2]
    # a scoring that starts 30 s before the signal loses its first epoch
    early = write_edf(tmp_path / "e.edf", [], [], [], [], signal_start - timedelta(seconds=30), ann)
    hyp = read_edf_hypnogram(early, recording_start=signal_start)
    assert hyp.onset == 0 and hyp.stages.tolist() == [S.N2]
    # dates years apart (one of them anonymised): ignored, with a warning
    with caplog.at_level("WARNING"):
        hyp = read_edf_hypnogram(path, recording_start=datetime(1990, 1, 1))
    assert hyp.onset == 0 and "start times ignored" in caplog.text


def test_epoch_length_inferred_from_long_events(tmp_path):
    # every event spans several 30-s epochs: the common divisor, not the most common duration, is the epoch
    ann = [
        (0, 60, "Sleep stage W"),
        (60, 90, "Sleep stage 2"),
        (150, 60, "Sleep stage R"),
        (210, 60, "Sleep stage W"),
    ]
    hyp = read_edf_hypnogram(write_edf(tmp_path / "l.edf", [], [], [], [], annotations=ann))
    assert hyp.epoch_length == 30 and hyp.n_epochs == 9
