"""EDF header fields that a corrupt or unusual file gets wrong: each a clear error or a warning naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsleep.data.readers.edf import EdfFormatError, read_edf, read_edf_header
from kdsleep.data.synthetic import generate_synthetic_psg


@pytest.fixture(scope="module")
def psg(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("psg")
    paths = generate_synthetic_psg(folder, n_subjects=1, hours=0.05, sfreq=64.0, progress=False)
    return next(p for p in paths if p.name.endswith("PSG.edf"))


def _signal_field(raw: bytearray, field: int, signal: int, value: str) -> bytearray:
    """Overwrite one per-signal header field (0 label, 2 unit, 5 digital min, 6 digital max)."""
    ns = int(raw[252:256].decode())
    widths = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32]
    offset = 256 + sum(w * ns for w in widths[:field]) + widths[field] * signal
    raw[offset : offset + widths[field]] = value.ljust(widths[field]).encode("latin-1")
    return raw


def _ecg_index(path: Path) -> tuple[int, str]:
    labels = read_edf_header(path).labels
    i = next(i for i, label in enumerate(labels) if "ECG" in label)
    return i, labels[i]


def test_digital_minimum_above_maximum_is_an_error(psg, tmp_path) -> None:
    i, label = _ecg_index(psg)
    raw = _signal_field(_signal_field(bytearray(psg.read_bytes()), 5, i, "100"), 6, i, "-100")
    bad = tmp_path / psg.name
    bad.write_bytes(bytes(raw))
    with pytest.raises(EdfFormatError) as err:
        read_edf(bad, {"ecg": label})
    message = str(err.value)
    assert str(bad) in message and repr(label) in message
    assert "digital minimum 100 is above digital maximum -100" in message


def test_non_voltage_unit_of_a_signal_is_read_with_a_warning(psg, tmp_path, caplog) -> None:
    i, label = _ecg_index(psg)
    bad = tmp_path / psg.name
    bad.write_bytes(bytes(_signal_field(bytearray(psg.read_bytes()), 2, i, "parsec")))
    with caplog.at_level("WARNING"):
        recording = read_edf(bad, {"ecg": label})
    assert f"{bad}: channel {label!r} has unit 'parsec' in the header, expected a voltage" in caplog.text
    assert recording.signals["ecg"].unit == "parsec"


def test_upper_case_millivolts_read_without_a_warning(psg, tmp_path, caplog) -> None:
    i, label = _ecg_index(psg)
    good = read_edf(psg, {"ecg": label}).signals["ecg"]
    assert good.unit == "V"
    with caplog.at_level("WARNING"):
        upper = tmp_path / psg.name
        raw = bytearray(psg.read_bytes())
        unit = read_edf_header(psg).units[i]
        upper.write_bytes(bytes(_signal_field(raw, 2, i, unit.upper())))
        signal = read_edf(upper, {"ecg": label}).signals["ecg"]
    assert "expected a voltage" not in caplog.text
    assert signal.unit == "V"


def test_zero_samples_per_record_is_an_error_naming_the_channel(psg, tmp_path) -> None:
    i, label = _ecg_index(psg)
    bad = tmp_path / psg.name
    bad.write_bytes(bytes(_signal_field(bytearray(psg.read_bytes()), 8, i, "0")))
    with pytest.raises(
        EdfFormatError, match=r"samples per data record is 0 in the header, expected at least 1"
    ):
        read_edf(bad, {"ecg": label})


@pytest.mark.parametrize("suffix", [".bdf", ".rec", ".EDF", ""])
def test_an_edf_under_another_extension_is_read_as_edf(psg, tmp_path, suffix) -> None:
    _i, label = _ecg_index(psg)
    renamed = tmp_path / f"night{suffix}"
    renamed.write_bytes(psg.read_bytes())
    expected = read_edf(psg, {"ecg": label}).signals["ecg"].data
    got = read_edf(renamed, {"ecg": label}).signals["ecg"].data
    assert got.shape == expected.shape and (got == expected).all()
