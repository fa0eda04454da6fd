"""Reading the workbook's exercise cells in tests: one loader for every exercise test file.

An exercise is a solution cell (nbgrader ``grade_id`` ``nbNN_exK_solution``) followed by a locked check
cell (``nbNN_exK_check``). :func:`stubbed` turns a solution cell into what nbgrader's
``generate_assignment`` releases (each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes
``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the region's indentation; the release test
checks this against nbgrader's own output), so a test can run the stub without nbgrader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTION = re.compile(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION", re.S)
GRADE_ID = re.compile(r"nb(\d\d)_ex(\d+)_(solution|check)")


def grade_id(cell: nbformat.NotebookNode) -> str:
    """The cell's nbgrader ``grade_id`` ("" for a cell that is not graded)."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def notebook_path(notebook: str | Path) -> Path:
    """``notebook`` as a path: a file name is looked up under ``notebooks/``."""
    path = Path(notebook)
    return path if path.is_file() else NOTEBOOKS / path


def exercises(notebook: str | Path) -> dict[int, dict[str, nbformat.NotebookNode]]:
    """The notebook's exercises by number: ``{K: {"solution": cell, "check": cell}}``."""
    found: dict[int, dict[str, nbformat.NotebookNode]] = {}
    for cell in nbformat.read(notebook_path(notebook), as_version=4).cells:
        m = GRADE_ID.fullmatch(grade_id(cell))
        if m:
            found.setdefault(int(m.group(2)), {})[m.group(3)] = cell
    return found


def cell_source(notebook: str | Path, gid: str) -> str:
    """The source of the cell with nbgrader ``grade_id`` ``gid``."""
    for cell in nbformat.read(notebook_path(notebook), as_version=4).cells:
        if grade_id(cell) == gid:
            return cell.source
    raise KeyError(f"{notebook}: no cell with grade_id {gid!r}")


def stubbed(source: str) -> str:
    """The solution cell as the student release has it."""
    indented = "{0}# YOUR CODE HERE\n{0}raise NotImplementedError()"
    return SOLUTION.sub(lambda m: indented.format(m.group(1)), source)


def function(notebook: str | Path, gid: str, name: str, stub: bool = False) -> Any:
    """The function ``name`` that solution cell ``gid`` defines (or its stub), run in a fresh namespace."""
    source = cell_source(notebook, gid)
    namespace: dict[str, Any] = {}
    exec(compile(stubbed(source) if stub else source, gid, "exec"), namespace)  # noqa: S102 - the notebook's own cell
    return namespace[name]
