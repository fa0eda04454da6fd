"""The check that a test run leaves the work tree as it found it (tests/tree_state.py, run by make test)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tree_state  # tests/ is on sys.path (pytest prepends it, as for test_environment.py's conftest)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
SCRIPT = Path(tree_state.__file__)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout like ours: a committed figure, a committed notebook, an ignored build/ and runs/."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "00_pipeline.png").write_bytes(b"\x89PNG committed")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00.ipynb").write_text("{}")
    (tmp_path / ".gitignore").write_text("/build/\n/runs/\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def check(repo: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "check", str(state), str(repo)], capture_output=True,
                          text=True)  # fmt: skip


def save(repo: Path, state: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "save", str(state), str(repo)], check=True)


def test_writes_to_ignored_places_pass(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("state") / "before.json"
    save(repo, state)
    (repo / "build" / "test-output" / "figures").mkdir(parents=True)
    (repo / "build" / "test-output" / "figures" / "00_pipeline.png").write_bytes(b"\x89PNG new")
    (repo / "runs").mkdir()
    (repo / "runs" / "run.json").write_text("{}")
    result = check(repo, state)
    assert result.returncode == 0, result.stdout
    assert "unchanged" in result.stdout


def test_a_rewritten_figure_and_a_new_file_fail(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("state") / "before.json"
    save(repo, state)
    (repo / "figures" / "00_pipeline.png").write_bytes(b"\x89PNG other bytes")  # what nbval used to do
    (repo / "figures" / "new.png").write_bytes(b"\x89PNG")
    result = check(repo, state)
    assert result.returncode == 1
    assert "changed 2 path(s)" in result.stdout
    assert " M figures/00_pipeline.png" in result.stdout and "?? figures/new.png" in result.stdout


def test_files_changed_before_the_run_are_not_blamed_but_rewriting_them_is(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (repo / "notebooks" / "00.ipynb").write_text('{"edited": "by a developer"}')  # before the run
    (repo / "notes.txt").write_text("untracked, not ignored")
    state = tmp_path_factory.mktemp("state") / "before.json"
    save(repo, state)
    assert check(repo, state).returncode == 0
    (repo / "notebooks" / "00.ipynb").write_text('{"edited": "by a test"}')  # same status, new content
    result = check(repo, state)
    assert result.returncode == 1 and " M notebooks/00.ipynb" in result.stdout
    assert "notes.txt" not in result.stdout


def test_a_deleted_file_fails(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("state") / "before.json"
    save(repo, state)
    (repo / "figures" / "00_pipeline.png").unlink()
    result = check(repo, state)
    assert result.returncode == 1 and " D figures/00_pipeline.png" in result.stdout
