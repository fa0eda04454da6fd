"""RoI feature extraction: RoIPool, RoIWarp and RoIAlign (Mask R-CNN §3, Figure 3, Table 2c).

``roi_pool``, ``roi_warp`` and ``roi_align`` run the compiled kernels of ``mrcnn_lite._C`` (CPU, and CUDA
when built with it) and fall back to the pure-PyTorch references in :mod:`mrcnn_lite.ops.reference`, with a
one-time warning, when the extension is missing. ``backend()`` reports which kernels are available.
``roi_warp_mnc`` (RoIWarp exactly as MNC's Caffe layer, Table 2c) is pure PyTorch on every device.

All three take the call shape of ``torchvision.ops.roi_align``::

    roi_align(features [N, C, H, W], boxes Tensor[K, 5] | list[Tensor[L, 4]], output_size,
              spatial_scale=1.0, sampling_ratio=-1, aligned=False, mode="avg") -> [K, C, h, w]
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from . import _extension, reference
from ._common import BoxesLike, check_mode, check_sampling_ratio, check_scale, output_hw, to_rois
from .reference.warp_mnc import roi_warp_mnc as _roi_warp_mnc

__all__ = [
    "backend",
    "float32_under_autocast",
    "reference",
    "roi_align",
    "roi_pool",
    "roi_warp",
    "roi_warp_mnc",
]

_warned = False


def backend() -> dict:
    """Which kernels are available: ``{"cpu": True, "cuda": False, "extension": "mrcnn_lite._C", ...}``."""
    ok = _extension.available()
    cuda = _extension.with_cuda()
    if not ok:
        reason = _extension.load_error()
    elif not cuda:
        reason = (
            "extension built without CUDA kernels (no CUDA toolkit or CPU-only torch, or MRCNN_LITE_NO_CUDA)"
        )
    elif not torch.cuda.is_available():
        reason = "CUDA kernels built, but no GPU is visible"
    else:
        reason = "CPU and CUDA kernels available"
    return {
        "cpu": ok,
        "cuda": cuda,
        "cuda_device": cuda and torch.cuda.is_available(),
        "extension": _extension.EXTENSION if ok else None,
        "reason": reason,
    }


def _use_extension(input: Tensor) -> bool:
    global _warned
    if input.device.type == "cpu" and _extension.available():
        return True
    if input.device.type == "cuda" and _extension.with_cuda():
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            f"mrcnn_lite.ops: no compiled kernel for {input.device.type} ({backend()['reason']}); "
            "using the slower pure-PyTorch reference operators",
            stacklevel=3,
        )
    return False


def float32_under_autocast(input: Tensor) -> Tensor:
    """Under autocast (bfloat16 on the CPU, float16 on CUDA) the RoI operators run in float32, as
    torchvision's autocast rule for its ``roi_align`` does: the RoI coordinates are cast to the feature
    map's dtype, and bfloat16's 8-bit mantissa would round a coordinate near 200 px to a multiple of 1 px,
    the very quantization RoIAlign removes (§3, Table 2c)."""
    low = input.dtype in (torch.float16, torch.bfloat16)
    return input.float() if low and torch.is_autocast_enabled(input.device.type) else input


def _sampled_roi_op(
    input: Tensor,
    boxes: BoxesLike,
    output_size,
    spatial_scale,
    sampling_ratio,
    aligned,
    mode,
    quantize_box: bool,
) -> Tensor:
    """RoIAlign (``quantize_box=False``) or RoIWarp (``True``): one compiled kernel serves both."""
    input = float32_under_autocast(input)
    if not _use_extension(input):
        ref = reference.roi_warp if quantize_box else reference.roi_align
        return ref(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, mode)
    use_max, scale, ratio = check_mode(mode), check_scale(spatial_scale), check_sampling_ratio(sampling_ratio)
    # the values of the boxes are checked in C++ (a loop on the CPU; one sync on CUDA), also under compile
    rois, (ph, pw) = to_rois(boxes, input, check_values=False), output_hw(output_size)
    op = torch.ops.mrcnn_lite.roi_align
    return op(input, rois, scale, ph, pw, ratio, bool(aligned), use_max, quantize_box)[0]


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """RoIAlign (Mask R-CNN §3): see :func:`mrcnn_lite.ops.reference.roi_align` for the semantics."""
    return _sampled_roi_op(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, mode, False)


def roi_warp(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """RoIWarp (MNC; Mask R-CNN Table 2c): see :func:`mrcnn_lite.ops.reference.roi_warp`."""
    return _sampled_roi_op(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, mode, True)


def roi_pool(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoIPool (Fast R-CNN): see :func:`mrcnn_lite.ops.reference.roi_pool`; equals torchvision's."""
    input = float32_under_autocast(input)
    if not _use_extension(input):
        return reference.roi_pool(input, boxes, output_size, spatial_scale)
    scale = check_scale(spatial_scale)
    rois, (ph, pw) = to_rois(boxes, input, check_values=False), output_hw(output_size)
    return torch.ops.mrcnn_lite.roi_pool(input, rois, scale, ph, pw)[0]


def roi_warp_mnc(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    mode: str = "max",
) -> Tensor:
    """RoIWarp exactly as MNC's Caffe layer (Mask R-CNN Table 2c's RoIWarp rows): see
    :mod:`mrcnn_lite.ops.reference.warp_mnc`. Pure PyTorch on every device (no compiled kernel), in float32
    under autocast as the other operators."""
    input = float32_under_autocast(input)
    return _roi_warp_mnc(input, boxes, output_size, spatial_scale, sampling_ratio, mode)
