"""Beat-by-beat scoring of a heartbeat detector against reference annotations.

Detections and reference beats are matched one to one within a tolerance (150 ms, as in ANSI/AAMI EC57
evaluations); sensitivity and positive predictive value follow from the counts. Reference records come from
:func:`kdsleep.data.readers.read_annotated_ecg`, detections from
:func:`kdsleep.data.heartbeats.detect_heartbeats` or any other detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["BeatScore", "match_beats"]


@dataclass(frozen=True)
class BeatScore:
    """Beat-by-beat agreement of a detector with reference annotations.

    Attributes
    ----------
    n_reference, true_positives, false_positives, false_negatives : int
        Counts after one-to-one matching within the tolerance.
    """

    n_reference: int
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN); 1.0 when there are no reference beats."""
        denom = self.true_positives + self.false_negatives
        return self.true_positives / denom if denom else 1.0

    @property
    def positive_predictive_value(self) -> float:
        """TP / (TP + FP); 1.0 when nothing was detected."""
        denom = self.true_positives + self.false_positives
        return self.true_positives / denom if denom else 1.0


def match_beats(
    detected: np.ndarray,
    reference: np.ndarray,
    sfreq: float,
    tolerance: float = 0.15,
    exclude: np.ndarray | None = None,
) -> BeatScore:
    """Match detected beats to reference beats one-to-one within a tolerance.

    Parameters
    ----------
    detected, reference : np.ndarray
        Sample indices of the detected and of the annotated beats.
    sfreq : float
        Sampling frequency in Hz.
    tolerance : float
        Largest distance between a detection and its reference beat in seconds (150 ms, the usual
        tolerance of ANSI/AAMI EC57 evaluations).
    exclude : np.ndarray or None
        ``(n, 2)`` sample ranges ``[start, stop]`` left out of the scoring (e.g. ventricular flutter in
        mitdb 207): detections and reference beats inside them are ignored.

    Returns
    -------
    BeatScore
        True positives, false positives and false negatives.
    """
    detected = np.sort(np.asarray(detected, dtype=np.int64))
    reference = np.sort(np.asarray(reference, dtype=np.int64))
    if exclude is not None and len(exclude):
        exclude = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)

        def outside(x: np.ndarray) -> np.ndarray:
            keep = np.ones(x.size, dtype=bool)
            for start, stop in exclude:
                keep &= ~((x >= start) & (x <= stop))
            return x[keep]

        detected = outside(detected)
        reference = outside(reference)
    tp = _match_count(detected, reference, int(round(tolerance * sfreq)))
    return BeatScore(
        n_reference=int(reference.size),
        true_positives=tp,
        false_positives=int(detected.size - tp),
        false_negatives=int(reference.size - tp),
    )


@numba.njit(cache=True)
def _match_count(detected: np.ndarray, reference: np.ndarray, tolerance: int) -> int:
    """Greedy one-to-one matching of two sorted index arrays, nearest first within ``tolerance``."""
    i = 0
    tp = 0
    n_det = detected.shape[0]
    for r in range(reference.shape[0]):
        ref = reference[r]
        while i < n_det and detected[i] < ref - tolerance:
            i += 1
        if i >= n_det:
            break
        # take the closest unused detection within tolerance; a later reference beat may want the next one
        best = -1
        best_dist = tolerance + 1
        j = i
        while j < n_det and detected[j] <= ref + tolerance:
            d = abs(detected[j] - ref)
            if d < best_dist:
                best_dist = d
                best = j
            j += 1
        if best >= 0:
            tp += 1
            i = best + 1
    return tp
