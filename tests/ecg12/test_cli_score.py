"""``kdsleep ecg12 score LABEL_DIR OUTPUT_DIR --scoring-dir DIR`` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdsleep.cli import main
from kdsleep.ecg12.reader import list_records, read_header
from kdsleep.ecg12.scoring import load_scoring_tables, write_challenge_output

HEADER = "AUROC,AUPRC,Accuracy,F-measure,Fbeta-measure,Gbeta-measure,Challenge metric"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real(shared_data: Path):
    root = shared_data / "cinc2020"
    tables = load_scoring_tables(root / "scoring")
    headers = [read_header(p) for p in list_records(root / "labelled")]
    return root, tables, headers


def write_outputs(folder: Path, headers, tables, decide) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for header in headers:
        binary, scalar = decide(tables.encode(header.dx_codes))
        write_challenge_output(
            folder / f"{header.record_name}.csv", header.record_name, tables.classes, binary, scalar
        )
    return folder


def score(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["ecg12", "score", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_perfect_outputs_on_real_records(real, tmp_path: Path, capsys):
    root, tables, headers = real
    outputs = write_outputs(tmp_path / "out", headers, tables, lambda y: (y, 0.1 + 0.8 * y))
    code, out, _ = score(
        capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--scores", tmp_path / "s.csv"
    )
    assert code == 0
    assert out.splitlines() == [HEADER, "1.000,1.000,1.000,1.000,1.000,1.000,1.000"]
    assert (tmp_path / "s.csv").read_text().splitlines() == out.splitlines()


def test_always_normal_scores_zero_on_real_records(real, tmp_path: Path, capsys):
    root, tables, headers = real
    normal = np.zeros(tables.n_classes, dtype=bool)
    normal[tables.normal_index] = True
    outputs = write_outputs(tmp_path / "out", headers, tables, lambda y: (normal, normal * 0.9))
    code, out, _ = score(
        capsys,
        root / "labelled",
        outputs,
        "--scoring-dir",
        root / "scoring",
        "--class-scores",
        tmp_path / "c.csv",
    )
    assert code == 0
    figures = dict(zip(out.splitlines()[0].split(","), out.splitlines()[1].split(","), strict=True))
    assert figures["Challenge metric"] == "0.000"
    assert float(figures["Accuracy"]) < 0.2
    assert (tmp_path / "c.csv").read_text().startswith("Classes,")


def test_hand_computed_case_through_the_command(tmp_path: Path, capsys):
    """The four recordings of test_scoring.test_hand_computed_case, written as files: metric 13/34."""
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    (scoring / "weights.csv").write_text(
        ",111,222,333,444\n111,1.0,0.5,0.0,0.0\n222,0.5,1.0,0.25,0.25\n333,0.0,0.25,1.0,1.0\n444,0.0,0.25,1.0,1.0\n"
    )
    (scoring / "dx_mapping_scored.csv").write_text(
        "Dx,SNOMED CT Code,Abbreviation\nn,111,N\nb,222,B\nc,333,C\nd,444,D\n"
    )
    labels_dir, outputs_dir = tmp_path / "labels", tmp_path / "outputs"
    labels_dir.mkdir()
    outputs_dir.mkdir()
    # spacing variants of #Dx; 444 is scored as 333; 999 is not scored
    cases = {
        "r1": ("#Dx: 111", "111,222,333\n1,0,0\n0.9,0.1,0.1"),
        "r2": ("# Dx: 222, 999", "111,222,333\n1,1,0\n0.6,0.7,0.1"),
        "r3": ("#Dx :444", "111,222,333\n0,1,0\n0.1,0.8,0.4"),
        "r4": ("#Dx:222,333", "111,222,444\n0,0,1\n0.2,0.3,0.9"),
    }
    for name, (dx, output) in cases.items():
        (labels_dir / f"{name}.hea").write_text(f"{name} 12 500 5000\n#Age: 40\n{dx}\n")
        (outputs_dir / f"{name}.csv").write_text(f"#{name}\n{output}\n")
    code, out, _ = score(capsys, labels_dir, outputs_dir, "--scoring-dir", scoring, "--normal-class", "111")
    assert code == 0
    values = [float(v) for v in out.splitlines()[1].split(",")]
    accuracy, f_measure, challenge = values[2], values[3], values[6]
    assert accuracy == 0.25
    assert f_measure == pytest.approx(11 / 18, abs=5e-4)
    assert challenge == pytest.approx(13 / 34, abs=5e-4)


def test_missing_and_malformed_outputs(real, tmp_path: Path, capsys):
    root, tables, headers = real
    outputs = write_outputs(tmp_path / "out", headers, tables, lambda y: (y, y * 1.0))
    victim = outputs / f"{headers[3].record_name}.csv"
    victim.unlink()
    code, out, err = score(capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring")
    assert code == 2 and out == ""
    assert f"{headers[3].record_name}.csv" in err and "no output file" in err

    victim.write_text("#x\n164889003,426783006\n1,0\n")
    code, _, err = score(capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring")
    assert code == 2 and victim.name in err and "expected 3 lines" in err
    # the official evaluation's behaviour: the recording counts as all-negative, with a warning
    code, out, _ = score(capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--lenient")
    assert code == 0 and float(out.splitlines()[1].split(",")[6]) < 1.0

    code, _, err = score(capsys, root / "labelled", outputs, "--scoring-dir", tmp_path / "nowhere")
    assert code == 2 and "scoring folder not found" in err
    code, _, err = score(capsys, tmp_path / "empty_labels", outputs, "--scoring-dir", root / "scoring")
    assert code == 2 and "LABEL_DIR" in err


def test_label_file_without_dx_line(real, tmp_path: Path, capsys):
    root, tables, _ = real
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "r1.hea").write_text("r1 12 500 5000\n#Age: 40\n")
    write_challenge_output(tmp_path / "r1.csv", "r1", tables.classes[:1], [0], [0.0])
    code, _, err = score(capsys, tmp_path / "labels", tmp_path, "--scoring-dir", root / "scoring")
    assert code == 2 and "r1.hea: field 'Dx'" in err


def test_command_line_entry_point(real, tmp_path: Path):
    root, tables, headers = real
    outputs = write_outputs(tmp_path / "out", headers, tables, lambda y: (y, y * 1.0))
    result = subprocess.run(
        [sys.executable, "-m", "kdsleep", "ecg12", "score", str(root / "labelled"), str(outputs)]
        + ["--scoring-dir", str(root / "scoring")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [HEADER, "1.000,1.000,1.000,1.000,1.000,1.000,1.000"]
    help_text = subprocess.run(
        [sys.executable, "-m", "kdsleep", "ecg12", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    ).stdout
    assert "score" in help_text


def _perfect(real, tmp_path: Path) -> tuple[Path, Path, list]:
    root, tables, headers = real
    outputs = write_outputs(tmp_path / "out", headers, tables, lambda y: (y, 0.1 + 0.8 * y))
    return root, outputs, headers


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("#{rec}\n164889003,426783006\n1,0\n7.5,0.1\n", "probability 7.5 is not in [0, 1]"),
        ("#{rec}\n164889003,426783006\n1,0\ninf,0.1\n", "probability inf is not in [0, 1]"),
        ("#E99999\n164889003,426783006\n1,0\n0.9,0.1\n", "'#E99999' names another record"),
        ("#{rec}\n164889003,164889003\n1,0\n0.9,0.1\n", "['164889003'] appear in more than one column"),
        ("#{rec}\n1234567,7654321\n1,0\n0.9,0.1\n", "none of its 2 class codes is among the"),
    ],
)
def test_implausible_outputs_are_errors_or_warnings(
    real, tmp_path: Path, capsys, caplog, content: str, expected: str
):
    root, outputs, headers = _perfect(real, tmp_path)
    victim = outputs / f"{headers[2].record_name}.csv"
    victim.write_text(content.format(rec=headers[2].record_name))
    code, out, err = score(capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring")
    assert code == 2 and out == "" and f"{victim}: " in err and expected in err
    # --lenient scores them as the official code would, saying which file and what
    with caplog.at_level("WARNING"):
        code, out, err = score(
            capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--lenient"
        )
    assert code == 0 and out.startswith(HEADER)
    assert str(victim) in caplog.text and expected in caplog.text


def test_output_without_a_header_is_named(real, tmp_path: Path, capsys, caplog):
    root, outputs, headers = _perfect(real, tmp_path)
    (outputs / "Z99999.csv").write_text((outputs / f"{headers[0].record_name}.csv").read_text())
    with caplog.at_level("WARNING"):
        code, out, _ = score(capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring")
    assert code == 0 and out.splitlines()[1] == "1.000,1.000,1.000,1.000,1.000,1.000,1.000"
    assert "1 output file(s) have no header" in caplog.text and "Z99999.csv" in caplog.text


def test_scores_into_a_missing_folder_or_an_unwritable_place(real, tmp_path: Path, capsys):
    root, outputs, _ = _perfect(real, tmp_path)
    target = tmp_path / "new" / "deeper" / "x.csv"
    code, out, err = score(
        capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--scores", target
    )
    assert code == 0 and err == "" and target.read_text().splitlines() == out.splitlines()
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = score(
        capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--scores", blocker / "x.csv"
    )
    assert code == 2 and out == "" and "cannot create its folder" in err and "Traceback" not in err
    code, out, err = score(
        capsys, root / "labelled", outputs, "--scoring-dir", root / "scoring", "--class-scores", tmp_path
    )
    assert code == 2 and out == "" and "is a folder" in err


def test_score_folder_in_the_library(real, tmp_path: Path):
    from kdsleep.ecg12.score_folder import ScoreFolderError, score_folder

    root, outputs, headers = _perfect(real, tmp_path)
    (outputs / "Z99999.csv").write_text("#Z99999\n164889003\n1\n0.9\n")
    result = score_folder(root / "labelled", outputs, real[1])
    assert result.records == tuple(sorted(h.record_name for h in headers))
    assert result.unlabelled_outputs == (outputs / "Z99999.csv",)
    assert result.scores.challenge_metric == pytest.approx(1.0)
    with pytest.raises(ScoreFolderError, match="OUTPUT_DIR .* is not a folder"):
        score_folder(root / "labelled", tmp_path / "none", real[1])
