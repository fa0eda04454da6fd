"""Checks of command-line values made before any long computation: ``--device``, output folders and files.
Each raises :class:`~mrcnn_lite.cli.errors.UsageError` naming the option and what was expected."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from mrcnn_lite.cli.errors import UsageError


def check_device(name: str | None) -> str | None:
    """``--device`` as given (None: the default), after checking it names a device this machine has."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(
                f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}); use cpu"
            )
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return name


def device_of(name: str | None) -> torch.device:
    """The checked ``--device``, or CUDA when available, else the CPU."""
    check_device(name)
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _check_writable(folder: Path, option: str, path: Path, what: str) -> None:
    """Create ``folder`` if needed and write (and delete) a temporary file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write {what} there ({e.strerror or e})") from e


def writable_folder(path: Path, option: str, what: str) -> Path:
    """Create ``path`` if needed and check a file can be written in it; errors name ``option``."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; expected a folder for {what}")
    _check_writable(path, option, path, what)
    return path


def writable_file(path: Path, option: str, what: str) -> Path:
    """Check that ``path`` can be written (atomically, beside itself) before any long computation."""
    if path.is_dir():
        raise UsageError(
            f"{option} {path}: is a folder; expected a file name for {what}, e.g. {path}/metrics.json"
        )
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{option} {path}: cannot write {what} there ({parent} is a file, not a folder)")
    _check_writable(parent, option, path, what)
    return path
