"""Readers: files in, :class:`~kdsleep.data.recording.Recording` and :class:`~kdsleep.data.recording.Hypnogram` out.

- :func:`read_edf` — EDF / EDF+ / BDF signals through mne, channel aliases and re-referencing, units;
- :func:`read_edf_hypnogram` — EDF+ stage annotations (MASS Base, HMC, Sleep-EDF);
- :func:`read_wfdb_stages`, :func:`read_wfdb_beats`, :func:`read_wfdb_record`, :func:`read_wfdb_header`,
  :func:`read_slpdb_annotations` — WFDB (slpdb); :func:`read_annotated_ecg` — one ECG lead with its expert
  beat annotations (MIT-BIH, nstdb, svdb, LUDB) for scoring a heartbeat detector;
- :func:`read_nsrr_xml` — NSRR Profusion and XML-events hypnograms;
- :func:`read_text_hypnogram` — one label per line or CSV (UCDDB);
- :func:`read_hypnogram` — any of the above hypnogram formats, chosen by file extension;
- :func:`mask_bad_epochs` — NaN and flat stretches masked with a warning.
"""

from __future__ import annotations

from kdsleep.data.readers.annotations import (
    fit_to_signal,
    hypnogram_from_annotations,
    read_edf_hypnogram,
    widen_epochs,
)
from kdsleep.data.readers.channels import (
    CHANNEL_ALIASES,
    ChannelSource,
    MissingChannelError,
    correct_ecg_polarity,
    resolve_channel,
    unit_scale_to_volts,
)
from kdsleep.data.readers.dispatch import read_hypnogram
from kdsleep.data.readers.edf import EdfFormatError, EdfHeader, read_edf, read_edf_header
from kdsleep.data.readers.nsrr import read_nsrr_xml
from kdsleep.data.readers.quality import BadSignalWarning, bad_sample_mask, mask_bad_epochs
from kdsleep.data.readers.text import read_text_hypnogram
from kdsleep.data.readers.wfdb_io import (
    BEAT_SYMBOLS,
    AnnotatedECG,
    BeatAnnotations,
    SlpdbAnnotations,
    WfdbHeader,
    read_annotated_ecg,
    read_slpdb_annotations,
    read_wfdb_beats,
    read_wfdb_header,
    read_wfdb_record,
    read_wfdb_stages,
)

__all__ = [
    "BEAT_SYMBOLS",
    "CHANNEL_ALIASES",
    "AnnotatedECG",
    "BadSignalWarning",
    "BeatAnnotations",
    "ChannelSource",
    "EdfFormatError",
    "EdfHeader",
    "MissingChannelError",
    "SlpdbAnnotations",
    "WfdbHeader",
    "bad_sample_mask",
    "correct_ecg_polarity",
    "fit_to_signal",
    "hypnogram_from_annotations",
    "mask_bad_epochs",
    "read_annotated_ecg",
    "read_edf",
    "read_edf_header",
    "read_edf_hypnogram",
    "read_hypnogram",
    "read_nsrr_xml",
    "read_text_hypnogram",
    "read_slpdb_annotations",
    "read_wfdb_beats",
    "read_wfdb_header",
    "read_wfdb_record",
    "read_wfdb_stages",
    "resolve_channel",
    "unit_scale_to_volts",
    "widen_epochs",
]
