"""Dataset adapters on synthetic files written in each dataset's layout, and on the real scoring files."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import wfdb

from kdsleep.data.datasets import (
    GenericAdapter,
    MassAdapter,
    detect_dataset,
    find_recordings,
    get_adapter,
)
from kdsleep.data.edf_writer import write_edf
from kdsleep.data.readers import BadSignalWarning, MissingChannelError
from kdsleep.data.stages import SleepStage

S = SleepStage
START = datetime(2015, 6, 7, 22, 0, 0)
RNG = np.random.default_rng(7)


def _noise(sfreq: float, seconds: float, scale: float = 20.0) -> np.ndarray:
    return scale * RNG.standard_normal(int(sfreq * seconds))


def _stage_annotations(n: int, epoch: float, offset: float = 0.0, labels=None):
    labels = labels or ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage R"]
    return [(offset + i * epoch, epoch, labels[i % len(labels)]) for i in range(n)]


def test_mass_layout_ss1_and_ss2(tmp_path):
    seconds = 300
    for ident, epoch, ecg_name in (("01-01-0001", 30.0, "ECG I"), ("01-02-0003", 20.0, "ECG ECGI")):
        folder = tmp_path / f"SS{int(ident[3:5])}"
        folder.mkdir()
        write_edf(
            folder / f"{ident} PSG.edf",
            [_noise(256, seconds), _noise(256, seconds, 5), _noise(256, seconds, 300), _noise(256, seconds)],
            256.0,
            ["EEG C3-CLE", "EEG A2-CLE", ecg_name, "EMG Chin"],
            ["uV", "uV", "uV", "uV"],
            START,
        )
        n_epochs = int((seconds - 10) // epoch)
        write_edf(
            folder / f"{ident} Base.edf", [], [], [], [], START, _stage_annotations(n_epochs, epoch, 10.0)
        )
    assert detect_dataset(tmp_path) == "mass"
    entries = find_recordings(tmp_path)
    assert [e.subject for e in entries] == ["01-01-0001", "01-02-0003"]
    assert [e.extra["subset"] for e in entries] == ["SS1", "SS2"]
    rec, hyp = entries[0].load()
    assert rec.channel_names == ["eeg", "ecg"] and rec["eeg"].sfreq == 256.0
    assert hyp.epoch_length == 30 and hyp.onset == 10 and hyp.n_epochs == 9
    rec2, hyp2 = entries[1].load()
    # SS2: 20-s epochs widened to 30 s, 20 s apart; the last one would overhang the signal
    assert hyp2.epoch_length == 30 and hyp2.epoch_step == 20 and hyp2.onset == 5
    assert hyp2.n_epochs == 14 and hyp2.end <= rec2.duration
    assert hyp2.stages[:5].tolist() == [S.W, S.N1, S.N2, S.N3, S.R]


def test_hmc_layout_and_real_scoring(tmp_path, shared_data):
    write_edf(
        tmp_path / "SN002.edf",
        [_noise(256, 120), _noise(256, 120), _noise(256, 120, 400)],
        256.0,
        ["EEG C4-M1", "EEG C3-M2", "ECG"],
        "uV",
        START,
    )
    ann = _stage_annotations(
        4, 30.0, labels=["Sleep stage W", "Sleep stage N1", "Sleep stage N2", "Sleep stage N3"]
    )
    write_edf(tmp_path / "SN002_sleepscoring.edf", [], [], [], [], START, ann + [(33.4, 0.0, "Lights off")])
    assert detect_dataset(tmp_path) == "hmc"
    (entry,) = get_adapter("hmc").find(tmp_path)
    rec, hyp = entry.load()
    assert entry.subject == "SN002" and rec.source.name == "SN002.edf"
    assert hyp.stages.tolist() == [S.W, S.N1, S.N2, S.N3]
    # the real HMC folder holds the scoring only
    assert get_adapter("hmc").find(shared_data / "hmc") == []
    (real,) = get_adapter("hmc").find(shared_data / "hmc", require_signals=False)
    assert real.subject == "SN001" and real.read_hypnogram().n_epochs == 854
    with pytest.raises(FileNotFoundError, match="SN001: no signal file"):
        real.load()


def test_sleep_edf_layout(tmp_path):
    seconds = 600
    write_edf(
        tmp_path / "SC4012E0-PSG.edf",
        [_noise(100, seconds), _noise(100, seconds), np.repeat(RNG.standard_normal(seconds), 1)],
        [100.0, 100.0, 1.0],
        ["EEG Fpz-Cz", "EEG Pz-Oz", "Temp rectal"],
        ["uV", "uV", "DegC"],
        START,
    )
    ann = [
        (0, 120, "Sleep stage W"),
        (120, 90, "Sleep stage 1"),
        (210, 300, "Sleep stage 2"),
        (510, 3000, "Sleep stage ?"),
    ]
    write_edf(tmp_path / "SC4012EC-Hypnogram.edf", [], [], [], [], START, ann)
    assert detect_dataset(tmp_path) == "sleep-edf"
    (entry,) = find_recordings(tmp_path)
    assert (entry.subject, entry.session) == ("SC01", "2")
    rec, hyp = entry.load()
    assert rec.channel_names == ["eeg", "eeg2"] and rec["eeg"].sfreq == 100.0
    # the trailing "Sleep stage ?" overhang is cropped to the 600-s signal
    assert hyp.n_epochs == 20 and hyp.counts() == {S.W: 4, S.N1: 3, S.N2: 10, S.UNSCORED: 3}


def test_slpdb_layout_synthetic_signals_and_real_annotations(tmp_path, shared_data):
    fs, n = 250, 250 * 90
    wfdb.wrsamp(
        "slp77a",
        fs=fs,
        units=["mV", "mmHg", "uV"],
        sig_name=["ECG", "BP", "EEG (C4-A1)"],
        p_signal=np.c_[
            np.sin(np.arange(n) / 30),
            np.full(n, 90.0) + np.sin(np.arange(n) / 70),
            20 * np.sin(np.arange(n) / 3),
        ],
        fmt=["16", "16", "16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "slp77a",
        "st",
        np.array([1, 7501, 15001]),
        symbol=['"'] * 3,
        aux_note=["W", "1 H", "4\x00"],
        fs=fs,
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "slp77a",
        "ecg",
        np.arange(100, n, 200),
        symbol=["N"] * len(range(100, n, 200)),
        fs=fs,
        write_dir=str(tmp_path),
    )
    (entry,) = get_adapter("slpdb").find(tmp_path)
    assert (entry.subject, entry.session) == ("slp77", "a")
    rec, hyp = entry.load()
    assert rec["eeg"].sfreq == 250.0 and rec["ecg"].unit == "V"
    np.testing.assert_allclose(rec["eeg"].data, 20e-6 * np.sin(np.arange(n) / 3), atol=1e-8)
    assert hyp.stages.tolist() == [S.W, S.N1, S.N3]
    assert get_adapter("slpdb").read_beats(entry).n_beats == len(range(100, n, 200))

    real = get_adapter("slpdb").find(shared_data / "slpdb", require_signals=False)
    assert len(real) == 15 and {e.session for e in real} == {"", "a", "b"}
    first = real[0]
    assert first.key == "slp01/a" and first.read_hypnogram().n_epochs == 240
    assert get_adapter("slpdb").read_beats(first).n_beats == 7806
    with pytest.raises(FileNotFoundError, match=r"no signal file \(\.dat\)"):
        first.load()


def test_nsrr_layout(tmp_path):
    edf_dir = tmp_path / "polysomnography" / "edfs" / "shhs1"
    xml_dir = tmp_path / "polysomnography" / "annotations-events-nsrr" / "shhs1"
    edf_dir.mkdir(parents=True)
    xml_dir.mkdir(parents=True)
    write_edf(
        edf_dir / "shhs1-200001.edf",
        [_noise(125, 150), _noise(125, 150), _noise(250, 150, 500), _noise(1, 150, 1) + 95],
        [125.0, 125.0, 250.0, 1.0],
        ["EEG(sec)", "EEG", "ECG", "SaO2"],
        ["uV", "uV", "mV", "%"],
        START,
    )
    events = "".join(
        f"<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>{c}</EventConcept>"
        f"<Start>{30 * i}</Start><Duration>30.0</Duration></ScoredEvent>"
        for i, c in enumerate(
            ["Wake|0", "Stage 1 sleep|1", "Stage 2 sleep|2", "Stage 3 sleep|3", "REM sleep|5"]
        )
    )
    (xml_dir / "shhs1-200001-nsrr.xml").write_text(
        f"<?xml version='1.0'?><PSGAnnotation><EpochLength>30</EpochLength><ScoredEvents>{events}</ScoredEvents></PSGAnnotation>"
    )
    assert detect_dataset(tmp_path) == "nsrr"
    (entry,) = find_recordings(tmp_path, "shhs")
    assert (entry.subject, entry.session) == ("200001", "shhs1")
    rec, hyp = entry.load()
    assert rec["eeg"].sfreq == 125.0 and rec["ecg"].sfreq == 250.0  # C3-A2 is EEG(sec) in SHHS
    assert hyp.stages.tolist() == [S.W, S.N1, S.N2, S.N3, S.R]


def test_generic_layout_text_and_embedded_annotations(tmp_path):
    write_edf(
        tmp_path / "night1.edf", [_noise(200, 90), _noise(200, 90, 500)], 200.0, ["C3-A2", "ECG"], "uV", START
    )
    (tmp_path / "night1_hypnogram.txt").write_text("W\nN1\nN2\n")
    write_edf(
        tmp_path / "night2.edf",
        [_noise(200, 60), _noise(200, 60, 500)],
        200.0,
        ["C4-A1", "EKG"],
        "uV",
        START,
        annotations=[(0, 30, "Sleep stage R"), (30, 30, "Sleep stage N3")],
    )
    write_edf(tmp_path / "night3.edf", [_noise(200, 60)], 200.0, ["Fp1"], "uV", START)
    (tmp_path / "night3.csv").write_text("stage\nW\nW\n")
    assert detect_dataset(tmp_path) == "generic"
    entries = find_recordings(tmp_path)
    assert [e.subject for e in entries] == ["night1", "night2", "night3"]
    assert entries[0].load()[1].stages.tolist() == [S.W, S.N1, S.N2]
    rec, hyp = entries[1].load()
    assert hyp.stages.tolist() == [S.R, S.N3] and rec["ecg"].sfreq == 200.0
    with pytest.raises(MissingChannelError, match=r"available channels: \['Fp1'\]"):
        entries[2].load()
    assert entries[2].load({"eeg": "Fp1"})[1].n_epochs == 2
    ucddb = GenericAdapter(mapping="ucddb")
    (tmp_path / "night1_hypnogram.txt").write_text("0\n2\n8\n")
    assert ucddb.find(tmp_path)[0].load()[1].stages.tolist() == [S.W, S.N1, S.UNSCORED]


def test_load_masks_flat_stretches_and_rejects_overlong_scoring(tmp_path):
    eeg = _noise(100, 120)
    eeg[3000:9000] = 0.0  # 60 s of a disconnected electrode
    write_edf(tmp_path / "a.edf", [eeg, _noise(100, 120, 500)], 100.0, ["C3-A2", "ECG"], "uV", START)
    (tmp_path / "a_hypnogram.csv").write_text("stage\nN2\nN2\nN2\nN2\n")
    (entry,) = find_recordings(tmp_path, "generic")
    with pytest.warns(BadSignalWarning, match="channel 'eeg': 60.0 s"):
        _, hyp = entry.load()
    assert hyp.stages.tolist() == [S.N2, S.ARTEFACT, S.ARTEFACT, S.N2]
    (tmp_path / "a_hypnogram.csv").write_text("stage\nN2\nN2\nN2\nN2\nN2\n")
    with pytest.raises(
        ValueError,
        match="past the end of the signal: the last epoch ends at 150 s but the signal lasts 120 s",
    ):
        entry.load()


def test_unknown_dataset_and_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'foo'"):
        get_adapter("foo")
    with pytest.raises(FileNotFoundError, match="dataset directory not found"):
        MassAdapter().find(tmp_path / "nope")
