"""``metrics.jsonl``: one JSON line every ``train.log_period`` iterations, written by rank 0 only.

A fresh run replaces the old log; a resumed one drops the lines the interrupted run wrote after its last
checkpoint (and a line the interruption cut short), so that the log reads as one uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

from mrcnn_lite.atomic import write_text

METRICS = "metrics.jsonl"


def trim_metrics(path: Path, iteration: int) -> None:
    """Drop log lines after ``iteration`` (written by the interrupted run after its last checkpoint), and a
    line the interruption cut short (not JSON); the file is replaced atomically."""

    def up_to(line: str) -> bool:
        try:
            return json.loads(line)["iteration"] <= iteration
        except (json.JSONDecodeError, KeyError, TypeError):
            return False

    if path.is_file():
        kept = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if up_to(ln)]
        write_text(path, "".join(ln + "\n" for ln in kept))


def prepare_log(path: Path, resumed_from: int | None) -> None:
    """Before a run: trim the log to ``resumed_from`` (a resumed run) or delete it (None: a fresh run)."""
    if resumed_from is not None:
        trim_metrics(path, resumed_from)
    elif path.exists():
        path.unlink()  # a fresh run replaces the old log


class MetricsLog:
    """Appends records to ``path``, one JSON line each, flushed at once; does nothing when not ``enabled``
    (ranks other than 0). A context manager that closes the file."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.file = path.open("a") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
