"""Scoring tables and the official PhysioNet/CinC 2020 metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kdsleep.ecg12.scoring import (
    ChallengeOutputError,
    ScoringTableError,
    accuracy,
    auroc_auprc,
    beta_measures,
    challenge_metric,
    evaluate,
    f_measure,
    load_scoring_tables,
    modified_confusion_matrix,
    read_challenge_output,
    write_challenge_output,
)

# The 2020 challenge scores these pairs as one diagnosis (CRBBB/RBBB, PAC/SVPB, PVC/VPB).
EXPECTED_PAIRS = {("713427006", "59118001"), ("284470004", "63593006"), ("427172004", "17338001")}


@pytest.fixture(scope="module")
def tables(shared_data: Path):
    return load_scoring_tables(shared_data / "cinc2020" / "scoring")


def write_tiny_tables(folder: Path, notes: str = "") -> Path:
    """Four codes: 111 (normal), 222, and 333/444 scored as one diagnosis."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.csv").write_text(
        ",111,222,333,444\n"
        "111,1.0,0.5,0.0,0.0\n"
        "222,0.5,1.0,0.25,0.25\n"
        "333,0.0,0.25,1.0,1.0\n"
        "444,0.0,0.25,1.0,1.0\n"
    )
    (folder / "dx_mapping_scored.csv").write_text(
        f"Dx,SNOMED CT Code,Abbreviation,Notes\nnormal,111,N,\nbee,222,B,\ncee,333,C,{notes}\ndee,444,D,\n"
    )
    return folder


@pytest.fixture
def tiny(tmp_path: Path):
    return load_scoring_tables(write_tiny_tables(tmp_path / "scoring"), normal_class="111")


# --- tables ------------------------------------------------------------------------------------------------


def test_real_tables_merge_27_codes_into_24_classes(tables):
    assert len(tables.scored_codes) == 27
    assert tables.n_classes == 24
    assert set(tables.equivalent_groups) == EXPECTED_PAIRS
    assert tables.weights.shape == (24, 24)
    assert np.allclose(np.diag(tables.weights), 1.0)
    assert tables.classes[tables.normal_index] == "426783006"
    # merged codes map onto the first code of their pair
    assert tables.representative["59118001"] == "713427006"
    assert tables.encode(["59118001", "164861001"]).sum() == 1  # the second code is not scored
    assert "CRBBB|RBBB" in tables.class_names()
    assert "164861001" in tables.unscored_codes


def test_tiny_tables(tiny):
    assert tiny.classes == ("111", "222", "333")
    assert tiny.equivalent_groups == [("333", "444")]
    assert np.array_equal(tiny.weights, [[1, 0.5, 0], [0.5, 1, 0.25], [0, 0.25, 1]])


def test_tables_errors_name_file_and_field(tmp_path: Path):
    with pytest.raises(ScoringTableError, match="weights.csv.*not found"):
        load_scoring_tables(tmp_path)
    folder = write_tiny_tables(tmp_path / "a")
    text = (folder / "weights.csv").read_text().replace("0.25,1.0,1.0\n444", "x,1.0,1.0\n444")
    (folder / "weights.csv").write_text(text)
    with pytest.raises(ScoringTableError, match=r"weights.csv: row 333, column 222: weight 'x'"):
        load_scoring_tables(folder)
    folder = write_tiny_tables(tmp_path / "b", notes="We score 222 and 333 as the same diagnosis.")
    with pytest.raises(ScoringTableError, match="dx_mapping_scored.csv: the notes score 222 and 333"):
        load_scoring_tables(folder, normal_class="111")
    folder = write_tiny_tables(tmp_path / "c")
    (folder / "dx_mapping_scored.csv").write_text("Dx,SNOMED CT Code\nnormal,111\n")
    with pytest.raises(ScoringTableError, match="disagree on the scored codes"):
        load_scoring_tables(folder, normal_class="111")
    with pytest.raises(ScoringTableError, match="normal class 999"):
        load_scoring_tables(write_tiny_tables(tmp_path / "d"), normal_class="999")


# --- the challenge metric --------------------------------------------------------------------------------


def naive_challenge_metric(labels, outputs, weights, normal_index):
    """The definition written as loops, as an independent oracle."""

    def score(out):
        total = 0.0
        for i in range(labels.shape[0]):
            union = max(int(np.sum(labels[i] | out[i])), 1)
            for j in np.flatnonzero(labels[i]):
                for k in np.flatnonzero(out[i]):
                    total += weights[j, k] / union
        return total

    inactive = np.zeros_like(labels)
    inactive[:, normal_index] = True
    correct, baseline = score(labels), score(inactive)
    return (score(outputs) - baseline) / (correct - baseline)


def test_perfect_outputs_score_one_and_always_normal_zero(tables):
    rng = np.random.default_rng(0)
    labels = rng.random((200, tables.n_classes)) < 0.1
    assert challenge_metric(labels, labels, tables.weights, tables.normal_index) == pytest.approx(1.0)
    normal = np.zeros_like(labels)
    normal[:, tables.normal_index] = True
    assert challenge_metric(labels, normal, tables.weights, tables.normal_index) == pytest.approx(
        0.0, abs=1e-12
    )
    outputs = rng.random(labels.shape) < 0.1
    got = challenge_metric(labels, outputs, tables.weights, tables.normal_index)
    assert got == pytest.approx(naive_challenge_metric(labels, outputs, tables.weights, tables.normal_index))
    assert got < 0.5  # random outputs are far from perfect


def hand_case():
    """Four recordings over classes (111 normal, 222, 333); see test_hand_computed_case for the arithmetic."""
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)
    outputs = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    return labels, outputs


def test_hand_computed_case(tiny):
    labels, outputs = hand_case()
    w = tiny.weights
    # observed: r1 union {111}: w[111,111] = 1
    #           r2 union {111,222} (2): label 222 -> outputs 111, 222: (0.5 + 1) / 2 = 0.75
    #           r3 union {222,333} (2): label 333 -> output 222: 0.25 / 2 = 0.125
    #           r4 union {222,333} (2): labels 222, 333 -> output 333: (0.25 + 1) / 2 = 0.625
    observed = 1 + 0.75 + 0.125 + 0.625  # 2.5
    # correct:  r1 1, r2 1, r3 1, r4 (1 + 0.25 + 0.25 + 1) / 2 = 1.25
    correct = 1 + 1 + 1 + 1.25  # 4.25
    # inactive (always 111): r1 1; r2 0.5 / 2 = 0.25; r3 0 / 2 = 0; r4 (0.5 + 0) / 3
    inactive = 1 + 0.25 + 0 + 0.5 / 3
    expected = (observed - inactive) / (correct - inactive)
    assert expected == pytest.approx(13 / 34)
    assert challenge_metric(labels, outputs, w, tiny.normal_index) == pytest.approx(13 / 34)
    a = modified_confusion_matrix(labels, outputs)
    assert a[1, 0] == pytest.approx(0.5) and a[2, 1] == pytest.approx(0.5) and a[1, 2] == pytest.approx(0.5)

    # accuracy: only r1 is exactly right
    assert accuracy(labels, outputs) == pytest.approx(0.25)
    # F1: 111 tp1 fp1 fn0 -> 2/3; 222 tp1 fp1 fn1 -> 1/2; 333 tp1 fp0 fn1 -> 2/3
    macro, per_class = f_measure(labels, outputs)
    assert np.allclose(per_class, [2 / 3, 1 / 2, 2 / 3])
    assert macro == pytest.approx(11 / 18)
    # F2/G2, each recording weighted by 1 / its number of labels (r4 has two):
    # 111 tp 1, fp 1, fn 0:   F = 5/(5+1) ; G = 1/(1+1)
    # 222 tp 1, fp 1, fn 1/2: F = 5/(5+1+2); G = 1/(1+1+1)
    # 333 tp 1/2, fp 0, fn 1: F = 2.5/(2.5+4); G = 0.5/(0.5+2)
    f2, g2 = beta_measures(labels, outputs, beta=2)
    assert f2 == pytest.approx((5 / 6 + 5 / 8 + 2.5 / 6.5) / 3)
    assert g2 == pytest.approx((1 / 2 + 1 / 3 + 0.5 / 2.5) / 3)


def test_auroc_auprc_hand_and_sklearn():
    labels = np.array([[1], [0], [1], [0]], dtype=bool)
    scores = np.array([[0.9], [0.8], [0.8], [0.1]])
    # positive/negative pairs: (0.9>0.8) 1, (0.9>0.1) 1, (0.8=0.8) 1/2, (0.8>0.1) 1 -> 3.5 / 4
    # precision-recall steps: recall 0.5 at precision 1, recall 1 at precision 2/3 -> 0.5 + 0.5 * 2/3
    macro_roc, macro_pr, roc, pr = auroc_auprc(labels, scores)
    assert macro_roc == pytest.approx(0.875)
    assert macro_pr == pytest.approx(5 / 6)

    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    labels = rng.random((60, 4)) < [0.1, 0.3, 0.5, 0.0]
    scores = np.round(rng.random((60, 4)), 1)  # ties
    _, _, roc, pr = auroc_auprc(labels, scores)
    for k in range(3):
        assert roc[k] == pytest.approx(roc_auc_score(labels[:, k], scores[:, k]))
        assert pr[k] == pytest.approx(average_precision_score(labels[:, k], scores[:, k]))
    assert math.isnan(roc[3]) and math.isnan(pr[3])  # no positive recording: left out of the macro mean


def test_evaluate_perfect(tables):
    rng = np.random.default_rng(1)
    labels = rng.random((100, tables.n_classes)) < 0.15
    result = evaluate(labels, labels, labels.astype(float), tables)
    assert result.summary().splitlines()[1] == "1.000,1.000,1.000,1.000,1.000,1.000,1.000"
    assert result.summary().splitlines()[0] == (
        "AUROC,AUPRC,Accuracy,F-measure,Fbeta-measure,Gbeta-measure,Challenge metric"
    )
    assert result.class_summary().startswith("Classes," + ",".join(tables.classes))


def test_metric_input_checks(tables):
    labels = np.zeros((3, tables.n_classes), dtype=bool)
    with pytest.raises(ValueError, match="same shape"):
        challenge_metric(labels, labels[:2], tables.weights, tables.normal_index)
    with pytest.raises(ValueError, match="0/1"):
        accuracy(labels, np.full(labels.shape, 0.5))


# --- output files -------------------------------------------------------------------------------------------


def test_output_file_round_trip_and_merging(tiny, tmp_path: Path):
    path = tmp_path / "r1.csv"
    write_challenge_output(path, "r1", ["111", "222", "333"], [1, 0, 1], [0.9, 0.2, 0.7])
    assert path.read_text().splitlines()[0] == "#r1"
    binary, scalar = read_challenge_output(path, tiny)
    assert binary.tolist() == [True, False, True]
    assert np.allclose(scalar, [0.9, 0.2, 0.7])
    # 333 and 444 are one class: positive if either is, mean probability; 999 is not scored
    path.write_text("#r1\n333, 444, 999\n0, 1, 1\n0.2, 0.6, nan\n")
    binary, scalar = read_challenge_output(path, tiny)
    assert binary.tolist() == [False, False, True]
    assert np.allclose(scalar, [0, 0, 0.4])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#r\n111,222\n1,0\n", "expected 3 lines"),
        ("#r\n111,222\n1,0\n0.5\n", "as many"),
        ("#r\n111,222\n1,yes\n0.5,0.1\n", "field 2 \\(222\\): binary output 'yes'"),
        ("#r\n111,222\n1,0\n0.5,high\n", "probability 'high' is not a number"),
        ("#r\nAF,222\n1,0\n0.5,0.1\n", "'AF' is not a SNOMED CT code"),
    ],
)
def test_malformed_output_files(tiny, tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ChallengeOutputError, match=message) as info:
        read_challenge_output(path, tiny)
    assert "bad.csv" in str(info.value)
    binary, scalar = read_challenge_output(path, tiny, strict=False)
    assert scalar.shape == (3,)
    with pytest.raises(ChallengeOutputError, match="not found"):
        read_challenge_output(tmp_path / "missing.csv", tiny)
