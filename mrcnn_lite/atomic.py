"""Atomic file writes: write to a temp file in the target's folder, then ``os.replace`` it onto the target.

An interrupted run never leaves a half-written checkpoint, metrics file, table or figure behind: the
target is either the old file or the new one. Used by the shapes generator (images, annotation files), the
trainer (checkpoints, ``run.json``, ``last_checkpoint``), the notebooks' figures, the workbook runner, the
Table 2 runner and report, and the benchmarks' result files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (its folder is created) to write to. On success the temp file
    replaces ``path`` with the mode ``open()`` would give a new file (0o666 minus the umask; ``mkstemp``
    makes it 0o600); on an exception it is removed and ``path`` is left as it was.

    The temp name ends in ``.tmp``: tell writers that infer a format from the extension (matplotlib's
    ``savefig``) the format; write ``torch.save`` through a file object (given a path, it names the
    archive inside the file after it, so the bytes would differ from run to run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON (indent 2, a final newline) to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")
