"""Score a folder of classifier outputs against a folder of labelled headers (PhysioNet/CinC 2020).

:func:`score_folder` pairs each header ``LABEL_DIR/<record>.hea`` (its ``#Dx:`` line) with the output file
``OUTPUT_DIR/<record>.csv`` and computes the challenge's figures with :func:`kdsleep.ecg12.scoring.evaluate`.

Where this differs from the official evaluation code (``evaluate_12ECG_score.py``):

- A missing output file is an error, as in the official code.
- A malformed output file is an error (``strict=True``, the default). With ``strict=False`` it is read as
  the official code reads it (all negative, unreadable entries as 0), with a warning naming the file.
- Checks the official code does not make, each an error (``strict``) or a warning naming the file
  (``strict=False``), see :func:`check_output_content`: a probability outside [0, 1] or not finite (the
  official code scores 7.5 or ``inf`` as given; here they are clipped to [0, 1] when not strict); a
  ``#record`` line naming another record (the official code ignores that line); the same class code in two
  columns (the official code keeps one of the columns; here they are merged, positive if either is,
  mean probability); an output file naming none of the scored classes (the official code scores it as all
  negative).
- An output file for which LABEL_DIR holds no header is named in a warning (the official code never looks
  at it).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep.ecg12.reader import HeaderError, read_dx_codes
from kdsleep.ecg12.scoring import (
    ChallengeOutputError,
    ChallengeScores,
    ScoringTables,
    evaluate,
    read_challenge_output,
)

__all__ = ["FolderScores", "ScoreFolderError", "check_output_content", "score_folder"]

logger = logging.getLogger(__name__)


class ScoreFolderError(ValueError):
    """A folder that cannot be scored: missing files, unreadable headers or malformed outputs."""


@dataclass(frozen=True)
class FolderScores:
    """The figures of a scored folder, with what was scored."""

    scores: ChallengeScores
    records: tuple[str, ...]
    #: Output files without a header in the label folder (not scored).
    unlabelled_outputs: tuple[Path, ...]


def _is_visible_file(path: Path, suffix: str) -> bool:
    return path.is_file() and path.suffix.lower() == suffix and not path.name.startswith(".")


def check_output_content(path: str | os.PathLike[str], tables: ScoringTables, strict: bool = True) -> None:
    """Checks of an output file beyond its format, which the official evaluation does not make.

    Raises :class:`~kdsleep.ecg12.scoring.ChallengeOutputError` naming the file and the problem
    (``strict``), or logs a warning naming them (``strict=False``). The problems: a ``#record`` line naming
    another record than the file's name; a class code in two columns; a probability that is not a finite
    number in [0, 1]; no scored class among the file's codes. A file that cannot be read or parsed is left
    to :func:`~kdsleep.ecg12.scoring.read_challenge_output`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    problems: list[str] = []
    comments = [(n, line) for n, line in lines if line.startswith("#")]
    if comments:
        n, line = comments[0]
        named = line[1:].strip().split()[0] if line[1:].strip() else ""
        if named and named != path.stem:
            problems.append(f"line {n}: '#{named}' names another record than the file's ({path.stem})")
    content = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if len(content) >= 3:
        codes = [cell.strip() for cell in content[0][1].split(",")]
        repeated = sorted(code for code, count in Counter(codes).items() if count > 1)
        if repeated:
            problems.append(f"line {content[0][0]}: class code(s) {repeated} appear in more than one column")
        for k, token in enumerate(cell.strip() for cell in content[2][1].split(",")):
            try:
                value = float(token)
            except ValueError:
                continue  # the format check reports it
            if not (np.isfinite(value) and 0.0 <= value <= 1.0):
                code = codes[k] if k < len(codes) else "?"
                problems.append(
                    f"line {content[2][0]}, field {k + 1} ({code}): probability {token} is not in [0, 1]"
                )
                break
        if not any(code in tables.representative for code in codes):
            problems.append(
                f"line {content[0][0]}: none of its {len(codes)} class codes is among the "
                f"{tables.n_classes} scored classes"
            )
    for problem in problems:
        if strict:
            raise ChallengeOutputError(f"{path}: {problem}")
        logger.warning("%s: %s", path, problem)


def score_folder(
    label_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    tables: ScoringTables,
    *,
    strict: bool = True,
) -> FolderScores:
    """Score every header of ``label_dir`` against its output file in ``output_dir``.

    Parameters
    ----------
    label_dir : path-like
        One header (``.hea``) per recording, with a ``#Dx:`` line of SNOMED CT codes.
    output_dir : path-like
        One CSV per recording, same name, in the challenge's format.
    tables : ScoringTables
        The challenge's scored classes and weights.
    strict : bool
        Malformed or implausible output files are errors (default); ``False`` reads them as the official
        evaluation does, with a warning naming the file (see the module documentation).

    Raises
    ------
    ScoreFolderError
        When a folder is missing, holds no header, an output file is missing, a header has no ``#Dx:`` line,
        or (``strict``) an output file is malformed.
    """
    label_dir, output_dir = Path(label_dir), Path(output_dir)
    for name, folder in (("LABEL_DIR", label_dir), ("OUTPUT_DIR", output_dir)):
        if not folder.is_dir():
            raise ScoreFolderError(f"{name} {folder} is not a folder")
    label_files = sorted(p for p in label_dir.iterdir() if _is_visible_file(p, ".hea"))
    if not label_files:
        raise ScoreFolderError(f"no header files (.hea) in LABEL_DIR {label_dir}")
    missing = [p for p in label_files if not (output_dir / (p.stem + ".csv")).is_file()]
    if missing:
        shown = ", ".join(p.stem + ".csv" for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ScoreFolderError(
            f"{len(missing)} of {len(label_files)} recordings have no output file in {output_dir}: {shown} "
            f"(expected one CSV per header, e.g. {missing[0].stem}.csv for {missing[0].name})"
        )
    stems = {p.stem for p in label_files}
    unlabelled = tuple(
        sorted(p for p in output_dir.iterdir() if _is_visible_file(p, ".csv") and p.stem not in stems)
    )
    if unlabelled:
        shown = ", ".join(p.name for p in unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        logger.warning(
            "%s: %d output file(s) have no header in %s and are not scored: %s",
            output_dir,
            len(unlabelled),
            label_dir,
            shown,
        )

    labels = np.zeros((len(label_files), tables.n_classes), dtype=bool)
    binary = np.zeros_like(labels)
    scalar = np.zeros(labels.shape, dtype=np.float64)
    for i, label_file in enumerate(label_files):
        try:
            codes = read_dx_codes(label_file)
        except HeaderError as err:
            raise ScoreFolderError(str(err)) from None
        if codes is None:
            raise ScoreFolderError(f"{label_file}: field 'Dx': no '#Dx:' line with the recording's diagnoses")
        labels[i] = tables.encode(codes)
        output_file = output_dir / (label_file.stem + ".csv")
        try:
            binary[i], scalar[i] = read_challenge_output(output_file, tables, strict=strict)
            check_output_content(output_file, tables, strict=strict)
        except ChallengeOutputError as err:
            raise ScoreFolderError(str(err)) from None
    # not strict: what the warnings said, out-of-range probabilities are read as their nearest bound
    scalar = np.clip(np.nan_to_num(scalar, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    logger.debug("scored %d recordings over %d classes", len(label_files), tables.n_classes)
    return FolderScores(
        scores=evaluate(labels, binary, scalar, tables),
        records=tuple(p.stem for p in label_files),
        unlabelled_outputs=unlabelled,
    )
