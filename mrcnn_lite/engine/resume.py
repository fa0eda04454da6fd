"""Resuming a run: the checkpoint ``last_checkpoint`` names, the config changes since, the RNG states.

A resumed run restores the model, the optimizer, the iteration and every RNG state (each rank's own under
``torch.distributed`` when the number of processes is the same), so that an interrupted run continued to
the end gives the same parameters, bit for bit, as an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from mrcnn_lite.config import Config, to_dict
from mrcnn_lite.engine.checkpoint import CheckpointError, load_checkpoint, set_rng_state

LAST = "last_checkpoint"


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each dotted key whose value differs between two ``to_dict`` configs."""

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            out.update(
                {f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
            )
        return out

    a, b = flat(old), flat(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def resume_path(out: Path) -> Path:
    """The checkpoint ``out/last_checkpoint`` names, with an error naming both files when it is missing."""
    last = out / LAST
    name = last.read_text().strip()
    path = out / name
    if name and "/" not in name and path.is_file():
        return path
    found = sorted(p.name for p in out.glob("model_*.pth"))
    there = (
        f"the checkpoints there are {', '.join(found)}" if found else "there are no model_*.pth files there"
    )
    raise CheckpointError(
        f"cannot resume: {last} names {name!r}, which is not a checkpoint file in {out}; {there}. Write the "
        "name of the one to resume from into last_checkpoint, or run without --resume to start afresh."
    )


def restore(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    rank: int,
    world: int,
    warn: bool,
    stacklevel: int = 2,
) -> int:
    """Load the checkpoint ``out/last_checkpoint`` names into ``model`` and ``optimizer``, restore this
    rank's RNG state, and return its iteration; ``warn``: warn (with ``stacklevel``) about config changes."""
    path = resume_path(out)
    state = load_checkpoint(path, model, optimizer)
    changed = config_changes(state["config"], to_dict(cfg))
    if changed and warn:
        warnings.warn(
            f"resuming {path} with a changed config: {'; '.join(changed)}", stacklevel=stacklevel + 1
        )
    per_rank = state.get("rng_per_rank")
    set_rng_state(per_rank[rank] if per_rank is not None and len(per_rank) == world else state["rng"])
    return state["iteration"]
