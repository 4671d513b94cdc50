"""Reader for the 12-lead ECG records of the PhysioNet/CinC Challenge 2020.

Each record is a WFDB header (``.hea``) and a MATLAB file (``.mat``) holding the digital samples as a
``val`` array (n_leads, n_samples) of int16. The header is parsed here rather than by wfdb because the
Georgia headers of 2020 name the record ``E00001.mat`` on their first line, which wfdb rejects.

Quirks handled:

- ``#Dx`` lines spelled ``#Dx:``, ``# Dx:``, ``#Dx :`` or with extra spaces; empty diagnosis lists
  (unlabelled records); repeated codes;
- ADC gains that differ between sources (200, 1000, 4880 and 2 000 000 units per mV...) and units given in
  uV or V: every signal is returned in millivolts, ``(digital - baseline) / gain``;
- ages written ``NaN`` or ``Unknown``, sex written ``Male``, ``male``, ``M``...;
- all-zero leads (:func:`zero_leads`); across a collection of records, all-zero leads and duplicated records
  (identical samples under different names) are found by :mod:`kdsleep.ecg12.inventory`.

Patients: none of the 2020 challenge's headers names the patient (their comment lines are Age, Sex, Dx, Rx,
Hx and Sx), although several sources hold more than one record per patient (PTB, INCART, PTB-XL). A header
comment ``#Patient ID:`` (or ``#Patient:``, ``#Subject ID:``, ``#Subject:``) is read when present, and
:func:`read_patient_map` reads a record → patient table, such as PTB-XL's ``ptbxl_database.csv``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdsleep.data import resample

logger = logging.getLogger(__name__)

#: The twelve standard leads, in the order of the challenge's records.
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Physical units a header may give, as multiples of a millivolt.
_UNITS_IN_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}
_SNOMED_CODE = re.compile(r"^\d+$")
# "#Dx: 1,2", "# Dx:1,2", "#Dx : 1, 2"; the key is one word, the value may be empty.
_COMMENT_FIELD = re.compile(r"^#\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$")
# WFDB gain field: gain, optional (baseline), optional /units
_GAIN_FIELD = re.compile(r"^([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/(\S+))?$")
_MISSING = {"", "nan", "unknown", "none", "n/a", "na", "-"}
#: Header comment keys read as the patient's identifier, in order of preference (lower case).
PATIENT_ID_FIELDS: tuple[str, ...] = ("patient id", "patient", "subject id", "subject")


class HeaderError(ValueError):
    """A header or signal file that cannot be read; the message names the file and the field."""


@dataclass(frozen=True, eq=False)
class ECGHeader:
    """What a challenge header says about a record.

    Attributes
    ----------
    record_name : str
        Name of the record (the header's first field, without a ``.mat`` suffix).
    header_path : Path
    signal_path : Path
        The ``.mat`` file named by the signal lines, beside the header.
    sfreq : float
        Sampling frequency in Hz (500 for most sources, 1000 for PTB, 257 for St Petersburg).
    n_samples : int
        Samples per lead.
    lead_names : tuple of str
    gains : ndarray, shape (n_leads,)
        ADC units per millivolt (the header's gain converted to millivolts).
    baselines : ndarray, shape (n_leads,)
        Digital value of 0 mV.
    age : float or None
        Age in years; None when the header gives none (``NaN``, ``Unknown``).
    sex : {'M', 'F'} or None
    dx_codes : tuple of str
        SNOMED CT codes of the ``#Dx`` line, in order, without repeats; empty when unlabelled.
    has_dx : bool
        Whether the header has a ``#Dx`` line at all.
    patient_id : str or None
        The patient's identifier from a ``#Patient ID:`` comment (see :data:`PATIENT_ID_FIELDS`); None when
        the header gives none, as in every source of the 2020 challenge.
    """

    record_name: str
    header_path: Path
    signal_path: Path
    sfreq: float
    n_samples: int
    lead_names: tuple[str, ...]
    gains: np.ndarray = field(repr=False)
    baselines: np.ndarray = field(repr=False)
    age: float | None = None
    sex: str | None = None
    dx_codes: tuple[str, ...] = ()
    has_dx: bool = False
    patient_id: str | None = None

    @property
    def n_leads(self) -> int:
        return len(self.lead_names)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sfreq


@dataclass(frozen=True, eq=False)
class ECGRecord:
    """A record read into memory.

    Attributes
    ----------
    header : ECGHeader
    signal : ndarray of float32, shape (n_leads, n_times)
        Millivolts, leads in the order of ``lead_names``.
    sfreq : float
        Sampling frequency of ``signal`` (differs from ``header.sfreq`` after resampling).
    lead_names : tuple of str
    """

    header: ECGHeader
    signal: np.ndarray
    sfreq: float
    lead_names: tuple[str, ...]

    @property
    def record_name(self) -> str:
        return self.header.record_name

    @property
    def zero_leads(self) -> tuple[str, ...]:
        """Leads whose samples are all zero."""
        return tuple(name for name, z in zip(self.lead_names, zero_leads(self.signal), strict=True) if z)


def _header_error(path: Path, line_no: int | None, field_name: str, message: str) -> HeaderError:
    where = f"{path}" if line_no is None else f"{path}, line {line_no}"
    return HeaderError(f"{where}: field '{field_name}': {message}")


def parse_comment_fields(lines: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Fields of the ``#Key: value`` comment lines, keyed by lower-case key, with their line numbers."""
    fields: dict[str, tuple[int, str]] = {}
    for line_no, line in enumerate(lines, start=1):
        match = _COMMENT_FIELD.match(line.strip())
        if match:
            key = re.sub(r"\s+", " ", match.group(1)).lower()
            fields.setdefault(key, (line_no, match.group(2).strip()))
    return fields


def _parse_dx(path: Path, line_no: int, value: str) -> tuple[str, ...]:
    codes: list[str] = []
    for token in value.split(","):
        code = token.strip()
        if not code:
            continue  # empty list, or a trailing comma
        if not _SNOMED_CODE.match(code):
            raise _header_error(path, line_no, "Dx", f"{code!r} is not a SNOMED CT code (digits expected)")
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def read_dx_codes(path: str | os.PathLike) -> tuple[str, ...] | None:
    """SNOMED CT codes of a header's ``#Dx`` line, or None when it has no ``#Dx`` line.

    Only the comment lines are read, so this works on label-only header files too.
    """
    path = Path(path)
    lines = _read_lines(path)
    fields = parse_comment_fields(lines)
    if "dx" not in fields:
        return None
    line_no, value = fields["dx"]
    return _parse_dx(path, line_no, value)


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise HeaderError(f"{path}: header file not found") from None


def _parse_age(path: Path, line_no: int, value: str) -> float | None:
    if value.strip().lower() in _MISSING:
        return None
    try:
        age = float(value)
    except ValueError:
        raise _header_error(path, line_no, "Age", f"{value!r} is not a number of years") from None
    if np.isnan(age):
        return None
    if not 0 <= age <= 130:
        # Some sources code unknown or censored ages with sentinels (-1, 300): keep the record, drop the age.
        logger.warning(
            "%s, line %d: field 'Age': %r is not an age in years; read as unknown", path, line_no, value
        )
        return None
    return age


def _parse_sex(path: Path, line_no: int, value: str) -> str | None:
    v = value.strip().lower()
    if v in _MISSING:
        return None
    if v in ("m", "male"):
        return "M"
    if v in ("f", "female"):
        return "F"
    raise _header_error(path, line_no, "Sex", f"{value!r} is not Male, Female or Unknown")


def _parse_float(path: Path, line_no: int, field_name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise _header_error(path, line_no, field_name, f"{value!r} is not a number") from None


def _parse_int(path: Path, line_no: int, field_name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _header_error(path, line_no, field_name, f"{value!r} is not an integer") from None


def read_header(path: str | os.PathLike) -> ECGHeader:
    """Parse a challenge header file.

    Parameters
    ----------
    path : path
        The ``.hea`` file.

    Returns
    -------
    ECGHeader

    Raises
    ------
    HeaderError
        When a field is missing or malformed; the message names the file, the line and the field.
    """
    path = Path(path)
    lines = _read_lines(path)
    content = [
        (n, line.strip())
        for n, line in enumerate(lines, start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not content:
        raise _header_error(path, None, "record line", "the header is empty")
    line_no, record_line = content[0]
    parts = record_line.split()
    if len(parts) < 4:
        raise _header_error(
            path, line_no, "record line", f"expected 'name n_leads sfreq n_samples ...', got {record_line!r}"
        )
    record_name = parts[0]
    if "/" in record_name:
        raise _header_error(
            path, line_no, "record name", f"multi-segment records are not supported: {record_name!r}"
        )
    # Georgia 2020 headers name the record "E00001.mat"; the record is "E00001".
    if record_name.lower().endswith(".mat"):
        record_name = record_name[:-4]
    n_leads = _parse_int(path, line_no, "number of signals", parts[1])
    # "500" or "500/..." (counter frequency) or "500(0)" (base counter value)
    sfreq = _parse_float(path, line_no, "sampling frequency", re.split(r"[/(]", parts[2])[0])
    if sfreq <= 0:
        raise _header_error(path, line_no, "sampling frequency", f"{parts[2]!r} must be positive")
    n_samples = _parse_int(path, line_no, "number of samples", parts[3])
    if n_samples <= 0:
        raise _header_error(path, line_no, "number of samples", f"{parts[3]!r} must be positive")
    signal_lines = content[1:]
    if n_leads <= 0 or len(signal_lines) < n_leads:
        raise _header_error(
            path,
            line_no,
            "number of signals",
            f"the record line announces {n_leads} signals, {len(signal_lines)} signal lines follow",
        )

    file_names: list[str] = []
    lead_names: list[str] = []
    gains: list[float] = []
    baselines: list[float] = []
    for line_no, line in signal_lines[:n_leads]:
        fields = line.split()
        if len(fields) < 3:
            raise _header_error(
                path, line_no, "signal line", f"expected 'file format gain/units ...', got {line!r}"
            )
        file_names.append(fields[0])
        fmt = fields[1].split("+")[0].split("x")[0].split(":")[0]
        if fmt != "16":
            raise _header_error(
                path, line_no, "format", f"{fields[1]!r}: only 16-bit samples (format 16) are supported"
            )
        match = _GAIN_FIELD.match(fields[2])
        if not match:
            raise _header_error(path, line_no, "gain", f"{fields[2]!r} is not 'gain(baseline)/units'")
        gain = _parse_float(path, line_no, "gain", match.group(1))
        if gain <= 0:
            raise _header_error(path, line_no, "gain", f"{fields[2]!r}: the ADC gain must be positive")
        units = (match.group(3) or "mV").lower()
        if units not in _UNITS_IN_MV:
            raise _header_error(path, line_no, "units", f"{match.group(3)!r}: expected mV, uV or V")
        # gain is ADC units per physical unit; per millivolt it is gain / (physical unit in mV)
        gains.append(gain / _UNITS_IN_MV[units])
        adc_zero = _parse_int(path, line_no, "ADC zero", fields[4]) if len(fields) > 4 else 0
        # WFDB: the baseline defaults to the ADC zero when the gain field gives none
        baselines.append(int(match.group(2)) if match.group(2) is not None else adc_zero)
        lead_names.append(" ".join(fields[8:]) if len(fields) > 8 else f"lead{len(lead_names) + 1}")
    if len(set(file_names)) != 1:
        raise _header_error(
            path,
            signal_lines[0][0],
            "file name",
            f"all leads must be in one file, got {sorted(set(file_names))}",
        )
    signal_file = file_names[0]
    if not signal_file.lower().endswith(".mat"):
        raise _header_error(
            path, signal_lines[0][0], "file name", f"{signal_file!r}: expected a .mat signal file"
        )

    comments = parse_comment_fields(lines)
    age = _parse_age(path, *comments["age"]) if "age" in comments else None
    sex = _parse_sex(path, *comments["sex"]) if "sex" in comments else None
    has_dx = "dx" in comments
    dx_codes = _parse_dx(path, *comments["dx"]) if has_dx else ()
    patient_id = None
    for key in PATIENT_ID_FIELDS:
        if key in comments and comments[key][1].strip().lower() not in _MISSING:
            patient_id = comments[key][1].strip()
            break

    return ECGHeader(
        record_name=record_name,
        header_path=path,
        signal_path=path.parent / signal_file,
        sfreq=sfreq,
        n_samples=n_samples,
        lead_names=tuple(lead_names),
        gains=np.asarray(gains, dtype=np.float64),
        baselines=np.asarray(baselines, dtype=np.float64),
        age=age,
        sex=sex,
        dx_codes=dx_codes,
        has_dx=has_dx,
        patient_id=patient_id,
    )


def read_digital(header: ECGHeader) -> np.ndarray:
    """The raw digital samples of a record, shape (n_leads, n_samples), as stored (int16)."""
    import scipy.io

    path = header.signal_path
    if not path.is_file():
        raise HeaderError(f"{path}: signal file not found (named by {header.header_path})")
    try:
        content = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for damaged files
        raise HeaderError(f"{path}: not a readable MATLAB file ({err})") from None
    if "val" not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise HeaderError(f"{path}: field 'val': no 'val' array in the MATLAB file (found {keys})")
    val = np.asarray(content["val"])
    if val.shape != (header.n_leads, header.n_samples):
        raise HeaderError(
            f"{path}: field 'val': shape {val.shape}, but {header.header_path} announces "
            f"{header.n_leads} leads of {header.n_samples} samples"
        )
    return val


def to_millivolts(header: ECGHeader, digital: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Convert digital samples to millivolts: ``(digital - baseline) / gain``, per lead."""
    out = (digital.astype(np.float64) - header.baselines[:, None]) / header.gains[:, None]
    return out.astype(dtype, copy=False)


def pick_leads(header: ECGHeader, leads: Sequence[str]) -> list[int]:
    """Indices of ``leads`` in the header (names compared case-insensitively)."""
    lower = [name.lower() for name in header.lead_names]
    indices = []
    for lead in leads:
        if lead.lower() not in lower:
            raise HeaderError(
                f"{header.header_path}: field 'description': lead {lead!r} not found in {header.lead_names}"
            )
        indices.append(lower.index(lead.lower()))
    return indices


def read_record(
    path: str | os.PathLike,
    sfreq: float | None = None,
    leads: Sequence[str] | None = STANDARD_LEADS,
    dtype: np.dtype | type = np.float32,
) -> ECGRecord:
    """Read a record's signal in millivolts.

    Parameters
    ----------
    path : path
        The ``.hea`` file.
    sfreq : float or None
        Resample to this frequency (100 Hz in Phan et al.) with the package's anti-aliased polyphase
        resampler (:func:`kdsleep.data.resample`); None keeps the record's own.
    leads : sequence of str or None
        Leads to return, in this order (the 12 standard leads by default); None returns the header's leads
        as they are.
    dtype : numpy dtype
        Type of the returned samples.

    Returns
    -------
    ECGRecord
    """
    header = read_header(path)
    signal = to_millivolts(header, read_digital(header), dtype)
    lead_names = header.lead_names
    if leads is not None:
        indices = pick_leads(header, leads)
        signal = signal[indices]
        lead_names = tuple(header.lead_names[i] for i in indices)
    out_sfreq = header.sfreq
    if sfreq is not None and sfreq != header.sfreq:
        signal = resample(signal, header.sfreq, float(sfreq))
        out_sfreq = float(sfreq)
    return ECGRecord(
        header=header, signal=np.ascontiguousarray(signal), sfreq=out_sfreq, lead_names=lead_names
    )


def list_records(directory: str | os.PathLike) -> list[Path]:
    """Header files (``*.hea``) of a folder, sorted by name; hidden files are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HeaderError(f"{directory}: folder not found")
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() == ".hea" and not p.name.startswith(".") and p.is_file()
    )


def zero_leads(signal: np.ndarray) -> np.ndarray:
    """Per lead, whether every sample is zero; ``signal`` has shape (n_leads, n_times)."""
    return np.all(np.asarray(signal) == 0, axis=-1)


def read_patient_map(path: str | os.PathLike) -> dict[str, str]:
    """Record name → patient identifier, from a CSV table.

    Two layouts are read: columns ``record`` and ``patient`` (any other columns are ignored), or PTB-XL's
    ``ptbxl_database.csv`` with ``ecg_id`` and ``patient_id``, whose records the 2020 challenge names
    ``HR`` + the ECG id on five digits (``ecg_id`` 1 is ``HR00001``; patient ids such as ``15709.0`` are
    read as ``15709``).

    Raises
    ------
    HeaderError
        When the file is missing, lacks the columns, or has an empty or conflicting row; the message names
        the file, the line and the field.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise HeaderError(f"{path}: patient table not found") from None
    if not rows:
        raise _header_error(path, 1, "columns", "the file is empty")
    columns = [c.strip().lower() for c in rows[0]]
    if "record" in columns and "patient" in columns:
        record_col, patient_col, ptbxl = columns.index("record"), columns.index("patient"), False
    elif "ecg_id" in columns and "patient_id" in columns:
        record_col, patient_col, ptbxl = columns.index("ecg_id"), columns.index("patient_id"), True
    else:
        raise _header_error(
            path,
            1,
            "columns",
            f"expected 'record' and 'patient' (or PTB-XL's 'ecg_id' and 'patient_id'), got {rows[0]}",
        )
    mapping: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(record_col, patient_col):
            raise _header_error(path, line_no, "columns", f"{len(row)} fields, expected {len(columns)}")
        record, patient = row[record_col].strip(), row[patient_col].strip()
        if ptbxl:
            try:
                record = f"HR{int(float(record)):05d}"
                patient = str(int(float(patient)))
            except ValueError:
                raise _header_error(
                    path,
                    line_no,
                    "ecg_id/patient_id",
                    f"{row[record_col]!r}, {row[patient_col]!r} are not numbers",
                ) from None
        if not record or patient.lower() in _MISSING:
            raise _header_error(path, line_no, "record/patient", f"empty value in {row}")
        if mapping.get(record, patient) != patient:
            raise _header_error(
                path,
                line_no,
                "patient",
                f"record {record!r} given two patients, {mapping[record]!r} and {patient!r}",
            )
        mapping[record] = patient
    return mapping
