"""Challenge output files saved with a UTF-8 byte-order mark (as spreadsheet programs write them) read as without."""

from __future__ import annotations

import csv

import numpy as np

from kdsleep.ecg12.score_folder import check_output_content
from kdsleep.ecg12.scoring import load_scoring_tables, read_challenge_output


def test_output_with_a_byte_order_mark_reads_as_without(shared_data, tmp_path) -> None:
    scoring = shared_data / "cinc2020" / "scoring"
    tables = load_scoring_tables(scoring)
    with open(scoring / "dx_mapping_scored.csv", encoding="utf-8") as fh:
        codes = [row["SNOMED CT Code"] for row in csv.DictReader(fh)][:3]
    text = f"#A0001\n{','.join(codes)}\n1,0,1\n0.9,0.2,0.7\n"
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    binary, scalar = read_challenge_output(marked, tables)
    expected_binary, expected_scalar = read_challenge_output(plain, tables)
    assert binary.sum() == 2
    np.testing.assert_array_equal(binary, expected_binary)
    np.testing.assert_array_equal(scalar, expected_scalar)


def test_content_checks_accept_a_byte_order_mark(shared_data, tmp_path) -> None:
    scoring = shared_data / "cinc2020" / "scoring"
    tables = load_scoring_tables(scoring)
    with open(scoring / "dx_mapping_scored.csv", encoding="utf-8") as fh:
        codes = [row["SNOMED CT Code"] for row in csv.DictReader(fh)][:3]
    marked = tmp_path / "A0001.csv"
    marked.write_text(f"#A0001\n{','.join(codes)}\n1,0,1\n0.9,0.2,0.7\n", encoding="utf-8-sig")
    check_output_content(marked, tables)  # strict: raises on any problem it finds
