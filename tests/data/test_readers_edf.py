"""EDF / EDF+ / BDF signal reading: channel aliases, re-referencing, units, polarity and bad files."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from kdsleep.data.edf_writer import write_edf
from kdsleep.data.readers import (
    EdfFormatError,
    MissingChannelError,
    correct_ecg_polarity,
    read_edf,
    read_edf_header,
    resolve_channel,
    unit_scale_to_volts,
)

START = datetime(2012, 3, 4, 22, 30, 0)


def _ecg(sfreq: float, seconds: float, hr: float = 60.0) -> np.ndarray:
    t = np.arange(int(sfreq * seconds)) / sfreq
    phase = (t * hr / 60.0) % 1.0
    # narrow positive R wave, small negative S, slow baseline
    return (
        1.0 * np.exp(-(((phase - 0.3) / 0.012) ** 2))
        - 0.15 * np.exp(-(((phase - 0.33) / 0.01) ** 2))
        + 0.1 * np.sin(2 * np.pi * 0.2 * t)
    )


@pytest.fixture()
def mass_like(tmp_path):
    sfreq_eeg, sfreq_ecg, seconds = 256.0, 128.0, 40
    t = np.arange(int(sfreq_eeg * seconds)) / sfreq_eeg
    c3 = 30 * np.sin(2 * np.pi * 10 * t)
    a2 = 10 * np.sin(2 * np.pi * 2 * t)
    ecg = _ecg(sfreq_ecg, seconds)
    path = write_edf(
        tmp_path / "01-02-0001 PSG.edf",
        [c3, a2, ecg],
        [sfreq_eeg, sfreq_eeg, sfreq_ecg],
        ["EEG C3-CLE", "EEG A2-CLE", "ECG I"],
        ["uV", "UV", "MV"],
        START,
    )
    return path, c3, a2, ecg


def test_rereferencing_units_and_native_rates(mass_like):
    path, c3, a2, ecg = mass_like
    rec = read_edf(path, ["C3-A2", "ECG"], subject="01-02-0001")
    assert rec.channel_names == ["C3-A2", "ECG"]
    assert rec.start == START and rec.subject == "01-02-0001"
    eeg = rec["C3-A2"]
    assert eeg.sfreq == 256.0 and eeg.unit == "V" and eeg.n_samples == c3.size
    # C3-CLE in uV minus A2-CLE in upper-case "UV" (mne leaves it unscaled; we must not)
    np.testing.assert_allclose(eeg.data * 1e6, c3 - a2, atol=2e-3)
    assert rec["ECG"].sfreq == 128.0  # read at its own rate, not upsampled to 256 Hz
    np.testing.assert_allclose(rec["ECG"].data * 1e3, ecg, atol=1e-4)  # "MV" read as millivolts


def test_dict_request_and_explicit_candidates(mass_like):
    path, c3, _, _ = mass_like
    rec = read_edf(path, {"eeg": ["EEG C3-CLE"], "ecg": "ECG I"})
    assert rec.channel_names == ["eeg", "ecg"]
    np.testing.assert_allclose(rec["eeg"].data * 1e6, c3, atol=2e-3)


def test_missing_channel_lists_available(mass_like):
    path, *_ = mass_like
    with pytest.raises(MissingChannelError) as err:
        read_edf(path, ["C4-A1"])
    message = str(err.value)
    assert str(path) in message and "'C4-A1'" in message
    assert "available channels: ['EEG C3-CLE', 'EEG A2-CLE', 'ECG I']" in message


def test_paired_channels_with_different_rates_rejected(tmp_path):
    path = write_edf(
        tmp_path / "x.edf", [np.zeros(2560), np.zeros(1280)], [256, 128], ["EEG C3-CLE", "EEG A2-CLE"], "uV"
    )
    with pytest.raises(ValueError, match="sampling-rate mismatch between paired channels.*256 Hz.*128 Hz"):
        read_edf(path, ["C3-A2"])


def test_aliases_resolve_each_dataset_spelling():
    assert str(resolve_channel("C3-A2", ["EEG C3-M2", "ECG"])) == "EEG C3-M2"  # HMC
    assert str(resolve_channel("C3-A2", ["EEG(sec)", "EEG", "ECG"])) == "EEG(sec)"  # SHHS
    assert str(resolve_channel("C4-A1", ["EEG(sec)", "EEG", "ECG"])) == "EEG"
    assert str(resolve_channel("ECG", ["ECG ECGI"])) == "ECG ECGI"
    assert str(resolve_channel("ECG", ["EKG", "ECG I"])) == "ECG I"  # lead I preferred
    assert str(resolve_channel("C3-A2", ["eeg c3-cle", "EEG A2-CLE"])) == "eeg c3-cle - EEG A2-CLE"


@pytest.mark.parametrize(
    ("unit", "scale"),
    [
        ("uV", 1e-6),
        ("UV", 1e-6),
        ("µV", 1e-6),
        ("MV", 1e-3),
        ("mv", 1e-3),
        ("V", 1.0),
        ("%", None),
        ("", None),
    ],
)
def test_unit_scale(unit, scale):
    assert unit_scale_to_volts(unit) == scale


def test_non_voltage_channel_keeps_its_unit(tmp_path):
    sao2 = np.linspace(90, 98, 40)
    path = write_edf(tmp_path / "s.edf", [sao2], 1.0, ["SaO2"], "%")
    rec = read_edf(path)
    assert rec["SaO2"].unit == "%"
    np.testing.assert_allclose(rec["SaO2"].data, sao2, atol=1e-3)


def test_ecg_polarity_correction(tmp_path):
    ecg = _ecg(256.0, 60)
    flipped, did = correct_ecg_polarity(-ecg, 256.0, "auto")
    assert did and np.array_equal(flipped, ecg)
    same, did = correct_ecg_polarity(ecg, 256.0, "auto")
    assert not did and same is ecg
    assert correct_ecg_polarity(ecg, 256.0, "invert")[1]
    path = write_edf(tmp_path / "e.edf", [-ecg], 256.0, ["ECG"], "mV")
    rec = read_edf(path, ["ECG"], ecg_polarity="auto")
    assert np.corrcoef(rec["ECG"].data, ecg)[0, 1] > 0.999


def test_bdf_is_read(tmp_path):
    x = 20 * np.sin(np.arange(512 * 4) / 9.0)
    path = write_edf(tmp_path / "r.bdf", [x], 512.0, ["EEG Fpz-Cz"], "uV", bdf=True)
    rec = read_edf(path, ["Fpz-Cz"])
    assert rec["Fpz-Cz"].sfreq == 512.0
    np.testing.assert_allclose(rec["Fpz-Cz"].data * 1e6, x, atol=1e-4)


def test_truncated_and_corrupt_files(tmp_path, mass_like):
    path, *_ = mass_like
    raw = path.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(raw[:-1000])
    with pytest.raises(EdfFormatError, match="truncated EDF file: the header declares 40 data records"):
        read_edf(cut)
    short = tmp_path / "short.edf"
    short.write_bytes(raw[:300])
    with pytest.raises(EdfFormatError, match="truncated EDF header"):
        read_edf_header(short)
    bad = bytearray(raw)
    bad[236:244] = b"forty   "
    corrupt = tmp_path / "corrupt.edf"
    corrupt.write_bytes(bytes(bad))
    with pytest.raises(EdfFormatError, match="number of data records is 'forty'"):
        read_edf(corrupt)
    text = tmp_path / "notes.edf"
    text.write_bytes(b"hello" * 100)
    with pytest.raises(EdfFormatError, match="not an EDF/BDF file"):
        read_edf(text)


def test_duplicate_channel_label_is_ambiguous(tmp_path):
    path = write_edf(tmp_path / "d.edf", [np.zeros(256), np.ones(256)], 256.0, ["ECG", "ECG"], "uV")
    with pytest.raises(EdfFormatError, match="'ECG' appears 2 times"):
        read_edf(path, ["ECG"])


def _two_channel_edf(path, seconds: int = 60) -> None:
    x = np.sin(np.arange(100 * seconds) / 10) * 100
    write_edf(path, [x, x], [100, 100], ["EEG C3-A2", "ECG I"], record_duration=1.0)


def _patch(path, offset: int, text: str) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 8] = text.ljust(8).encode("ascii")
    path.write_bytes(bytes(raw))


def test_more_records_than_the_header_declares_are_ignored_with_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "night.edf"
    _two_channel_edf(path)
    _patch(path, 236, "30")  # the header now declares 30 of the 60 one-second records
    with caplog.at_level("WARNING"):
        recording = read_edf(path, ["ECG I"])
    assert recording["ECG I"].duration == 30.0 and recording["ECG I"].data.size == 3000
    assert f"{path}: the header declares 30 data records but the file holds 60" in caplog.text
    assert "reading the 30 declared records" in caplog.text
    assert read_edf_header(path).records_in_file == 60


def test_channel_with_equal_physical_minimum_and_maximum_is_refused(tmp_path) -> None:
    path = tmp_path / "night.edf"
    _two_channel_edf(path)
    header = read_edf_header(path)
    ns = len(header.labels)
    phys_min = 256 + ns * (16 + 80 + 8)
    phys_max = phys_min + 8 * ns
    _patch(path, phys_max + 8, f"{header.physical_min[1]:g}")  # ECG I: maximum = minimum
    with pytest.raises(EdfFormatError, match=r"channel 'ECG I': physical minimum = physical maximum"):
        read_edf(path, ["ECG I"])
    assert read_edf(path, ["EEG C3-A2"])["EEG C3-A2"].data.size == 6000  # other channels still read


def test_folder_given_as_recording(tmp_path) -> None:
    with pytest.raises(EdfFormatError, match="is a folder, not an EDF/BDF file"):
        read_edf(tmp_path)


def test_real_file_holds_as_many_records_as_declared(shared_data, caplog) -> None:
    """The real HMC scoring file (EDF+) holds exactly its declared records: no warning for it."""
    real = shared_data / "hmc" / "SN001_sleepscoring.edf"
    header = read_edf_header(real)
    assert header.records_in_file == header.n_records >= 1
    assert header.physical_min[0] < header.physical_max[0]
