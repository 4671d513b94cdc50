"""Sleep stages, label formats, stage groupings and the Recording / Hypnogram objects."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.recording import Hypnogram, Recording, Signal
from kdsleep.data.stages import (
    AASM_5,
    IGNORE_INDEX,
    W_L_D_R,
    W_N_R,
    SleepStage,
    UnknownStageLabelError,
    get_grouping,
    parse_stage_label,
    parse_stage_labels,
    stages_to_classes,
)

S = SleepStage
ALL = np.array([S.W, S.N1, S.N2, S.N3, S.R, S.MOVEMENT, S.ARTEFACT, S.UNSCORED], dtype=np.int8)


@pytest.mark.parametrize(
    ("grouping", "expected"),
    [
        (AASM_5, [0, 1, 2, 3, 4, -1, -1, -1]),
        (W_L_D_R, [0, 1, 1, 2, 3, -1, -1, -1]),
        (W_N_R, [0, 1, 1, 1, 2, -1, -1, -1]),
    ],
)
def test_groupings_map_stages_and_ignore_unscored(grouping, expected):
    assert stages_to_classes(ALL, grouping).tolist() == expected
    assert grouping(ALL).dtype == np.int64
    assert IGNORE_INDEX == -1


def test_grouping_lookup_by_name_and_class_count():
    assert get_grouping("w-l-d-r") is W_L_D_R
    assert get_grouping("WLDR") is W_L_D_R
    assert get_grouping(3) is W_N_R
    assert get_grouping("aasm") is AASM_5
    assert W_L_D_R.class_names == ("W", "L", "D", "R") and W_L_D_R.n_classes == 4
    with pytest.raises(ValueError, match="unknown stage grouping 'x'.*w-n-r"):
        get_grouping("x")


def test_stages_to_classes_rejects_values_outside_the_enum():
    with pytest.raises(ValueError, match=r"\[9\] are not SleepStage values"):
        stages_to_classes(np.array([0, 9]), AASM_5)


@pytest.mark.parametrize(
    ("label", "mapping", "stage"),
    [
        ("Sleep stage N2", "auto", S.N2),
        ("Sleep stage W", "edf", S.W),
        ("Sleep stage 3", "auto", S.N3),
        ("Sleep stage 4", "auto", S.N3),  # R&K S4 -> N3
        ("Sleep stage ?", "auto", S.UNSCORED),
        ("Movement time", "auto", S.MOVEMENT),
        ("Sleep stage R@@EEG F4-A1", "auto", S.R),
        ("4", "slpdb", S.N3),
        ("MT", "slpdb", S.MOVEMENT),
        ("M", "slpdb", S.MOVEMENT),
        ("W\x00", "slpdb", S.W),  # NUL-terminated aux note
        ("1", "ucddb", S.R),  # UCDDB 1 is REM, not S1
        ("2", "ucddb", S.N1),
        (5, "ucddb", S.N3),
        ("6", "ucddb", S.ARTEFACT),
        ("8", "ucddb", S.UNSCORED),  # undocumented code
        ("5", "profusion", S.R),
        ("9", "profusion", S.UNSCORED),
        ("Stage 4 sleep|4", "nsrr-events", S.N3),
        ("REM sleep|5", "auto", S.R),
    ],
)
def test_parse_stage_label_formats(label, mapping, stage):
    assert parse_stage_label(label, mapping) is stage


def test_unknown_label_names_label_mapping_and_source():
    with pytest.raises(UnknownStageLabelError) as err:
        parse_stage_labels(["Sleep stage W", "Sleep stage X"], "edf", source="night.edf")
    message = str(err.value)
    assert "night.edf" in message and "'Sleep stage X'" in message and "'edf'" in message
    assert "'sleep stage n2'" in message  # the known labels are listed


def test_auto_mapping_refuses_ambiguous_digit_codes():
    with pytest.raises(UnknownStageLabelError, match="'1'"):
        parse_stage_label("1")


def test_parse_stage_labels_custom_mapping():
    out = parse_stage_labels(["a", "b", "a"], {"a": S.W, "b": 4})
    assert out.dtype == np.int8 and out.tolist() == [0, 4, 0]


def test_hypnogram_validation_and_counts():
    hyp = Hypnogram(np.array([0, 2, 2, 7, 4]), epoch_length=30, onset=60)
    assert hyp.n_epochs == 5 and hyp.end == 60 + 150
    assert hyp.counts() == {S.W: 1, S.N2: 2, S.R: 1, S.UNSCORED: 1}
    assert hyp.to_classes("w-n-r").tolist() == [0, 1, 1, -1, 2]
    assert hyp.epoch_onsets.tolist() == [60, 90, 120, 150, 180]
    with pytest.raises(ValueError, match="onset must be >= 0"):
        Hypnogram(np.array([0]), onset=-5)
    with pytest.raises(ValueError, match="epoch_length"):
        Hypnogram(np.array([0]), epoch_length=0)
    with pytest.raises(ValueError, match=r"\[12\] are not SleepStage"):
        Hypnogram(np.array([0, 12]))
    with pytest.raises(ValueError, match="past the end of the signal"):
        hyp.check_within(200.0)
    hyp.check_within(210.0)
    assert hyp.crop(200.0).n_epochs == 4


def test_hypnogram_from_events_fills_gaps_and_spans():
    hyp = Hypnogram.from_events([30, 60, 150], [30, 60, 30], [S.W, S.N2, S.R], labels=["W", "2", "R"])
    assert hyp.onset == 30
    assert hyp.stages.tolist() == [S.W, S.N2, S.N2, S.UNSCORED, S.R]
    assert hyp.labels == ("W", "2", "2", "", "R")
    with pytest.raises(ValueError, match="not on the 30-s epoch grid"):
        Hypnogram.from_events([0, 45], [30, 30], [0, 0])
    with pytest.raises(ValueError, match="overlap"):
        Hypnogram.from_events([0, 30], [60, 30], [0, 0])


def test_recording_channels_and_rate_mismatch():
    rec = Recording(
        "s1",
        {"EEG": Signal(np.zeros(2560), 256.0), "ECG": Signal(np.zeros(1280), 128.0)},
        source="x.edf",
    )
    assert rec.duration == 10.0 and rec.channel_names == ["EEG", "ECG"]
    with pytest.raises(KeyError, match=r"no channel 'EMG'; available channels: \['EEG', 'ECG'\]"):
        rec["EMG"]
    with pytest.raises(ValueError, match="sampling-rate mismatch.*EEG 256 Hz, ECG 128 Hz"):
        rec.sfreq_of("EEG", "ECG")
    with pytest.raises(ValueError, match="positive"):
        Signal(np.zeros(3), 0)
