from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import kdsleep
from kdsleep._io import git_commit

REPO = Path(__file__).resolve().parents[2]
FROM_CHECKOUT = Path(kdsleep.__file__).resolve().parents[1] == REPO


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


@pytest.mark.skipif(
    not FROM_CHECKOUT or _git("rev-parse", "HEAD").returncode != 0,
    reason="kdsleep is not imported from this git checkout",
)
def test_git_commit_names_head_and_says_when_the_tree_has_changes() -> None:
    commit = git_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
    head = _git("rev-parse", "HEAD").stdout.strip()
    assert commit.startswith(head)
    changed = bool(_git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    assert commit.endswith("-dirty") == changed


def test_an_installed_copy_names_its_build_commit_not_an_enclosing_repository(tmp_path, monkeypatch) -> None:
    """A copy of the package inside some other repository does not report that repository's commit."""
    import kdsleep._io as provenance

    outer = tmp_path / "project"
    installed = outer / "venv" / "site-packages" / "kdsleep"
    installed.mkdir(parents=True)
    if subprocess.run(["git", "init", "-q", str(outer)], capture_output=True).returncode != 0:
        pytest.skip("git is not available")
    subprocess.run(
        [
            "git",
            "-C",
            str(outer),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    import kdsleep._build_config as build

    monkeypatch.setattr(provenance, "__file__", str(installed / "_io.py"))
    monkeypatch.setattr(build, "GIT_COMMIT", None, raising=False)
    assert provenance.git_commit() is None
    # it names the commit it was built from instead (setup.py records it in _build_config)
    monkeypatch.setattr(build, "GIT_COMMIT", "0123abc", raising=False)
    assert provenance.git_commit() == "0123abc"
