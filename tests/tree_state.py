"""The work tree as git sees it, saved before a test run and compared after it (issue #18).

Tests must write only to temporary or ignored places; ``make workbook`` alone rewrites tracked files
(the notebooks and ``figures/``). ``make test``, ``make unit`` and ``make nbval`` therefore run::

    python tests/tree_state.py save build/test-output/tree-before.json
    pytest ...
    python tests/tree_state.py check build/test-output/tree-before.json   # exit 1, listing what changed

The state is every path ``git status`` lists (tracked files that differ from HEAD, untracked files that
are not ignored) with its status letters and a hash of its content, so a test that rewrites a file which
was already modified before the run is caught too, and files a developer had changed before the run are
not blamed on the tests. Ignored paths (``.venv/``, ``data/shapes/``, ``runs/``, ``build/``) never count.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from mrcnn_lite.atomic import write_json

ROOT = Path(__file__).resolve().parents[1]


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + str(path.readlink())
    if not path.is_file():
        return "missing" if not path.exists() else "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def snapshot(root: Path = ROOT) -> dict[str, str]:
    """``{path: "XY:sha"}`` for every path ``git status --porcelain`` lists under ``root``."""
    out = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
    fields = out.split("\0")
    state: dict[str, str] = {}
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":  # a rename or copy: the next field is the old path
            i += 1
        state[path] = f"{code}:{_digest(root / path)}"
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``"XY path"`` lines (git's status letters) for each path whose status or content differs between two
    snapshots; a path that was listed before and is no longer (now as in HEAD) shows as ``"-- path"``."""
    lines = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) != after.get(path):
            lines.append(f"{after[path][:2] if path in after else '--'} {path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3) or argv[0] not in ("save", "check"):
        print("usage: python tests/tree_state.py save|check STATE_FILE [REPO]", file=sys.stderr)
        return 2
    action, state_file = argv[0], Path(argv[1])
    root = Path(argv[2]) if len(argv) == 3 else ROOT
    if action == "save":
        write_json(state_file, snapshot(root))
        return 0
    changed = changes(json.loads(state_file.read_text()), snapshot(root))
    if not changed:
        print("work tree: unchanged by the test run")
        return 0
    print(
        f"FAILED: the test run changed {len(changed)} path(s) in the work tree. Tests must write only to "
        "temporary or ignored places (figures go to $MRCNN_LITE_FIGURES_DIR); `make workbook` alone "
        "regenerates figures/ and the notebooks. (Or someone edited the tree during the run.)"
    )
    print("\n".join(changed))
    return 1


if __name__ == "__main__":
    sys.exit(main())
