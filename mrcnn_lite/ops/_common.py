"""Argument handling shared by every RoI operator (reference and extension).

All operators take the call shape of ``torchvision.ops.roi_align``: features ``[N, C, H, W]``, boxes either
a ``Tensor[K, 5]`` whose rows are ``(batch_index, x1, y1, x2, y2)`` or a list of ``Tensor[L, 4]`` (one per
image), box coordinates in input-image pixels, scaled onto the feature map by ``spatial_scale``.
"""

from __future__ import annotations

import torch
from torch import Tensor

BoxesLike = Tensor | list[Tensor] | tuple[Tensor, ...]


def output_hw(output_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``7`` -> ``(7, 7)``; ``(7, 5)`` stays; non-positive sizes are rejected."""
    if isinstance(output_size, int):
        h = w = output_size
    else:
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {output_size!r}")
        h, w = (int(v) for v in output_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return h, w


def to_rois(boxes: BoxesLike, features: Tensor) -> Tensor:
    """Boxes as a ``Tensor[K, 5]`` (batch index first), validated against ``features``.

    A list of per-image ``Tensor[L, 4]`` is concatenated with its image index prepended (and cast to the
    features' dtype/device, as torchvision does). A ``Tensor[K, 5]`` is used as given, so its dtype and device
    must already match the features.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be a 4-D tensor [N, C, H, W], got shape {tuple(features.shape)}")
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.size(1) != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"boxes[{i}] must be a Tensor[L, 4] (x1, y1, x2, y2), got {shape}")
        if len(boxes) > features.size(0):
            raise ValueError(
                f"batch index out of range: {len(boxes)} box tensors for {features.size(0)} images"
            )
        parts = [
            torch.cat([torch.full_like(b[:, :1], i), b], dim=1).to(features.device, features.dtype)
            for i, b in enumerate(boxes)
        ]
        rois = torch.cat(parts) if parts else features.new_zeros(0, 5)
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(
                "boxes must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4], "
                f"got shape {tuple(boxes.shape)}"
            )
        rois = boxes
    else:
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if rois.device != features.device:
        raise ValueError(
            f"boxes and features must be on the same device, got {rois.device} and {features.device}"
        )
    if rois.dtype != features.dtype:
        raise ValueError(
            f"boxes and features must have the same dtype, got {rois.dtype} and {features.dtype}"
        )
    if rois.numel() and not torch.compiler.is_compiling():  # a value check: host sync, skipped when traced
        batch = rois[:, 0]
        if bool((batch < 0).any()) or bool((batch >= features.size(0)).any()):
            raise ValueError(
                f"batch index out of range: boxes[:, 0] must lie in [0, {features.size(0) - 1}], "
                f"got min {batch.min().item()}, max {batch.max().item()}"
            )
    return rois


def check_mode(mode: str) -> bool:
    """``"avg"`` -> False, ``"max"`` -> True."""
    if mode not in ("avg", "max"):
        raise ValueError(f'mode must be "avg" or "max", got {mode!r}')
    return mode == "max"
