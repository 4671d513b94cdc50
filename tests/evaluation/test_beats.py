"""Beat scoring: one-to-one matching of detections to reference beats within a tolerance."""

from __future__ import annotations

import numpy as np

from kdsleep.evaluation.beats import BeatScore, match_beats


def test_match_beats_counts_one_to_one_within_tolerance() -> None:
    # 100 Hz, 150 ms = 15 samples
    score = match_beats(np.array([100, 205, 400]), np.array([102, 300, 398]), 100.0)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (2, 1, 1)
    # two detections near one reference beat: only one matches
    score = match_beats(np.array([100, 104]), np.array([102]), 100.0)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 1, 0)
    # excluded ranges drop both detections and references
    score = match_beats(
        np.array([100, 205, 400]), np.array([102, 300, 398]), 100.0, exclude=np.array([[200, 350]])
    )
    assert (score.true_positives, score.false_positives, score.false_negatives) == (2, 0, 0)
    assert score.sensitivity == 1.0 and score.positive_predictive_value == 1.0


def test_a_detection_serves_the_nearest_reference_and_the_next_one_gets_the_next() -> None:
    # references 10 samples apart, tolerance 15: greedy nearest-first must not steal the second's match
    score = match_beats(np.array([101, 111]), np.array([100, 110]), 100.0)
    assert score.true_positives == 2
    # unsorted input is sorted first; the tolerance scales with the sampling rate (150 ms = 30 at 200 Hz)
    score = match_beats(np.array([430, 120]), np.array([100, 400]), 200.0)
    assert score == BeatScore(n_reference=2, true_positives=2, false_positives=0, false_negatives=0)
    assert match_beats(np.array([131]), np.array([100]), 200.0).true_positives == 0


def test_empty_inputs_score_as_perfect_or_missed() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert match_beats(empty, empty, 100.0).sensitivity == 1.0
    missed = match_beats(empty, np.array([10, 20]), 100.0)
    assert (
        missed.false_negatives == 2 and missed.sensitivity == 0.0 and missed.positive_predictive_value == 1.0
    )
