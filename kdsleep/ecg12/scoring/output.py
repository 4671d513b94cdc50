"""The output files of the PhysioNet/CinC Challenge 2020: one per recording, holding its name, the class codes,
the binary outputs and the probabilities (:func:`write_challenge_output`, :func:`read_challenge_output`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdsleep._io import write_text_atomic
from kdsleep.ecg12.scoring.tables import SNOMED_CODE, ScoringTables

__all__ = [
    "NEGATIVE_TOKENS",
    "POSITIVE_TOKENS",
    "ChallengeOutputError",
    "read_challenge_output",
    "write_challenge_output",
]

logger = logging.getLogger(__name__)

#: Entries of the binary-output line read as positive and as negative.
POSITIVE_TOKENS = frozenset({"1", "True", "true", "T", "t"})
NEGATIVE_TOKENS = frozenset({"0", "False", "false", "F", "f"})


class ChallengeOutputError(ValueError):
    """A classifier output file does not follow the challenge's output format."""


def write_challenge_output(
    path: str | os.PathLike,
    record_name: str,
    classes: Sequence[str],
    binary_outputs: Sequence,
    scalar_outputs: Sequence,
) -> None:
    """Write one recording's outputs in the challenge's format (written atomically).

    Line 1 ``#record_name``, line 2 the class codes, line 3 the binary outputs (0/1), line 4 the
    probabilities.
    """
    binary = np.asarray(binary_outputs).ravel()
    scalar = np.asarray(scalar_outputs, dtype=np.float64).ravel()
    if not len(classes) == binary.size == scalar.size:
        raise ValueError(
            f"{len(classes)} classes, {binary.size} binary outputs and {scalar.size} probabilities: "
            "they must be as many"
        )
    lines = [
        f"#{record_name}",
        ",".join(str(c) for c in classes),
        ",".join("1" if b else "0" for b in binary),
        ",".join(f"{s:.6g}" for s in scalar),
    ]
    write_text_atomic(Path(path), "\n".join(lines) + "\n")


def read_challenge_output(
    path: str | os.PathLike, tables: ScoringTables, strict: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read one output file of the challenge's format onto ``tables.classes``.

    Blank lines and lines starting with ``#`` are skipped; the next three lines hold the class codes, the
    binary outputs and the probabilities, comma-separated. Codes that are not scored are ignored; classes
    the file does not name are negative with probability 0. Equivalent codes are merged: positive if any is
    positive, mean probability. NaN probabilities count as 0.

    Parameters
    ----------
    path : path
    tables : ScoringTables
    strict : bool
        When True (default), formatting errors raise :class:`ChallengeOutputError`. When False, they are
        logged and the file is read as all-negative, and unrecognised binary or probability entries as 0,
        as the official evaluation does.

    Returns
    -------
    binary : ndarray of bool, shape (tables.n_classes,)
    scalar : ndarray of float, shape (tables.n_classes,)
    """
    path = Path(path)
    binary = np.zeros(tables.n_classes, dtype=bool)
    scalar = np.zeros(tables.n_classes, dtype=np.float64)

    def fail(message: str) -> tuple[np.ndarray, np.ndarray]:
        if strict:
            raise ChallengeOutputError(f"{path}: {message}")
        logger.warning("%s: %s; all outputs of this recording are read as negative", path, message)
        return binary, scalar

    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise ChallengeOutputError(f"{path}: output file not found") from None
    except UnicodeDecodeError:
        return fail("not a text file")
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    content = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if len(content) < 3:
        return fail(
            f"expected 3 lines after '#record' (class codes, binary outputs, probabilities), found {len(content)}"
        )
    if strict and len(content) > 3:
        return fail(f"line {content[3][0]}: unexpected fourth line of outputs")
    fields = [[cell.strip() for cell in line.split(",")] for _, line in content[:3]]
    if len({len(row) for row in fields}) != 1:
        return fail(
            "the lines of class codes, binary outputs and probabilities have "
            f"{len(fields[0])}, {len(fields[1])} and {len(fields[2])} fields; they must be as many"
        )
    codes, binary_tokens, scalar_tokens = fields
    for k, code in enumerate(codes):
        if not SNOMED_CODE.match(code) and strict:
            return fail(f"line {content[0][0]}, field {k + 1}: class {code!r} is not a SNOMED CT code")
    binary_values = []
    for k, token in enumerate(binary_tokens):
        if token in POSITIVE_TOKENS:
            binary_values.append(True)
        elif token in NEGATIVE_TOKENS or not strict:
            binary_values.append(False)
        else:
            return fail(
                f"line {content[1][0]}, field {k + 1} ({codes[k]}): binary output {token!r} is not 0 or 1"
            )
    scalar_values = []
    for k, token in enumerate(scalar_tokens):
        try:
            scalar_values.append(float(token))
        except ValueError:
            if strict:
                return fail(
                    f"line {content[2][0]}, field {k + 1} ({codes[k]}): probability {token!r} is not a number"
                )
            scalar_values.append(0.0)

    index = {cls: i for i, cls in enumerate(tables.classes)}
    collected: dict[int, list[float]] = {}
    for code, b, s in zip(codes, binary_values, scalar_values, strict=True):
        rep = tables.representative.get(code)
        if rep is None:
            continue
        i = index[rep]
        binary[i] |= b
        collected.setdefault(i, []).append(s)
    for i, values in collected.items():
        arr = np.asarray(values)
        scalar[i] = float(np.mean(arr[~np.isnan(arr)])) if np.any(~np.isnan(arr)) else 0.0
    return binary, scalar
