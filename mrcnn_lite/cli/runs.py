"""A trained run, read back for ``evaluate`` and ``predict``: its config (a preset, ``run.json`` beside
the checkpoint, or the checkpoint's own) and its weights, refused when they are not finite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mrcnn_lite.config import Config, ConfigError, apply_overrides, from_dict, get_config
from mrcnn_lite.engine.checkpoint import CheckpointError, check_state_dict
from mrcnn_lite.modeling.finite import NonFiniteError


def run_info(checkpoint: Path) -> dict[str, Any]:
    """``run.json`` next to the checkpoint, or {}; a damaged one is an error naming it."""
    path = checkpoint.parent / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e}); it is the run's record of its config, written by train. Pass "
            "--config NAME to evaluate with a preset instead"
        ) from e
    if not isinstance(info, dict):
        raise ConfigError(f"{path}: expected a JSON object (the run's record), got {type(info).__name__}")
    return info


def config_for(checkpoint: Path, ckpt: dict[str, Any], preset: str | None, overrides: list[str]) -> Config:
    """``preset``, else run.json's config beside the checkpoint, else the checkpoint's; then overrides."""
    if preset is not None:
        return get_config(preset, overrides)
    run = run_info(checkpoint)
    if run.get("config"):
        source, config = checkpoint.parent / "run.json", run["config"]
    else:
        source, config = checkpoint, ckpt.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{checkpoint}: no config in the checkpoint nor in a run.json beside it; pass --config NAME"
        )
    try:
        cfg = from_dict(config)
    except ConfigError as e:
        raise ConfigError(f"{source}: the run's config is not valid here: {e}") from e
    return apply_overrides(cfg, overrides)


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: Path) -> None:
    """Load an already read checkpoint's weights, with :func:`check_state_dict`'s errors; a checkpoint with
    NaN or infinite weights (saved by a diverged run before this library refused to) is an error too."""
    check_state_dict(model, ckpt["model"], path)
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of its weight tensors hold NaN or inf (e.g. {bad[0]}): the run had diverged "
            "when it was saved; use an earlier checkpoint of the run"
        )
    model.load_state_dict(ckpt["model"])


def diverged_model(checkpoint: Path, error: NonFiniteError, where: str) -> CheckpointError:
    """The error for a checkpoint whose finite weights still compute NaN or inf (a run diverging)."""
    return CheckpointError(
        f"{checkpoint}: on {where}, the model computes {error}; the run was probably diverging when this "
        "checkpoint was saved: use an earlier checkpoint of the run"
    )
