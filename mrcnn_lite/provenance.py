"""Where a run comes from: its seed, the checkout it runs from, that checkout's git commit and the CPU.

A leaf module (the standard library at import; numpy and torch only inside :func:`seed_everything`), so
that the trainer, :mod:`mrcnn_lite.engine.run` (which re-exports these) and the benchmarks share one
seeding function and one ``git_commit`` without an import cycle or a torch import for a commit hash.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import mrcnn_lite

if TYPE_CHECKING:
    import torch

_PACKAGE = Path(mrcnn_lite.__file__).resolve().parent


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (the library's only sources of randomness); returns a
    ``torch.Generator`` seeded the same way, for explicit use."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code draws from the legacy global state
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def repo_root() -> Path:
    """The checkout's top folder (the one with ``pyproject.toml``), found from this package or the cwd."""
    for start in (_PACKAGE, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "mrcnn_lite").is_dir():
                return folder
    raise FileNotFoundError("cannot find the mrcnn_lite checkout (pyproject.toml beside mrcnn_lite/)")


def git_commit(dirty: bool = False) -> str:
    """The commit of the checkout the library runs from, or "unknown"; with ``dirty``, ``+dirty`` is
    appended when tracked files have uncommitted changes (the benchmarks record that)."""
    git = {"cwd": _PACKAGE, "capture_output": True, "text": True, "timeout": 10}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **git).stdout.strip() or "unknown"
        if sha == "unknown" or not dirty:
            return sha
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **git).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if changed.strip() else "")


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (for example "AMD EPYC 7B13"), else what ``platform``
    knows: our machines differ by up to 2.5x in speed, so every timing record names its CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"
