from __future__ import annotations

import argparse
import sys

from kdsleep.cli import build_parser, show_progress


def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(monkeypatch) -> None:
    args = build_parser().parse_args(["train"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert show_progress(args) is False  # a log file or a pipe: no bar redraws
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert show_progress(args) is True
    assert show_progress(build_parser().parse_args(["train", "--no-progress"])) is False
    assert show_progress(argparse.Namespace()) is True  # a command without the flag
