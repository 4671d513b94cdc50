"""Beat files whose values are neither rising peak times nor plausible RR intervals: an error, not a night."""

from __future__ import annotations

import numpy as np
import pytest

from kdsleep.data.readers.beats import BeatsFormatError, read_beats


def test_shuffled_peak_times_are_refused(tmp_path) -> None:
    rng = np.random.default_rng(0)
    peaks = np.cumsum(rng.normal(1.0, 0.05, 20000))
    path = tmp_path / "peaks.txt"
    path.write_text("\n".join(f"{x:.3f}" for x in rng.permutation(peaks)) + "\n")
    with pytest.warns(UserWarning), pytest.raises(BeatsFormatError) as err:
        read_beats(path)
    message = str(err.value)
    assert str(path) in message and "read as RR intervals" in message
    assert "expected R-peak times in increasing order or RR intervals" in message


def test_forced_format_keeps_the_warning_only(tmp_path) -> None:
    rr_s = np.random.default_rng(1).normal(0.9, 0.04, 300)
    path = tmp_path / "rr.txt"
    path.write_text("\n".join(f"{v:.3f}" for v in rr_s) + "\n")
    with pytest.warns(UserWarning, match="check the RR unit"):
        series = read_beats(path, "rr", rr_unit="ms")
    assert series.n_out_of_range == 300
    assert read_beats(path).n_out_of_range == 0  # auto: seconds by magnitude, all plausible


def test_non_finite_peak_times_are_skipped_with_a_warning(tmp_path, caplog) -> None:
    peaks = np.cumsum(np.random.default_rng(2).normal(1.0, 0.05, 400))
    lines = [f"{x:.3f}" for x in peaks]
    lines[10] = "inf"
    path = tmp_path / "peaks.txt"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        series = read_beats(path)
    assert series.n_beats == 399 and series.n_ignored == 1
    assert f"{path}: 1 empty or non-finite entries (NaN, inf) skipped, the first at line 11" in caplog.text
