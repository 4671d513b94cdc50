"""Reader of PhysioNet/CinC 2020 records, on every real record and on crafted headers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from kdsleep.ecg12.inventory import find_duplicates, scan_records
from kdsleep.ecg12.reader import (
    STANDARD_LEADS,
    HeaderError,
    list_records,
    read_dx_codes,
    read_header,
    read_patient_map,
    read_record,
)
from kdsleep.ecg12.scoring import load_scoring_tables


def all_record_paths(shared_data: Path) -> list[Path]:
    root = shared_data / "cinc2020"
    return list_records(root / "labelled") + list_records(root / "unlabelled")


def write_record(
    folder: Path,
    name: str,
    digital: np.ndarray,
    gain: str = "1000/mV",
    dx: str = "#Dx: 426783006",
    first_field: str | None = None,
    sfreq: int = 500,
    extra_lines: tuple[str, ...] = ("#Age: 50", "#Sex: Male"),
) -> Path:
    """A record in the challenge's layout: header + MATLAB file with a 'val' int16 array."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": digital.astype(np.int16)})
    n_leads, n_samples = digital.shape
    lines = [f"{first_field or name} {n_leads} {sfreq} {n_samples} 05-May-2020 14:50:55"]
    lines += [f"{name}.mat 16+24 {gain} 16 0 0 0 0 {lead}" for lead in STANDARD_LEADS[:n_leads]]
    lines += [*extra_lines, dx]
    path = folder / f"{name}.hea"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_real_record_is_read(shared_data: Path):
    paths = all_record_paths(shared_data)
    assert len(paths) == 29 + 48
    sources = set()
    for path in paths:
        record = read_record(path)
        header = record.header
        assert record.signal.shape == (12, header.n_samples)
        assert record.signal.dtype == np.float32
        assert np.all(np.isfinite(record.signal))
        assert record.lead_names == STANDARD_LEADS
        assert header.sfreq in (500.0, 1000.0)
        assert 10 <= header.duration <= 120
        assert header.has_dx
        assert not header.record_name.endswith(".mat")
        assert header.sex in ("M", "F")
        sources.add(header.record_name.rstrip("0123456789"))
        labelled = path.parent.name == "labelled"
        assert bool(header.dx_codes) == labelled
    assert sources == {"A", "E", "HR", "Q", "S"}


def test_labels_of_every_labelled_record(shared_data: Path):
    tables = load_scoring_tables(shared_data / "cinc2020" / "scoring")
    headers = [read_header(p) for p in list_records(shared_data / "cinc2020" / "labelled")]
    labels = tables.encode_many(h.dx_codes for h in headers)
    assert labels.shape == (29, 24)
    # the records were chosen to cover the classes: all but right axis deviation appear
    assert labels.any(axis=0).sum() == 23
    by_name = {h.record_name: row for h, row in zip(headers, labels, strict=True)}
    # E00015 lists 284470004 twice and 251146004: two classes
    assert by_name["E00015"].sum() == 2
    # HR20715's two codes are both unscored
    assert by_name["HR20715"].sum() == 0


def test_gains_match_wfdb_including_georgia(shared_data: Path, tmp_path: Path):
    """Millivolts equal wfdb's physical signal for every source; Georgia via a copy with line 1 fixed."""
    wfdb = pytest.importorskip("wfdb")
    for name in ("A5432", "E00009", "HR00599", "Q0050"):
        source = shared_data / "cinc2020" / "labelled"
        ours = read_record(source / f"{name}.hea", leads=None)
        lines = (source / f"{name}.hea").read_text().splitlines()
        first = lines[0].split()
        first[0] = first[0].removesuffix(".mat")  # the Georgia quirk wfdb rejects
        (tmp_path / f"{name}.hea").write_text("\n".join([" ".join(first), *lines[1:]]) + "\n")
        shutil.copy(source / f"{name}.mat", tmp_path / f"{name}.mat")
        theirs = wfdb.rdrecord(str(tmp_path / name)).p_signal.T
        assert np.allclose(ours.signal, theirs, atol=1e-6), name
    ptb = read_header(shared_data / "cinc2020" / "unlabelled" / "S0001.hea")
    assert ptb.sfreq == 1000.0 and ptb.gains[0] == 2_000_000


def test_georgia_record_name_with_mat_suffix(shared_data: Path):
    header = read_header(shared_data / "cinc2020" / "labelled" / "E00009.hea")
    assert header.record_name == "E00009"
    assert header.signal_path.name == "E00009.mat"
    assert header.gains[0] == 4880


def test_scan_reports_duplicates_and_amplitudes(shared_data: Path):
    root = shared_data / "cinc2020"
    report = scan_records([root / "labelled", root / "unlabelled"], progress=False)
    assert len(report.headers) == 77
    groups = {tuple(p.name for p in group) for group in report.duplicates}
    # the same three records are in both folders (once with, once without diagnoses)
    assert groups == {("E00009.hea",) * 2, ("Q0001.hea",) * 2, ("Q0010.hea",) * 2}
    assert {p.parent.name for p in report.duplicate_paths()} == {"unlabelled"}
    assert report.zero_leads == {}
    # the PTB headers' gain of 2 000 000 per mV gives microvolt-sized ECGs: flagged
    assert {Path(p).name[:1] for p in report.implausible_amplitude} == {"S"}
    assert "identical signals" in report.summary()


def test_zero_leads_and_duplicates_detected(tmp_path: Path):
    rng = np.random.default_rng(0)
    digital = rng.integers(-500, 500, (12, 1000))
    digital[3] = 0
    write_record(tmp_path, "X1", digital)
    write_record(tmp_path, "X2", digital, gain="200/mV")  # same samples, another name and gain
    write_record(tmp_path, "X3", rng.integers(-500, 500, (12, 1000)))
    report = scan_records(tmp_path, progress=False)
    assert report.zero_leads == {str(tmp_path / "X1.hea"): ("aVR",), str(tmp_path / "X2.hea"): ("aVR",)}
    assert [tuple(p.name for p in g) for g in report.duplicates] == [("X1.hea", "X2.hea")]
    assert read_record(tmp_path / "X1.hea").zero_leads == ("aVR",)


@pytest.mark.parametrize(
    ("line", "codes"),
    [
        ("#Dx: 164889003,59118001", ("164889003", "59118001")),
        ("# Dx: 164889003, 59118001", ("164889003", "59118001")),
        ("#Dx :164889003 ,  59118001 ", ("164889003", "59118001")),
        ("#Dx:   164889003,,164889003,", ("164889003",)),
        ("#Dx: ", ()),
        ("#Dx:", ()),
    ],
)
def test_dx_spacing_variants(tmp_path: Path, line: str, codes: tuple[str, ...]):
    path = write_record(tmp_path, "V1", np.zeros((12, 500)), dx=line)
    assert read_header(path).dx_codes == codes
    assert read_dx_codes(path) == codes


def test_units_baseline_and_demographics(tmp_path: Path):
    digital = np.full((12, 500), 1100)
    path = write_record(
        tmp_path, "U1", digital, gain="1000(100)/uV", extra_lines=("#Age: NaN", "#Sex: female")
    )
    record = read_record(path)
    # (1100 - 100) / 1000 uV = 1 uV = 0.001 mV
    assert np.allclose(record.signal, 0.001)
    assert record.header.age is None and record.header.sex == "F"
    path = write_record(tmp_path, "U2", digital, gain="2/V", extra_lines=("#Age: 61", "#Sex: Unknown"))
    assert np.allclose(read_record(path).signal, 1100 / 2 * 1000)  # 550 V in mV
    assert read_header(path).age == 61 and read_header(path).sex is None
    path = write_record(tmp_path, "U3", digital, extra_lines=("#Age: 300", "#Sex: M"))
    assert read_header(path).age is None  # a sentinel, not an age


def test_resampling_to_100_hz(tmp_path: Path):
    t = np.arange(5000) / 500
    digital = np.tile(1000 * np.sin(2 * np.pi * 5 * t), (12, 1))
    record = read_record(write_record(tmp_path, "R1", digital), sfreq=100)
    assert record.sfreq == 100 and record.signal.shape == (12, 1000)
    expected = np.sin(2 * np.pi * 5 * np.arange(1000) / 100)
    assert np.allclose(record.signal[:, 50:-50], expected[50:-50], atol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gain": "abc/mV"}, "'gain'"),
        ({"gain": "0/mV"}, "'gain'"),
        ({"gain": "1000/furlong"}, "'units'"),
        ({"dx": "#Dx: AF,164889003"}, "'Dx'"),
        ({"extra_lines": ("#Age: old",)}, "'Age'"),
        ({"extra_lines": ("#Sex: X",)}, "'Sex'"),
        ({"first_field": "M1 12"}, "'record line'"),
    ],
)
def test_malformed_headers_name_file_and_field(tmp_path: Path, kwargs: dict, field: str):
    path = write_record(tmp_path, "M1", np.zeros((12, 500)), **kwargs)
    if kwargs.get("first_field"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(["M1 12", *lines[1:]]) + "\n")
    with pytest.raises(HeaderError, match=field) as info:
        read_header(path)
    assert "M1.hea" in str(info.value)


def test_signal_file_must_match_header(tmp_path: Path):
    path = write_record(tmp_path, "S1", np.zeros((12, 500)))
    scipy.io.savemat(tmp_path / "S1.mat", {"val": np.zeros((12, 400), dtype=np.int16)})
    with pytest.raises(HeaderError, match=r"S1.mat: field 'val': shape \(12, 400\)"):
        read_record(path)
    (tmp_path / "S1.mat").unlink()
    with pytest.raises(HeaderError, match="signal file not found"):
        read_record(path)
    with pytest.raises(HeaderError, match="lead 'V7' not found"):
        write_record(tmp_path, "S2", np.zeros((12, 500)))
        read_record(tmp_path / "S2.hea", leads=["I", "V7"])


def test_find_duplicates_keeps_one_copy_by_a_fixed_rule(tmp_path: Path):
    rng = np.random.default_rng(3)
    same = rng.integers(-500, 500, (12, 1000))
    # written in an order unrelated to the rule; B2 is unlabelled, C3 has other diagnoses
    write_record(tmp_path / "u", "B2", same, dx="#Dx: ")
    write_record(tmp_path / "l", "C3", same, dx="#Dx: 164889003")
    write_record(tmp_path / "l", "C1", same, gain="200/mV")
    write_record(tmp_path / "l", "D4", rng.integers(-500, 500, (12, 1000)))
    paths = list_records(tmp_path / "u") + list_records(tmp_path / "l")
    for order in (paths, paths[::-1]):
        groups = find_duplicates(order)
        assert len(groups) == 1
        group = groups[0]
        # labelled before unlabelled, then by record name: C1 is kept whatever the reading order
        assert group.kept.record_name == "C1"
        assert [h.record_name for h in group.dropped] == ["C3", "B2"]
        assert not group.same_labels  # C1 and C3 disagree; the unlabelled B2 is not compared
        assert group.to_dict()["kept"] == str(tmp_path / "l" / "C1.hea")
    # scan_records orders its groups by the same rule
    assert [p.name for p in scan_records([tmp_path / "u", tmp_path / "l"], progress=False).duplicates[0]] == [
        "C1.hea",
        "C3.hea",
        "B2.hea",
    ]


def test_real_duplicates_keep_the_labelled_copy(shared_data: Path):
    paths = all_record_paths(shared_data)
    groups = find_duplicates(paths[::-1])
    assert [g.kept.header_path.parent.name for g in groups] == ["labelled"] * 3
    assert sorted(g.kept.record_name for g in groups) == ["E00009", "Q0001", "Q0010"]
    assert all(len(g.dropped) == 1 and g.dropped[0].header_path.parent.name == "unlabelled" for g in groups)
    assert all(g.same_labels for g in groups)


def test_real_headers_name_no_patient(shared_data: Path):
    assert all(read_header(p).patient_id is None for p in all_record_paths(shared_data))


@pytest.mark.parametrize(
    ("line", "patient"),
    [
        ("#Patient ID: 15709", "15709"),
        ("# patient: P-3", "P-3"),
        ("#Subject ID : s01", "s01"),
        ("#Patient ID: Unknown", None),
        ("#Rx: Unknown", None),
    ],
)
def test_patient_id_from_header(tmp_path: Path, line: str, patient: str | None):
    digital = np.zeros((12, 500), dtype=np.int64)
    path = write_record(tmp_path, "P1", digital, extra_lines=("#Age: 50", "#Sex: Male", line))
    assert read_header(path).patient_id == patient


def test_read_patient_map_layouts_and_errors(tmp_path: Path):
    simple = tmp_path / "patients.csv"
    simple.write_text("record,patient,site\nA0001,p1,x\nA0002,p1,x\n\nA0003,p2,y\n")
    assert read_patient_map(simple) == {"A0001": "p1", "A0002": "p1", "A0003": "p2"}
    ptbxl = tmp_path / "ptbxl_database.csv"
    ptbxl.write_text("ecg_id,patient_id,age\n1,15709.0,56.0\n2,13243.0,19.0\n21837,15709.0,56.0\n")
    assert read_patient_map(ptbxl) == {"HR00001": "15709", "HR00002": "13243", "HR21837": "15709"}

    bad = tmp_path / "bad.csv"
    bad.write_text("name,subject\nA0001,p1\n")
    with pytest.raises(HeaderError, match=r"bad.csv, line 1: field 'columns'"):
        read_patient_map(bad)
    bad.write_text("record,patient\nA0001,p1\nA0001,p2\n")
    with pytest.raises(HeaderError, match=r"line 3: field 'patient': record 'A0001' given two patients"):
        read_patient_map(bad)
    bad.write_text("record,patient\nA0001,\n")
    with pytest.raises(HeaderError, match=r"line 2: field 'record/patient'"):
        read_patient_map(bad)
    with pytest.raises(HeaderError, match="not found"):
        read_patient_map(tmp_path / "missing.csv")
