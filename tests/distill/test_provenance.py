from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kdsleep.distill._provenance import git_commit

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


@pytest.mark.skipif(_git("rev-parse", "HEAD").returncode != 0, reason="not a git checkout")
def test_git_commit_names_head_and_says_when_the_tree_has_changes() -> None:
    commit = git_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
    head = _git("rev-parse", "HEAD").stdout.strip()
    assert commit.startswith(head)
    changed = bool(_git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    assert commit.endswith("-dirty") == changed
