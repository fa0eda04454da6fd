"""Atomic writes (mrcnn_lite.atomic): the target is the old file or the new one, never a half-written one."""

from __future__ import annotations

import stat
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mrcnn_lite import workbook  # noqa: E402
from mrcnn_lite.atomic import atomic_path, write_bytes  # noqa: E402


def test_atomic_path_replaces_with_the_mode_open_gives(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    reference = tmp_path / "by_open.txt"
    reference.write_text("x")  # a file made by open(), under the same umask
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temp file left


def test_atomic_path_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "table2.md"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table2.md"]


def test_write_bytes_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "000000000001.jpg"
    target.write_bytes(b"old image")
    assert write_bytes(target, b"\xff\xd8new") == target
    assert target.read_bytes() == b"\xff\xd8new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_save_figure_writes_a_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workbook, "figures_dir", lambda: tmp_path)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    path = workbook.save_figure(fig, "line")
    plt.close(fig)
    assert path == tmp_path / "line.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.png"]
