"""A collection of 12-lead records checked before cross-validation: all-zero leads, implausible gains, and
duplicated records (and which copy to keep).

:func:`scan_records` reads every record of some folders and reports all-zero leads, duplicates and amplitudes
that suggest a wrong header gain; :func:`find_duplicates` groups identical records and says which copy to keep
(:func:`keep_order`), so that cross-validation can drop the others before making folds. Single records, and
the record → patient table, are read by :mod:`kdsleep.ecg12.reader`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kdsleep.ecg12.reader import (
    ECGHeader,
    list_records,
    read_digital,
    read_header,
    to_millivolts,
    zero_leads,
)

__all__ = [
    "PLAUSIBLE_AMPLITUDE_MV",
    "DuplicateGroup",
    "ScanReport",
    "find_duplicates",
    "keep_order",
    "scan_records",
    "signal_digest",
    "typical_amplitude",
]

logger = logging.getLogger(__name__)


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
