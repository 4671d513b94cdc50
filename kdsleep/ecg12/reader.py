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
- all-zero leads and duplicated records (identical samples under different names), found by
  :func:`scan_records` and :func:`find_duplicates`; :func:`find_duplicates` also says which copy of each
  group to keep (:func:`keep_order`), so that cross-validation can drop the others before making folds.

Patients: none of the 2020 challenge's headers names the patient (their comment lines are Age, Sex, Dx, Rx,
Hx and Sx), although several sources hold more than one record per patient (PTB, INCART, PTB-XL). A header
comment ``#Patient ID:`` (or ``#Patient:``, ``#Subject ID:``, ``#Subject:``) is read when present, and
:func:`read_patient_map` reads a record → patient table, such as PTB-XL's ``ptbxl_database.csv``.
"""

from __future__ import annotations

import csv
import hashlib
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


#: Range of typical ECG amplitudes in mV (see :func:`typical_amplitude`) outside which a header's gain is suspect.
PLAUSIBLE_AMPLITUDE_MV: tuple[float, float] = (0.02, 20.0)


def typical_amplitude(signal_mv: np.ndarray) -> float:
    """Median over non-zero leads of the 99th percentile of |signal - lead median|, in the signal's units.

    About 0.3 to 3 mV for a 12-lead ECG in millivolts (QRS complexes); NaN when every lead is zero.
    """
    signal_mv = np.asarray(signal_mv, dtype=np.float64)
    keep = ~zero_leads(signal_mv)
    if not np.any(keep):
        return float("nan")
    deviation = np.abs(signal_mv[keep] - np.median(signal_mv[keep], axis=-1, keepdims=True))
    return float(np.median(np.percentile(deviation, 99, axis=-1)))


def signal_digest(digital: np.ndarray) -> str:
    """Digest of the digital samples (and their shape), equal for records with identical signals."""
    digital = np.ascontiguousarray(digital.astype(np.int64, copy=False))
    h = hashlib.sha1(repr(digital.shape).encode())
    h.update(digital.tobytes())
    return h.hexdigest()


@dataclass
class ScanReport:
    """What :func:`scan_records` found.

    Attributes
    ----------
    headers : list of ECGHeader
        Every record read, in the order scanned.
    zero_leads : dict of str to tuple of str
        Header path → the names of its all-zero leads, for records that have some.
    duplicates : list of tuple of Path
        Groups of header paths whose signals are identical sample for sample, each ordered by
        :func:`keep_order` (the copy to keep first).
    amplitudes : dict of str to float
        Header path → typical amplitude in mV (median over the non-zero leads of the 99th percentile of
        the absolute deviation from the lead's median).
    implausible_amplitude : dict of str to float
        The records whose typical amplitude lies outside :data:`PLAUSIBLE_AMPLITUDE_MV`: the gain in their
        header is probably wrong.
    """

    headers: list[ECGHeader]
    zero_leads: dict[str, tuple[str, ...]]
    duplicates: list[tuple[Path, ...]]
    amplitudes: dict[str, float] = field(default_factory=dict)
    implausible_amplitude: dict[str, float] = field(default_factory=dict)

    def duplicate_paths(self) -> set[Path]:
        """Header paths of every record but the kept one of each duplicate group (the ones to drop)."""
        return {p for group in self.duplicates for p in group[1:]}

    def summary(self) -> str:
        lines = [f"{len(self.headers)} records"]
        for path, leads in self.zero_leads.items():
            lines.append(f"all-zero leads in {path}: {', '.join(leads)}")
        for group in self.duplicates:
            lines.append("identical signals: " + ", ".join(str(p) for p in group))
        for path, amplitude in self.implausible_amplitude.items():
            lines.append(
                f"implausible amplitude in {path}: {amplitude:.3g} mV (check the gain in its header)"
            )
        return "\n".join(lines)


def scan_records(
    directories: str | os.PathLike | Iterable[str | os.PathLike], progress: bool = True
) -> ScanReport:
    """Read every record of one or more folders, reporting all-zero leads and duplicated records.

    Parameters
    ----------
    directories : path or iterable of paths
    progress : bool
        Show a progress bar.

    Returns
    -------
    ScanReport
    """
    from tqdm.auto import tqdm

    if isinstance(directories, (str, os.PathLike)):
        directories = [directories]
    paths = [p for d in directories for p in list_records(d)]
    headers: list[ECGHeader] = []
    zero: dict[str, tuple[str, ...]] = {}
    by_digest: dict[str, list[Path]] = {}
    amplitudes: dict[str, float] = {}
    implausible: dict[str, float] = {}
    for path in tqdm(paths, desc="reading ECG records", unit="record", disable=not progress):
        header = read_header(path)
        digital = read_digital(header)
        headers.append(header)
        flat = zero_leads(digital - header.baselines[:, None])
        if np.any(flat):
            zero[str(path)] = tuple(n for n, z in zip(header.lead_names, flat, strict=True) if z)
            logger.warning("%s: all-zero leads %s", path, ", ".join(zero[str(path)]))
        by_digest.setdefault(signal_digest(digital), []).append(path)
        amplitude = typical_amplitude(to_millivolts(header, digital, np.float64))
        amplitudes[str(path)] = amplitude
        low, high = PLAUSIBLE_AMPLITUDE_MV
        if not low <= amplitude <= high:
            implausible[str(path)] = amplitude
            logger.warning(
                "%s: typical amplitude %.3g mV is outside %s-%s mV; is the gain in the header right?",
                path,
                amplitude,
                low,
                high,
            )
    by_path = {h.header_path: h for h in headers}
    duplicates = [
        tuple(sorted(group, key=lambda p: keep_order(by_path[p])))
        for group in by_digest.values()
        if len(group) > 1
    ]
    for group in duplicates:
        logger.warning("identical signals in %s", ", ".join(str(p) for p in group))
    return ScanReport(
        headers=headers,
        zero_leads=zero,
        duplicates=duplicates,
        amplitudes=amplitudes,
        implausible_amplitude=implausible,
    )


# ---------------------------------------------------------------------------------------------------------
# Duplicates and patients, for leakage-free cross-validation
# ---------------------------------------------------------------------------------------------------------


def keep_order(header: ECGHeader) -> tuple[bool, str, str]:
    """Sort key that puts the copy to keep first in a group of duplicated records.

    A labelled copy (non-empty ``#Dx``) comes before an unlabelled one, then record names and finally header
    paths in lexicographic order; the choice depends only on the records, not on the order they were read.
    """
    return (not header.dx_codes, header.record_name, str(header.header_path))


@dataclass(frozen=True)
class DuplicateGroup:
    """Records with identical digital samples: one is kept, the others dropped.

    Attributes
    ----------
    kept : ECGHeader
        The copy kept (first by :func:`keep_order`).
    dropped : tuple of ECGHeader
        The other copies.
    same_labels : bool
        Whether every labelled copy has the same set of diagnoses (unlabelled copies are not compared).
    """

    kept: ECGHeader
    dropped: tuple[ECGHeader, ...]
    same_labels: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "kept": str(self.kept.header_path),
            "dropped": [str(h.header_path) for h in self.dropped],
            "same_labels": self.same_labels,
        }


def find_duplicates(paths: Iterable[str | os.PathLike]) -> list[DuplicateGroup]:
    """Groups of records whose digital samples (and shape) are identical, with the copy to keep.

    Parameters
    ----------
    paths : iterable of paths
        Header files (``.hea``); each record's ``.mat`` file is read.

    Returns
    -------
    list of DuplicateGroup
        One per group of two or more identical records, sorted by the kept record's header path; records
        that occur once are not listed.
    """
    by_digest: dict[str, list[ECGHeader]] = {}
    for path in paths:
        header = read_header(path)
        by_digest.setdefault(signal_digest(read_digital(header)), []).append(header)
    groups = []
    for members in by_digest.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=keep_order)
        label_sets = {frozenset(h.dx_codes) for h in members if h.dx_codes}
        groups.append(DuplicateGroup(members[0], tuple(members[1:]), len(label_sets) <= 1))
    return sorted(groups, key=lambda g: str(g.kept.header_path))


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
