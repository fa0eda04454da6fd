"""RoIWarp, pure PyTorch (MNC, Dai et al. CVPR 2016; the middle row of Mask R-CNN Table 2c).

RoIWarp sits between RoIPool and RoIAlign: like RoIPool it quantizes the box (its edges are rounded to the
feature grid, ``round(x * spatial_scale)``), but like RoIAlign it then resamples the quantized box with
bilinear interpolation instead of quantizing the bins. Mask R-CNN §3 / Table 2c note that RoIWarp "also
adopted bilinear resampling" yet performs on par with RoIPool: the box quantization alone is enough to lose
the pixel alignment that RoIAlign keeps. Here RoIWarp is exactly RoIAlign run on the rounded box, so the
Table 2c comparison isolates that single quantization step.
"""

from __future__ import annotations

from torch import Tensor

from .._common import BoxesLike, check_mode, check_sampling_ratio, check_scale, output_hw, to_rois
from .sampling import bilinear_roi_pool


def roi_warp(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """RoIWarp of ``input [N, C, H, W]`` over ``boxes`` -> ``[K, C, ph, pw]``.

    The box edges become ``round(x * spatial_scale)`` (halves away from zero, like RoIPool); then sampling,
    ``sampling_ratio``, ``aligned`` and ``mode`` behave exactly as in :func:`roi_align` (Table 2c reports
    RoIWarp with both ``"max"`` and ``"avg"``).
    """
    use_max, scale, ratio = check_mode(mode), check_scale(spatial_scale), check_sampling_ratio(sampling_ratio)
    rois = to_rois(boxes, input)
    hw = output_hw(output_size)
    return bilinear_roi_pool(input, rois, hw, scale, ratio, aligned, use_max, quantize_box=True)
