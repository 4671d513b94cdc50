"""Scoring of the PhysioNet/CinC Challenge 2020: its tables (:mod:`~kdsleep.ecg12.scoring.tables`), its metrics
(:mod:`~kdsleep.ecg12.scoring.metrics`) and its output files (:mod:`~kdsleep.ecg12.scoring.output`).

The public names of the three modules are importable from this package.
"""

from __future__ import annotations

from kdsleep.ecg12.scoring.metrics import (
    ChallengeScores,
    accuracy,
    auroc_auprc,
    beta_measures,
    challenge_metric,
    evaluate,
    f_measure,
    modified_confusion_matrix,
)
from kdsleep.ecg12.scoring.output import (
    NEGATIVE_TOKENS,
    POSITIVE_TOKENS,
    ChallengeOutputError,
    read_challenge_output,
    write_challenge_output,
)
from kdsleep.ecg12.scoring.tables import (
    NORMAL_SINUS_RHYTHM,
    SCORED_MAPPING_FILE,
    UNSCORED_MAPPING_FILE,
    WEIGHTS_FILE,
    ScoringTableError,
    ScoringTables,
    load_scoring_tables,
)

__all__ = [
    "NEGATIVE_TOKENS",
    "NORMAL_SINUS_RHYTHM",
    "POSITIVE_TOKENS",
    "SCORED_MAPPING_FILE",
    "UNSCORED_MAPPING_FILE",
    "WEIGHTS_FILE",
    "ChallengeOutputError",
    "ChallengeScores",
    "ScoringTableError",
    "ScoringTables",
    "accuracy",
    "auroc_auprc",
    "beta_measures",
    "challenge_metric",
    "evaluate",
    "f_measure",
    "load_scoring_tables",
    "modified_confusion_matrix",
    "read_challenge_output",
    "write_challenge_output",
]
