"""RoIPool, pure PyTorch (Fast R-CNN, Girshick ICCV 2015; the first row of Mask R-CNN Table 2c).

Mask R-CNN §3: RoIPool "first quantizes a floating-number RoI to the discrete granularity of the feature
map, this quantized RoI is then subdivided into spatial bins which are themselves quantized, and finally
feature values covered by each bin are aggregated (usually by max pooling)". Both quantizations are here,
exactly as ``torchvision.ops.roi_pool`` does them:

1. box: ``x1' = round(x1 * spatial_scale)`` (and y1, x2, y2), the RoI covering cells ``x1' .. x2'``
   inclusive, so its width is ``max(x2' - x1' + 1, 1)`` cells;
2. bins: bin ``j`` of ``pw`` covers cells ``floor(j * width / pw) .. ceil((j + 1) * width / pw) - 1``
   (offset by ``x1'`` and clipped to the map), so neighbouring bins can overlap and differ in size.

Each output is the max over the integer cells of its bin (0 for an empty bin); the gradient flows to the
winning cell only (the first maximum in row-major order, as in torchvision).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._common import MAX_POOL_COORD, BoxesLike, check_scale, output_hw, to_rois
from .sampling import coord_dtype, round_half_away


def _axis_cells(lo: Tensor, hi: Tensor, pooled: int, size: int, scale: float) -> tuple[Tensor, Tensor]:
    """Cells of every bin along one axis: ``(cells [K, pooled, M], used [K, pooled, M])``."""
    start = round_half_away(lo * scale).clamp(-MAX_POOL_COORD, MAX_POOL_COORD).long()  # no wrap-around
    end = round_half_away(hi * scale).clamp(-MAX_POOL_COORD, MAX_POOL_COORD).long()
    length = (end - start + 1).clamp(min=1)
    bin_size = length.to(lo.dtype).view(-1, 1) / pooled
    p = torch.arange(pooled, device=lo.device, dtype=lo.dtype).view(1, -1)
    first = (torch.floor(p * bin_size).long() + start.view(-1, 1)).clamp(0, size)
    last = (torch.ceil((p + 1) * bin_size).long() + start.view(-1, 1)).clamp(0, size)  # exclusive
    m = max(int((last - first).max()), 1) if first.numel() else 1
    cells = first.unsqueeze(-1) + torch.arange(m, device=lo.device).view(1, 1, -1)
    used = cells < last.unsqueeze(-1)
    return cells.clamp(max=size - 1), used


def roi_pool(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoIPool of ``input [N, C, H, W]`` over ``boxes`` -> ``[K, C, ph, pw]``; equals torchvision's."""
    spatial_scale = check_scale(spatial_scale)
    rois = to_rois(boxes, input)
    ph, pw = output_hw(output_size)
    n, c, h, w = input.shape
    k = rois.size(0)
    if h == 0 or w == 0:  # an empty map: every bin is empty and outputs 0 (kept in the graph)
        return input.new_zeros(k, c, ph, pw) + input.sum() * 0
    r = rois.to(coord_dtype(input.dtype))
    ys, yused = _axis_cells(r[:, 2], r[:, 4], ph, h, spatial_scale)
    xs, xused = _axis_cells(r[:, 1], r[:, 3], pw, w, spatial_scale)
    my, mx = ys.size(2), xs.size(2)
    batch = rois[:, 0].long().view(k, 1, 1)
    cells = input.permute(0, 2, 3, 1)[
        batch, ys.view(k, ph * my, 1), xs.view(k, 1, pw * mx)
    ]  # [K, ph*my, pw*mx, C]
    cells = cells.view(k, ph, my, pw, mx, c).permute(0, 5, 1, 3, 2, 4).reshape(k, c, ph, pw, my * mx)
    used = (yused.view(k, ph, 1, my, 1) & xused.view(k, 1, pw, 1, mx)).view(k, 1, ph, pw, my * mx)
    best = cells.masked_fill(~used, float("-inf")).max(dim=-1).values
    empty = ~used.any(-1)
    return torch.where(empty, torch.zeros_like(best), best)
