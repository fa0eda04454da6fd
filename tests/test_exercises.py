"""The workbook's exercises (notebooks 01-07, issue #21) and their student release (`make student`).

Every exercise is a solution cell (grade_id ``nbNN_exK_solution``) followed by a locked check cell
(``nbNN_exK_check``). Here, for each one, in a fresh namespace: the student release's stub + the check must
fail (the check is not vacuous), and the notebook's solution + the check must pass. The release itself
(generated once, with nbgrader, by the code behind `make student`) must hold no solution and no output,
keep every check cell locked, and leave notebooks/ as it was. No notebook is executed beyond those cells.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from notebook_cells import GRADE_ID, exercises, grade_id, stubbed

from mrcnn_lite.exercises.release import build_student_release, exercise_notebooks

CHECK_CELL = re.compile(r"from mrcnn_lite\.exercises import nb(\d\d)\n\nnb\1\.check_\w+\(\w+\)\n?")
#: The least number of exercises per notebook (issue #21: at least two, three or four in 02 and 05).
MIN_EXERCISES = {1: 2, 2: 3, 3: 2, 4: 2, 5: 3, 6: 2, 7: 2}




def _all_exercises() -> list[tuple[str, int]]:
    return [(p.name, k) for p in exercise_notebooks(REPO) for k in sorted(exercises(p))]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The student release, generated once by the code behind `make student`; checks notebooks/ after."""
    before = _digest(REPO / "notebooks")
    out = tmp_path_factory.mktemp("release")
    written = build_student_release(out / "student", course=out / "course", repo=REPO)
    assert _digest(REPO / "notebooks") == before, "generating the release changed notebooks/"
    return {p.name: p for p in written}


def _run_cells(*sources: str, label: str) -> str:
    """Execute the cells one after another in one fresh namespace; returns what they printed."""
    namespace: dict[str, object] = {"__name__": "__exercise__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for k, src in enumerate(sources):
            exec(compile(src, f"<{label} cell {k}>", "exec"), namespace)  # noqa: S102 - the notebook's own cells
    return printed.getvalue()


@pytest.mark.parametrize(("notebook", "k"), _all_exercises())
def test_the_check_fails_on_the_stub_and_passes_on_the_solution(
    release: dict[str, Path], notebook: str, k: int
) -> None:
    source = exercises(REPO / "notebooks" / notebook)[k]
    assert set(source) == {"solution", "check"}, f"{notebook} exercise {k}: one solution, one check cell"
    released = exercises(release[notebook])[k]
    stub, check = released["solution"].source, released["check"].source
    assert "raise NotImplementedError()" in stub, f"{notebook} exercise {k}: the release has no stub"
    assert check == source["check"].source, "the check cell must reach the release unchanged"
    assert stubbed(source["solution"].source) == stub, "notebook_cells.stubbed must match nbgrader's stub"
    with pytest.raises((AssertionError, NotImplementedError)):
        _run_cells(stub, check, label=f"{notebook} ex{k} stub")
    printed = _run_cells(source["solution"].source, check, label=f"{notebook} ex{k} solution")
    assert "✓" in printed, f"{notebook} exercise {k}: the check passed without saying so: {printed!r}"


@pytest.mark.parametrize("notebook", [p.name for p in exercise_notebooks(REPO)])
def test_exercise_cells_follow_the_convention(notebook: str) -> None:
    nb_number = int(notebook[:2])
    cells = nbformat.read(REPO / "notebooks" / notebook, as_version=4).cells
    for i, cell in enumerate(cells):
        assert "import nbgrader" not in cell.source and "from nbgrader" not in cell.source, (
            f"{notebook} cell {i}: never import nbgrader (students have only the workbook's packages)"
        )
        m = GRADE_ID.fullmatch(grade_id(cell))
        if not m:
            continue
        meta = cell.metadata["nbgrader"]
        assert int(m.group(1)) == nb_number, f"{notebook} cell {i}: {m.group(0)} names another notebook"
        assert cell.cell_type == "code" and meta.get("schema_version") == 3
        if m.group(3) == "solution":
            assert meta["solution"] is True and meta["grade"] is False and meta["locked"] is False
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, (notebook, i)
            assert cells[i - 1].cell_type == "markdown" and "### Your turn" in cells[i - 1].source, (
                f"{notebook} cell {i}: an exercise opens with a '### Your turn N: ...' markdown cell"
            )
            assert grade_id(cells[i + 1]) == m.group(0).replace("solution", "check"), (
                f"{notebook} cell {i}: the check cell must follow its solution cell"
            )
        else:
            assert meta["grade"] is True and meta["solution"] is False and meta["locked"] is True
            assert meta.get("points", 0) > 0, f"{notebook} cell {i}: a graded check has points"
            assert CHECK_CELL.fullmatch(cell.source) and f"nb{nb_number:02d}" in cell.source, (
                f"{notebook} cell {i}: a check cell is exactly `from mrcnn_lite.exercises import nbNN` and "
                f"`nbNN.check_<name>(<function>)`, got {cell.source!r}"
            )


def test_the_release_has_no_solutions_no_outputs_and_locked_checks(release: dict[str, Path]) -> None:
    assert sorted(release) == [p.name for p in exercise_notebooks(REPO)]
    assert (next(iter(release.values())).parent / "README.md").is_file()
    for name, path in release.items():
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, f"{name}: a solution is left"
        nb = nbformat.read(path, as_version=4)
        assert not {"widgets", "papermill"} & set(nb.metadata), f"{name}: the teacher's run state is left"
        source_ids = [grade_id(c) for c in nbformat.read(REPO / "notebooks" / name, as_version=4).cells]
        assert [grade_id(c) for c in nb.cells] == source_ids, f"{name}: cells lost or reordered"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name}: a cell kept its outputs"
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                assert meta.get("locked") is True, f"{name}: check cell {meta.get('grade_id')} is not locked"


@pytest.mark.parametrize("notebook", [p.name for p in exercise_notebooks(REPO)])
def test_every_notebook_has_its_exercises(notebook: str) -> None:
    found = exercises(REPO / "notebooks" / notebook)
    least = MIN_EXERCISES[int(notebook[:2])]
    complete = [k for k, cells in found.items() if set(cells) == {"solution", "check"}]
    assert len(complete) >= least, f"{notebook}: {len(complete)} exercises, issue #21 asks for {least}+"
    assert sorted(found) == list(range(1, len(found) + 1)), f"{notebook}: exercises numbered 1..N"


def test_a_course_folder_with_students_work_is_never_deleted(tmp_path: Path) -> None:
    """Regenerating the release into a course folder that holds submissions would delete them and the
    gradebook: it refuses, naming the folder."""
    from mrcnn_lite.exercises.release import generate_assignments

    course = tmp_path / "course"
    (course / "submitted" / "student1").mkdir(parents=True)
    (course / "gradebook.db").write_text("kept")
    with pytest.raises(FileExistsError, match="students' work"):
        generate_assignments([], course)
    assert (course / "gradebook.db").read_text() == "kept"
