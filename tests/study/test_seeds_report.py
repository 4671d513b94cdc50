"""The slpdb study over training seeds, on synthetic stand-ins for the units: one result per seed and row,
the Holm families, the claim rule."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.stages import SleepStage
from kdsleep.evaluation.compare import holm_correction
from kdsleep.study.report import aggregate
from kdsleep.study.rows import CONTROL_ROWS, KD_ROWS, ROWS, expand_rows

GROUPING = "w-n-r"
N_SUBJECTS = 12
N_EPOCHS = 120


class _Record:
    """The part of a study record the report reads: stages, subject, labels."""

    def __init__(self, subject: str, stages: np.ndarray) -> None:
        self.subject = subject
        self.stages = stages

    @property
    def n_epochs(self) -> int:
        return int(self.stages.shape[0])

    def labels(self, grouping: str) -> np.ndarray:
        from kdsleep.data.stages import get_grouping

        return get_grouping(grouping)(self.stages)


def _records() -> dict[str, _Record]:
    rng = np.random.default_rng(0)
    choices = np.array([SleepStage.W, SleepStage.N2, SleepStage.R], dtype=np.int8)
    return {
        f"r{i}": _Record(f"s{i}", choices[rng.integers(0, 3, N_EPOCHS)].astype(np.int8))
        for i in range(N_SUBJECTS)
    }


def _predict(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> list[int]:
    """A prediction right with probability ``accuracy`` per epoch, otherwise a random other class."""
    out = labels.copy()
    wrong = rng.random(labels.size) > accuracy
    out[wrong] = (labels[wrong] + rng.integers(1, 3, int(wrong.sum()))) % 3
    return out.astype(int).tolist()


def _results(records, seeds, accuracy: dict[str, float]):
    """Two folds of six subjects each, every row predicted with its own accuracy (plus seed noise)."""
    names = sorted(records)
    folds = [names[:6], names[6:]]
    results = {}
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        for fold, test in enumerate(folds):
            predictions = {
                row: {n: _predict(records[n].labels(GROUPING), acc, rng) for n in test}
                for row, acc in accuracy.items()
            }
            results[(seed, fold, GROUPING)] = {"test_records": test, "predictions": predictions}
    return results


ALL_ROWS = expand_rows(None)


def test_expand_rows_adds_what_rows_need():
    assert expand_rows(["at_sd_cl"]) == ["eeg_teacher", "at_sd_cl"]
    assert expand_rows(["ecg_self", "hrv_gbm"]) == ["hrv_gbm", "hr_student", "ecg_self"]
    assert ALL_ROWS == list(ROWS)
    with pytest.raises(ValueError, match="unknown.*'nope'"):
        expand_rows(["nope"])


def test_one_result_per_seed_and_row_and_two_holm_families():
    records = _records()
    seeds = [0, 1, 2]
    accuracy = {row: 0.6 for row in ALL_ROWS}
    out = aggregate(records, [GROUPING], _results(records, seeds, accuracy), seeds, ALL_ROWS)
    block = out["groupings"][GROUPING]
    assert list(block["models"]) == ALL_ROWS
    for row, entry in block["models"].items():
        assert sorted(entry["per_seed"]) == ["0", "1", "2"], row
        assert entry["summary"]["seeds"] == seeds
        # every scored epoch of the subjects, pooled over both folds, in every seed
        assert {m["n_epochs"] for m in entry["per_seed"].values()} == {N_SUBJECTS * N_EPOCHS}
        assert len(entry["per_subject_seed_mean"]["cohen_kappa"]) == N_SUBJECTS
        kappas = [m["cohen_kappa"] for m in entry["per_seed"].values()]
        assert entry["summary"]["cohen_kappa"]["mean"] == pytest.approx(np.mean(kappas))
        assert entry["summary"]["cohen_kappa"]["sd"] == pytest.approx(np.std(kappas, ddof=1))

    # the distillation family: every KD row and control against hr_student, every KD row against each control
    family = out["distillation"]["comparisons"]
    pairs = {(c["variant_a"], c["variant_b"]) for c in family}
    expected = {("hr_student", v) for v in (*KD_ROWS, *CONTROL_ROWS)} | {
        (c, k) for k in KD_ROWS for c in CONTROL_ROWS
    }
    assert pairs == expected and len(family) == len(expected) == 5 + 6
    assert [c["p_adjusted"] for c in family] == pytest.approx(
        list(holm_correction([c["p_value"] for c in family]))
    )
    # the students' family is corrected on its own, not with the distillation tests
    students = out["students"]["comparisons"]
    assert {(c["variant_a"], c["variant_b"]) for c in students} == {
        ("hrv_gbm", "hr_student"),
        ("hrv_gbm", "hr_stager"),
        ("hr_student", "hr_stager"),
    }
    assert [c["p_adjusted"] for c in students] == pytest.approx(
        list(holm_correction([c["p_value"] for c in students]))
    )
    # paired on each subject's kappa averaged over the seeds
    comparison = next(c for c in students if c["variant_b"] == "hr_stager" and c["variant_a"] == "hrv_gbm")
    means = block["models"]["hr_stager"]["per_subject_seed_mean"]["cohen_kappa"]
    assert comparison["values_b"] == pytest.approx([means[s] for s in comparison["subjects"]])


def test_claim_only_where_a_kd_row_beats_both_controls():
    records = _records()
    seeds = [0, 1]
    # at_sd_cl far better than the student and the label-smoothing control, but no better than ecg_self
    accuracy = {row: 0.45 for row in ALL_ROWS}
    accuracy.update({"at_sd_cl": 0.9, "ecg_self": 0.9})
    out = aggregate(records, [GROUPING], _results(records, seeds, accuracy), seeds, ALL_ROWS)
    claims = {c["variant"]: c for c in out["distillation"]["claims"]}
    assert claims["at_sd_cl"]["beats"]["hr_student"] and claims["at_sd_cl"]["beats"]["ecg_ls"]
    assert not claims["at_sd_cl"]["beats"]["ecg_self"] and not claims["at_sd_cl"]["claim"]
    assert not any(c["claim"] for c in claims.values())
    (line,) = [t for t in out["distillation"]["claim_text"] if "AT+SD+CL" in t]
    assert "not shown to help" in line and "self-distilled" in line and "label smoothing" not in line

    # better than both controls and the student: the claim is made
    accuracy["ecg_self"] = 0.45
    out = aggregate(records, [GROUPING], _results(records, seeds, accuracy), seeds, ALL_ROWS)
    claims = {c["variant"]: c for c in out["distillation"]["claims"]}
    assert claims["at_sd_cl"]["claim"]
    assert not claims["at_cl"]["claim"] and not claims["sd_cl"]["claim"]

    # without the controls there is no claim at all
    rows = expand_rows(["hr_student", "at_sd_cl"])
    out = aggregate(records, [GROUPING], _results(records, seeds, accuracy), seeds, rows)
    (claim,) = out["distillation"]["claims"]
    assert not claim["claim"] and claim["missing_controls"] == list(CONTROL_ROWS)
    assert "were not run" in out["distillation"]["claim_text"][0]
