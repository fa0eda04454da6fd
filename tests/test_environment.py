"""The environment is declared twice (pyproject.toml for pip, environment.yml for conda): they must agree."""

from __future__ import annotations

import re
import sys
import tomllib

import yaml
from conftest import REPO

USER_PACKAGES = {
    "torch",
    "torchvision",
    "jupyterlab",
    "matplotlib",
    "ipywidgets",
    "pycocotools",
    "nbval",
    "papermill",
    "nbgrader",
}


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements() -> list[str]:
    """Everything `make venv` installs: the dependencies and the `teacher` extra (nbgrader)."""
    project = _pyproject()["project"]
    return project["dependencies"] + project.get("optional-dependencies", {}).get("teacher", [])


def _conda() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def _conda_pip() -> list[str]:
    sections = [d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml must have exactly one pip: section"
    return [r for r in sections[0] if not r.startswith("-")]


def test_pip_and_conda_list_the_same_pinned_requirements() -> None:
    pip_reqs = sorted(_requirements())
    conda_reqs = sorted(_conda_pip())
    assert pip_reqs == conda_reqs, (
        f"pyproject.toml and environment.yml disagree: only in pyproject {set(pip_reqs) - set(conda_reqs)}, "
        f"only in environment.yml {set(conda_reqs) - set(pip_reqs)}"
    )


def test_every_requirement_is_pinned_and_torch_matches_the_project_pin() -> None:
    reqs = _requirements()
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, f"unpinned requirements in pyproject.toml: {unpinned}"
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs
    assert USER_PACKAGES <= {_name(r) for r in reqs}, USER_PACKAGES - {_name(r) for r in reqs}


def test_python_is_311_in_both_files() -> None:
    assert _pyproject()["project"]["requires-python"].startswith(">=3.11,<3.12")
    assert "python=3.11" in _conda()["dependencies"]
    assert sys.version_info[:2] == (3, 11), (
        f"this venv runs Python {sys.version.split()[0]}, the project pins 3.11"
    )


def test_installed_versions_are_the_pinned_ones() -> None:
    from importlib.metadata import version

    wrong = {}
    for req in _requirements():
        name, pinned = req.split("==")
        got = version(name)
        if got.split("+")[0] != pinned:
            wrong[name] = (pinned, got)
    assert not wrong, f"installed versions differ from pyproject.toml (pinned, installed): {wrong}"
