"""RoI feature extraction over one feature map (C4, C5) or a pyramid (FPN): Mask R-CNN §3, Figure 3.

Every RoI gets a fixed-size feature (7×7 for the box head, 14×14 for the mask head) cut out of a feature map
by one of the operators that Table 2c compares: ``roi_pool`` (Fast R-CNN), ``roi_warp`` (RoIAlign on the
rounded box, Table 2 v1), ``roi_warp_mnc`` (MNC's RoIWarp, exactly as its Caffe layer) or ``roi_align``
(Mask R-CNN), with ``max`` or ``avg`` pooling.

With FPN, a RoI of width w and height h (input-image pixels) is read from level

    k = ⌊k0 + log2(√(wh) / 224)⌋,   k0 = 4,   clamped to the pyramid's levels

(FPN paper, Eq. 1): a 224×224 RoI, ImageNet's canonical size, reads P4; one half as big reads P3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from mrcnn_lite import ops

ROI_OPS = ("roi_pool", "roi_warp", "roi_warp_mnc", "roi_align")
ROI_MODES = ("avg", "max")


def assign_fpn_levels(
    boxes: Tensor, k_min: int, k_max: int, k0: int = 4, canonical_size: float = 224.0, eps: float = 1e-6
) -> Tensor:
    """Pyramid level of each box ``[K, 4]`` (XYXY, image pixels) by Eq. 1, clamped to ``[k_min, k_max]``.

    ``eps`` keeps a box whose scale is exactly a power of two times 224 on the level Eq. 1 gives it, despite
    rounding in ``log2`` (torchvision's ``LevelMapper`` does the same).
    """
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    k = torch.floor(k0 + torch.log2(scale / canonical_size) + eps)
    return k.clamp(min=k_min, max=k_max).to(torch.int64)


def roi_operator(
    op: str, mode: str, output_size: int, sampling_ratio: int, aligned: bool
) -> Callable[[Tensor, Tensor, float], Tensor]:
    """``pool(feature, rois, spatial_scale)``: Table 2c's operator ``op`` with its settings bound.

    ``roi_pool`` (Fast R-CNN) quantizes twice and max-pools, so it takes no ``mode``, ``sampling_ratio``
    or ``aligned``; ``roi_warp`` quantizes the RoI then samples bilinearly; ``roi_warp_mnc`` is MNC's layer,
    whose sample grid is its own (it takes only ``mode``); ``roi_align`` (§3) does not quantize. Raises
    ``ValueError`` for an unknown operator or mode, or ``roi_pool`` with ``avg``.
    """
    if op not in ROI_OPS:
        raise ValueError(f"unknown RoI operator {op!r}; choose one of {ROI_OPS}")
    if mode not in ROI_MODES:
        raise ValueError(f"unknown RoI pooling mode {mode!r}; choose one of {ROI_MODES}")
    if op == "roi_pool":
        if mode != "max":
            raise ValueError("roi_pool always max-pools (Fast R-CNN); use mode='max' with it")
        return partial(_roi_pool, output_size=output_size)
    if op == "roi_warp_mnc":
        return partial(_roi_warp_mnc, output_size=output_size, mode=mode)
    fn = ops.roi_align if op == "roi_align" else ops.roi_warp
    return partial(_sampled, fn, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned,
                   mode=mode)  # fmt: skip


def _roi_pool(feature: Tensor, rois: Tensor, spatial_scale: float, *, output_size: int) -> Tensor:
    return ops.roi_pool(feature, rois, output_size, spatial_scale)


def _roi_warp_mnc(
    feature: Tensor, rois: Tensor, spatial_scale: float, *, output_size: int, mode: str
) -> Tensor:
    return ops.roi_warp_mnc(feature, rois, output_size, spatial_scale, 0, mode)


def _sampled(
    fn: Callable[..., Tensor],
    feature: Tensor,
    rois: Tensor,
    spatial_scale: float,
    *,
    output_size: int,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
) -> Tensor:
    return fn(feature, rois, output_size, spatial_scale, sampling_ratio, aligned, mode)


class RoIFeatureExtractor(nn.Module):
    """Fixed-size features for RoIs from the named feature maps of a backbone (§3, Figure 3).

    ``feature_names`` and ``strides`` name the maps to read (one for C4/C5, P2–P5 for FPN: P6 only serves
    the RPN). ``forward(features, boxes)`` takes the backbone's ``dict`` of maps and a list of per-image
    ``Tensor[L, 4]`` boxes (image pixels) and returns ``[sum L, C, output_size, output_size]`` in box order.

    The operator (``op``: Table 2c's ``roi_pool``, ``roi_warp``, ``roi_warp_mnc`` or ``roi_align``; ``mode``
    for all but the first, ``sampling_ratio`` and ``aligned`` for ``roi_warp`` and ``roi_align``) is chosen
    once, here: ``pool(feature, rois, spatial_scale)`` is that
    operator with its settings bound. The attributes ``op``, ``mode``, ``sampling_ratio`` and ``aligned``
    describe it; changing them later does not change the operator.
    """

    def __init__(
        self,
        feature_names: list[str],
        strides: list[int],
        output_size: int,
        *,
        op: str = "roi_align",
        mode: str = "avg",
        sampling_ratio: int = 2,
        aligned: bool = True,
        k0: int = 4,
        canonical_size: float = 224.0,
    ) -> None:
        super().__init__()
        if len(feature_names) != len(strides) or not feature_names:
            raise ValueError(f"need one stride per feature map, got {feature_names} and {strides}")
        self.feature_names = list(feature_names)
        self.strides = list(strides)
        self.levels = [int(round(math.log2(s))) for s in strides]
        if len(strides) > 1 and self.levels != list(range(self.levels[0], self.levels[0] + len(strides))):
            raise ValueError(f"pyramid strides must be consecutive powers of two, got {strides}")
        self.output_size = output_size
        self.op, self.mode = op, mode
        self.sampling_ratio, self.aligned = sampling_ratio, aligned
        self.k0, self.canonical_size = k0, canonical_size
        self.pool = roi_operator(op, mode, output_size, sampling_ratio, aligned)

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        maps = [ops.float32_under_autocast(features[name]) for name in self.feature_names]  # exact RoIs
        rois = torch.cat(
            [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0
        ).to(maps[0].dtype)
        if len(maps) == 1:
            return self.pool(maps[0], rois, 1.0 / self.strides[0])
        levels = assign_fpn_levels(rois[:, 1:], self.levels[0], self.levels[-1], self.k0, self.canonical_size)
        out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], self.output_size, self.output_size))
        for level, feature, stride in zip(self.levels, maps, self.strides, strict=True):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel():
                out.index_copy_(0, idx, self.pool(feature, rois[idx], 1.0 / stride))
        return out
