"""NSRR XML hypnograms (SHHS, MESA, ...): the Compumedics Profusion format and the NSRR XML-events format.

- Profusion (``*-profusion.xml``): ``<CMPStudyConfig>`` with ``<EpochLength>`` and a ``<SleepStages>``
  list of one integer code per epoch (0 W, 1-4 R&K, 5 REM, 6 movement, 9 unscored).
- XML events (``*-nsrr.xml``): ``<PSGAnnotation>`` with ``<ScoredEvent>`` elements; stage events have
  ``<EventType>Stages|Stages</EventType>``, an ``<EventConcept>`` such as ``Stage 2 sleep|2``, and a
  ``<Start>`` and ``<Duration>`` in seconds.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from kdsleep.data.recording import Hypnogram
from kdsleep.data.stages import parse_stage_labels

__all__ = ["read_nsrr_xml"]

logger = logging.getLogger(__name__)


def _text(element: ET.Element | None) -> str:
    return "" if element is None or element.text is None else element.text.strip()


def read_nsrr_xml(path: str | os.PathLike[str], *, epoch_length: float | None = None) -> Hypnogram:
    """Read the sleep stages of an NSRR XML annotation file (either format, detected from the content).

    Parameters
    ----------
    path : path-like
        XML file.
    epoch_length : float, optional
        Overrides the file's ``<EpochLength>`` (30 s in SHHS).

    Raises
    ------
    ValueError
        For a file that is not XML, has no stages, or has a stage event not on the epoch grid.
    UnknownStageLabelError
        For a stage code or concept the NSRR mappings do not know.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a readable XML file ({err})") from None
    file_epoch = _text(root.find(".//EpochLength"))
    if epoch_length is None:
        try:
            epoch_length = float(file_epoch) if file_epoch else 30.0
        except ValueError:
            raise ValueError(f"{path}: <EpochLength> is {file_epoch!r}, expected seconds") from None

    stage_codes = root.findall(".//SleepStages/SleepStage")
    if stage_codes:
        codes = [_text(e) for e in stage_codes]
        stages = parse_stage_labels(codes, "profusion", source=path)
        return Hypnogram(stages, epoch_length, 0.0, path, tuple(codes))

    onsets, durations, concepts = [], [], []
    for event in root.iter("ScoredEvent"):
        event_type = _text(event.find("EventType"))
        concept = _text(event.find("EventConcept"))
        if not event_type.lower().startswith("stages"):
            continue  # respiratory events, arousals, desaturations
        try:
            onsets.append(float(_text(event.find("Start"))))
            durations.append(float(_text(event.find("Duration"))))
        except ValueError:
            raise ValueError(
                f"{path}: stage event {concept!r} has a non-numeric <Start> or <Duration>"
            ) from None
        concepts.append(concept)
    if not concepts:
        raise ValueError(f"{path}: no <SleepStages> (Profusion) and no stage <ScoredEvent> (NSRR XML) found")
    stages = parse_stage_labels(concepts, "nsrr-events", source=path)
    return Hypnogram.from_events(
        onsets,
        np.asarray(durations),
        stages,
        epoch_length,
        path,
        [c.split("|")[0] for c in concepts],
        onset=0.0,
    )
