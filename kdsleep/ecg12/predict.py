"""Classify 12-lead records with a fine-tuned gate-fusion classifier and write the challenge's output files.

One CSV per record (``#record``, class codes, binary outputs, probabilities), which ``kdsleep ecg12 score``
and the official 2020 evaluation read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep._torch import flush_denormals
from kdsleep.ecg12.finetune import load_classifier, predict_probabilities
from kdsleep.ecg12.pretrain import read_signals
from kdsleep.ecg12.scoring import write_challenge_output

logger = logging.getLogger(__name__)

__all__ = ["Predictions", "predict_folder"]


@dataclass
class Predictions:
    """Outputs of :func:`predict_folder`.

    Attributes
    ----------
    record_names : list of str
    classes : list of str
    probabilities : ndarray, shape (n_records, n_classes)
    binary : ndarray of bool, shape (n_records, n_classes)
    files : list of Path
    """

    record_names: list[str]
    classes: list[str]
    probabilities: np.ndarray
    binary: np.ndarray
    files: list[Path]


@flush_denormals()  # denormal activations and gradients made CPU steps up to fifty times slower
def predict_folder(
    checkpoint: str | os.PathLike, data_dir: str | os.PathLike, output_dir: str | os.PathLike
) -> Predictions:
    """Classify every record of ``data_dir`` and write one challenge CSV per record into ``output_dir``.

    Raises
    ------
    ValueError
        When the checkpoint is not a classifier checkpoint or carries no class codes.
    """
    model, thresholds, classes = load_classifier(checkpoint)
    if not classes:
        raise ValueError(f"{checkpoint}: field 'classes': the checkpoint names no class codes")
    records = read_signals(data_dir)
    probabilities = predict_probabilities(model, records)
    binary = probabilities >= thresholds[None, :]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for rec, b, p in zip(records, binary, probabilities, strict=True):
        path = out / f"{rec.name}.csv"
        write_challenge_output(path, rec.name, classes, b, p)
        files.append(path)
    logger.info("wrote %d output files to %s", len(files), out)
    return Predictions([r.name for r in records], list(classes), probabilities, binary, files)
