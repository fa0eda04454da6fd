"""RoIAlign, pure PyTorch (Mask R-CNN §3 "RoIAlign", Figure 3; Table 2c).

RoIPool quantizes twice: the box edges are rounded to the feature grid (``round(x / 16)``) and the bins
are rounded again (floor/ceil), so the pooled features are misaligned with the box by up to a cell, which
hurts pixel-accurate masks. RoIAlign "avoids any quantization of the RoI boundaries or bins (i.e., we use
x/16 instead of [x/16])": the box keeps its real-valued edges, each bin is split into ``s x s`` sub-cells,
each sampled by bilinear interpolation at its centre, and the samples are averaged (or max-ed; "the result
is not sensitive to the exact sampling locations, or how many points are sampled, as long as no
quantization is performed"). Table 2c: RoIAlign gives +3 mask AP over RoIPool with a ResNet-50-C4.
"""

from __future__ import annotations

from torch import Tensor

from .._common import BoxesLike, check_mode, check_sampling_ratio, check_scale, output_hw, to_rois
from .sampling import bilinear_roi_pool


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """RoIAlign of ``input [N, C, H, W]`` over ``boxes`` -> ``[K, C, ph, pw]``.

    ``sampling_ratio <= 0`` is adaptive: ``ceil(roi_height / ph)`` samples per bin row and
    ``ceil(roi_width / pw)`` per column, per RoI. ``aligned=True`` shifts the box by half a pixel so that
    pixel centres sit at ``i + 0.5`` (detectron2's correction; torchvision's ``aligned=True``);
    ``aligned=False`` is the paper's original, which also forces each box to be at least 1 cell wide.
    ``mode="avg"`` equals ``torchvision.ops.roi_align``; ``mode="max"`` takes the max over each bin's samples
    (a sample falling outside the map reads 0).
    """
    use_max, scale, ratio = check_mode(mode), check_scale(spatial_scale), check_sampling_ratio(sampling_ratio)
    rois = to_rois(boxes, input)
    hw = output_hw(output_size)
    return bilinear_roi_pool(input, rois, hw, scale, ratio, aligned, use_max, quantize_box=False)
