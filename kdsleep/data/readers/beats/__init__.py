"""Heartbeat times from the files people hold: beat annotations, R-peak lists, RR exports, an ECG channel.

Every reader returns one :class:`BeatSeries`: beat times in seconds after the recording start, with the
recording's wall-clock start and length where the file has them. Formats (``format=``):

``"wfdb"``
    A WFDB annotation file with any extension (slpdb ``.ecg``, MIT-BIH ``.atr``, detector output ``.qrs``,
    ...). Only heartbeat codes count (:data:`~kdsleep.data.readers.wfdb_io.BEAT_SYMBOLS`: ``N``, ``V``,
    ``A``, ...); rhythm, noise and comment annotations are ignored. The record's ``.hea`` header, when it
    lies beside the file, gives the sampling rate (if the annotation file lacks it), the start date and time
    and the record length.
``"peaks"``
    A text or CSV file of R-peak times in seconds, one per line (or one column of a table).
``"rr"``
    A text or CSV file of RR intervals, one per line (or one column): the text export of chest straps
    (one RR in milliseconds per line, with or without a header line, as Polar H10 apps write) and tables
    of RR in seconds. The unit is read from the header (``RR [ms]``, ``rr_s``), given by ``rr_unit``, or
    decided by magnitude (a median above 20 means milliseconds: a resting RR is 0.3–2 s). The first beat
    lies at time 0 and each interval ends the next beat. Missing, zero or negative values are dropped
    without shifting the time base.
``"edf"``
    An EDF / EDF+ / BDF file with an ECG channel; R peaks are detected by
    :func:`kdsleep.data.detect_heartbeats` (slower ECGs are upsampled to 128 Hz for detection, as the
    preprocessing's ``ihr`` channel does).

:func:`detect_beats_format` chooses the format from the extension and the content: EDF/BDF by its header
bytes, a binary file (a WFDB annotation file) or one with a known annotation extension as WFDB, and a text
file as peak times when its values rise steadily through the night, else as RR intervals.

Checks common to all formats: at least two beats (else :class:`BeatsFormatError`), strictly increasing
times (else an error naming the line or annotation), and RR intervals outside the physiological range
(``min_rr``–``max_rr``, 0.3–2.0 s by default) counted in :attr:`BeatSeries.n_out_of_range` and reported in
a warning; such intervals are masked when the heart rate is computed
(:func:`kdsleep.data.heart_rate.rr_intervals`), never used.

Modules: :mod:`~kdsleep.data.readers.beats.series` (the series and the common checks), one module per
format (:mod:`~kdsleep.data.readers.beats.wfdb_annotations`, :mod:`~kdsleep.data.readers.beats.text`,
:mod:`~kdsleep.data.readers.beats.ecg`) and :mod:`~kdsleep.data.readers.beats.dispatch` (format detection
and :func:`read_beats`).
"""

from __future__ import annotations

from kdsleep.data.readers.beats.dispatch import detect_beats_format, read_beats
from kdsleep.data.readers.beats.ecg import read_ecg_beats
from kdsleep.data.readers.beats.series import BEAT_FORMATS, BeatSeries, BeatsFormatError
from kdsleep.data.readers.beats.text import read_peak_times, read_rr_intervals
from kdsleep.data.readers.beats.wfdb_annotations import read_wfdb_beat_file

__all__ = [
    "BEAT_FORMATS",
    "BeatSeries",
    "BeatsFormatError",
    "detect_beats_format",
    "read_beats",
    "read_ecg_beats",
    "read_peak_times",
    "read_rr_intervals",
    "read_wfdb_beat_file",
]
