"""Small helpers the notebooks share: where the repository is, seeding, the CI switch, saving figures.

The workbook's notebooks import these instead of re-implementing them, so that every notebook saves its
figures the same way and obeys the same "quick" switch under CI.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

#: The one documented switch: ``MRCNN_LITE_QUICK=1`` makes long notebook runs use a CI-sized schedule.
QUICK_ENV = "MRCNN_LITE_QUICK"


def repo_root() -> Path:
    """The checkout's top folder (the one with ``pyproject.toml``), found from this file or the cwd."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "mrcnn_lite").is_dir():
                return folder
    raise FileNotFoundError("cannot find the mrcnn_lite checkout (pyproject.toml beside mrcnn_lite/)")


def data_dir(name: str = "shapes") -> Path:
    """``data/<name>`` in the checkout: ``shapes`` (generated) or ``coco`` (real COCO 2017, user-provided)."""
    return repo_root() / "data" / name


def figures_dir() -> Path:
    path = repo_root() / "figures"
    path.mkdir(exist_ok=True)
    return path


def quick_mode() -> bool:
    """True when ``MRCNN_LITE_QUICK=1``: notebooks then shorten long runs so ``pytest --nbval`` fits CI."""
    return os.environ.get(QUICK_ENV, "0") not in ("", "0", "false", "False")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch.Generator seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code that uses the legacy global RNG
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def save_figure(fig, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` atomically (temp file + rename) and return the path.

    PNG metadata is reduced to the software name so that the same figure gives the same bytes.
    """
    path = figures_dir() / f"{name}.png"
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
