"""Argument handling shared by every RoI operator (reference and extension).

All operators take the call shape of ``torchvision.ops.roi_align``: features ``[N, C, H, W]``, boxes either
a ``Tensor[K, 5]`` whose rows are ``(batch_index, x1, y1, x2, y2)`` or a list of ``Tensor[L, 4]`` (one per
image), box coordinates in input-image pixels, scaled onto the feature map by ``spatial_scale``.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

BoxesLike = Tensor | list[Tensor] | tuple[Tensor, ...]

# The largest sample grid per bin and axis (``kMaxSamplingGrid`` in mrcnn_lite/csrc/roi_geometry.h): the
# adaptive grid (``sampling_ratio <= 0``) is ``min(ceil(roi size / output size), MAX_SAMPLING_GRID)`` and an
# explicit ``sampling_ratio`` above it is rejected, so a huge box costs at most 256 x 256 samples per bin.
MAX_SAMPLING_GRID = 256
# RoIPool's and RoIWarp's rounded box edges, in feature cells, are clamped to +-2^28 before any integer cast.
MAX_POOL_COORD = 2.0**28


def _as_int(v, name: str, value) -> int:
    """``v`` as an int: ints, integer tensors and integral floats (``7.0``) pass; ``7.5``, NaN, str fail."""
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(v)
    except TypeError:
        if isinstance(v, float) and v.is_integer():
            return int(v)
    raise TypeError(f"{name} must be an int, got {value!r}")


def output_hw(output_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``7`` -> ``(7, 7)``; ``(7, 5)`` stays; non-positive or non-integral sizes are rejected."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {output_size!r}")
        h, w = (_as_int(v, "output_size", output_size) for v in output_size)
    else:
        h = w = _as_int(output_size, "output_size", output_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    if h >= 2**31 or w >= 2**31:
        raise ValueError(f"output_size must be below 2^31, got {output_size!r}")
    return h, w


def check_scale(spatial_scale) -> float:
    """``spatial_scale`` as a float; it must be positive and finite (NaN, Inf, 0, negatives: rejected)."""
    try:
        s = float(spatial_scale)
    except (TypeError, ValueError):
        raise TypeError(f"spatial_scale must be a number, got {spatial_scale!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"spatial_scale must be a positive finite number, got {spatial_scale!r}")
    return s


def check_sampling_ratio(sampling_ratio) -> int:
    """``sampling_ratio`` as an int: ``<= 0`` is adaptive; above MAX_SAMPLING_GRID it is rejected."""
    s = _as_int(sampling_ratio, "sampling_ratio", sampling_ratio)
    if s > MAX_SAMPLING_GRID:
        raise ValueError(
            f"sampling_ratio must be at most {MAX_SAMPLING_GRID} samples per bin and axis (<= 0: adaptive), "
            f"got {sampling_ratio!r}"
        )
    return s


def to_rois(boxes: BoxesLike, features: Tensor, check_values: bool = True) -> Tensor:
    """Boxes as a ``Tensor[K, 5]`` (batch index first), validated against ``features``.

    A list of per-image ``Tensor[L, 4]`` is concatenated with its image index prepended (and cast to the
    features' dtype/device, as torchvision does). A ``Tensor[K, 5]`` is used as given, so its dtype and device
    must already match the features. ``check_values``: also check the values (finite coordinates, integral
    batch indices in range) with one combined reduction, hence one device-to-host sync, skipped under
    ``torch.compile``; the compiled kernels check them in C++ instead (free on the CPU, one sync on CUDA), so
    the extension path passes ``False``.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"input must be a Tensor [N, C, H, W], got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"input must be a 4-D tensor [N, C, H, W], got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(
            f"input must be a floating-point tensor (float, double, half, bfloat16), got {features.dtype}"
        )
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
            f"boxes and input (features) must be on the same device, got {rois.device} and {features.device}"
        )
    if rois.dtype != features.dtype:
        raise ValueError(
            f"boxes and input (features) must have the same dtype, got {rois.dtype} and {features.dtype}"
        )
    if check_values and rois.numel() and not torch.compiler.is_compiling():
        check_roi_values(rois, features.size(0))
    return rois


def check_roi_values(rois: Tensor, batch: int) -> None:
    """Finite coordinates and integral batch indices in ``[0, batch - 1]``: one fused reduction and one
    device-to-host sync; the row-by-row message is only built on failure."""
    b = rois[:, 0]
    bad = ~torch.isfinite(rois).all(1) | (b < 0) | (b >= batch) | (b != b.floor())
    if not bool(bad.any()):  # the one sync
        return
    i = int(bad.nonzero()[0, 0])
    row = rois[i].tolist()
    text = ", ".join(f"{v:g}" for v in row)  # as the C++ message prints them
    if not all(math.isfinite(v) for v in row):
        raise ValueError(
            f"boxes[{i}] = ({text}) is not finite: batch indices and box coordinates must be finite"
        )
    if row[0] != math.floor(row[0]):
        raise ValueError(f"batch index boxes[{i}, 0] = {row[0]:g} must be an integer in [0, {batch - 1}]")
    raise ValueError(
        f"batch index out of range: boxes[{i}, 0] = {row[0]:g} must lie in [0, {batch - 1}] "
        f"(input has {batch} images)"
    )


def check_mode(mode: str) -> bool:
    """``"avg"`` -> False, ``"max"`` -> True."""
    if mode not in ("avg", "max"):
        raise ValueError(f'mode must be "avg" or "max", got {mode!r}')
    return mode == "max"
