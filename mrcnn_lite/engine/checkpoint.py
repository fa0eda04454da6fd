"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of plain types and tensors only, so that loading it never runs pickled code:
``model`` and ``optimizer`` state dicts, ``iteration`` (completed iterations), ``rng`` (torch, numpy and
Python random states as tensors, from :func:`get_rng_state`), ``config`` (``to_dict`` of the run's config)
and any ``extra`` entries (e.g. ``class_names``). It is written to a temporary file in the same folder
and renamed over the target (``os.replace``), so a run killed mid-write never leaves a truncated file.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrcnn_lite.atomic import atomic_path
from mrcnn_lite.config import Config, to_dict


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model; the message names the file and the keys."""


def get_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python ``random`` states, as tensors and ints."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (legacy global state)
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },  # fmt: skip
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    rng_state: dict[str, Any] | None,
    cfg: Config,
    **extra: Any,
) -> Path:
    """Write the checkpoint atomically (temp file in the same folder, then ``os.replace``); returns path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        "rng": rng_state,
        "config": to_dict(cfg),
        **extra,
    }
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(ckpt, f)
    return path


_EXPECTED = "expected a model_*.pth file that `python -m mrcnn_lite train` wrote into its --out folder"


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in words."""
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if head == b"PK\x03\x04":
        return "a damaged or truncated PyTorch archive: was it copied completely?"
    if head[:1] == b"\x80" and "Weights only load failed" in str(error):  # a pickle (protocol >= 2)
        return "a pickle holding more than tensors and plain values, never loaded since it could run code"
    return "not a PyTorch file"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` on the CPU. A missing file, a folder, a file
    ``torch.load`` cannot read and one without a ``model`` state dict raise :class:`CheckpointError` (or
    ``FileNotFoundError``) naming the file and what was expected."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint; {_EXPECTED}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with warnings.catch_warnings(record=True) as caught:  # torch's remarks on a foreign file: dropped
        warnings.simplefilter("always")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any failure to parse a user's file means "not a checkpoint"
            raise CheckpointError(f"{path}: not a checkpoint ({_unreadable(path, e)}); {_EXPECTED}") from e
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        what = "a state dict without the trainer's entries" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: not a checkpoint of this library (it holds {what}, no 'model' weights); {_EXPECTED}"
        )
    return ckpt


def check_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, show: int = 5
) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and shape-mismatched keys (a few each)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{path}: checkpoint does not match the model (was it trained with another config?)"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            more = f" ... and {len(keys) - show} more" if len(keys) > show else ""
            lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:show])}{more}")
    raise CheckpointError("\n".join(lines))


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load weights (and optimizer state) into ``model``; returns the rest (``iteration``, ``rng``, ...)."""
    ckpt = read_checkpoint(path)
    check_state_dict(model, ckpt["model"], path)
    model.load_state_dict(ckpt.pop("model"))
    opt_state = ckpt.pop("optimizer", None)
    if optimizer is not None:
        if opt_state is None:
            raise CheckpointError(f"{path}: checkpoint has no optimizer state to resume from")
        optimizer.load_state_dict(opt_state)
    return ckpt
