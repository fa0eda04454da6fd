"""The tiny training run that the engine, divergence and run-helper tests train on the shapes fixture:
width 8, images of 128-160 pixels, 2 images per batch, 16 RoIs and 10 detections per image, a loss
logged every iteration. A few iterations of it take seconds on one CPU thread.

Imported as ``from tiny_run import ...`` (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mrcnn_lite.config import Config, get_config


def tiny_overrides(max_iter: int = 6, checkpoint_period: int | None = None) -> list[str]:
    """The tiny run's overrides (dotted ``key=value``): ``max_iter`` iterations and, unless None (the
    preset's), a checkpoint every ``checkpoint_period`` iterations."""
    period = [] if checkpoint_period is None else [f"train.checkpoint_period={checkpoint_period}"]
    return [
        "model.width=8", f"train.max_iter={max_iter}", *period, "train.log_period=1", "data.min_size=128",
        "data.max_size=160", "train.images_per_batch=2", "model.roi_batch_size_per_image=16",
        "model.detections_per_image=10",
    ]  # fmt: skip


#: the tiny run of 6 iterations, checkpointing as the preset does
TINY = tiny_overrides()


def tiny_config(
    root: Path,
    preset: str = "classroom_c4",
    extra: Sequence[str] = (),
    *,
    max_iter: int = 6,
    checkpoint_period: int | None = None,
) -> Config:
    """``preset`` with the tiny run's overrides (:func:`tiny_overrides`) on the data set in ``root``, then
    ``extra``."""
    return get_config(preset, [*tiny_overrides(max_iter, checkpoint_period), f"data.root={root}", *extra])
