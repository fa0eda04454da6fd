"""Bilinear RoI sampling shared by RoIAlign and RoIWarp (Mask R-CNN §3, Figure 3).

A RoI of size ``h x w`` on the feature map is split into ``ph x pw`` bins; each bin holds ``sy x sx`` regular
sample points at sub-cell centres. Each sample is read by bilinear interpolation from its four nearest feature
cells, then the samples of a bin are averaged (or max-ed). Everything is separable: the row coordinate of a
sample depends only on its bin row, the column only on its bin column. So the sample grid is built as one
``[K, ph, sy]`` table of rows and one ``[K, pw, sx]`` table of columns, and the four corner values of all
samples of all RoIs are read with a single advanced-indexing gather per corner.

Bilinear conventions are torchvision's, exactly: a sample with ``y < -1`` or ``y > H`` reads 0; otherwise
``y`` is clamped to ``[0, H - 1]`` (likewise ``x``). The adaptive ``sampling_ratio <= 0`` gives each RoI
``ceil(h / ph)`` samples per bin row (and ``ceil(w / pw)`` per column), capped at ``MAX_SAMPLING_GRID``
(256), so RoIs have different grids: the tables are padded to the largest grid and padded samples are masked
out. A tap of weight 0 contributes 0 even where the feature is Inf or NaN (as in the compiled kernels), and an
empty map (H or W = 0) gives zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._common import MAX_SAMPLING_GRID


def round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds halves to even)."""
    r = torch.round(x)
    tie = (x - torch.trunc(x)).abs() == 0.5
    return torch.where(tie, torch.trunc(x) + torch.sign(x), r)


def coord_dtype(dtype: torch.dtype) -> torch.dtype:
    """Coordinates are computed in the features' dtype, or float32 for half/bfloat16 (as the kernels do)."""
    return torch.promote_types(dtype, torch.float32)


def _axis_samples(
    lo: Tensor,
    hi: Tensor,
    pooled: int,
    size: int,
    scale: float,
    sampling_ratio: int,
    aligned: bool,
    quantize: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sample taps along one axis for all RoIs.

    ``lo``/``hi`` are the box edges ``[K]`` in image pixels. Returns ``(idx_lo, idx_hi, w_lo, w_hi, grid)``:
    the first four are ``[K, pooled, S]`` (S = largest grid), the lower/upper neighbouring cell and its
    bilinear weight for every sample (weight 0 for padded or outside samples); ``grid`` is ``[K]``.
    """
    offset = 0.5 if aligned else 0.0
    start, end = lo * scale, hi * scale
    if quantize:  # RoIWarp: the box edges snap to the feature grid, as in RoIPool
        start, end = round_half_away(start), round_half_away(end)
    start, end = start - offset, end - offset
    length = end - start
    if not aligned:  # the original RoIAlign forces boxes to be at least one cell wide
        length = length.clamp(min=1.0)
    bin_size = length / pooled
    if sampling_ratio > 0:
        grid = torch.full_like(length, min(sampling_ratio, MAX_SAMPLING_GRID), dtype=torch.long)
    else:  # clamped before the cast: a huge (or overflowed, NaN) length must not wrap around
        grid = torch.ceil(length / pooled).nan_to_num(0.0).clamp(0, MAX_SAMPLING_GRID).long()
    s_max = max(int(grid.max()), 1) if grid.numel() else 1
    p = torch.arange(pooled, device=lo.device, dtype=lo.dtype).view(1, -1, 1)
    i = torch.arange(s_max, device=lo.device, dtype=lo.dtype).view(1, 1, -1)
    g = grid.clamp(min=1).to(lo.dtype).view(-1, 1, 1)
    b = bin_size.view(-1, 1, 1)
    pos = start.view(-1, 1, 1) + p * b + (i + 0.5) * b / g  # sub-cell centres
    used = i < grid.view(-1, 1, 1)

    inside = (pos >= -1.0) & (pos <= size) & used  # False for NaN too
    pos = torch.where(inside, pos, 0.0).clamp(min=0.0)  # outside samples: weight 0 below, any valid index
    idx_lo = pos.floor().long()  # pos >= 0, so floor == trunc == C's (int) cast
    at_edge = idx_lo >= size - 1
    idx_lo = torch.where(at_edge, size - 1, idx_lo)
    idx_hi = torch.where(at_edge, size - 1, idx_lo + 1)
    pos = torch.where(at_edge, idx_lo.to(pos.dtype), pos)
    w_hi = pos - idx_lo
    w_lo = 1.0 - w_hi
    zero = torch.zeros((), dtype=pos.dtype, device=pos.device)
    w_lo, w_hi = torch.where(inside, w_lo, zero), torch.where(inside, w_hi, zero)
    return idx_lo, idx_hi, w_lo, w_hi, grid


def bilinear_roi_pool(
    features: Tensor,
    rois: Tensor,
    output_hw: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    use_max: bool,
    quantize_box: bool,
) -> Tensor:
    """RoIAlign (``quantize_box=False``) or RoIWarp (``quantize_box=True``) on ``rois [K, 5]``.

    Returns ``[K, C, ph, pw]``; differentiable w.r.t. ``features`` through the gathers.
    """
    n, c, h, w = features.shape
    ph, pw = output_hw
    k = rois.size(0)
    if h == 0 or w == 0:  # an empty map: every sample lies outside it and reads 0 (kept in the graph)
        return features.new_zeros(k, c, ph, pw) + features.sum() * 0
    cd = coord_dtype(features.dtype)
    r = rois.to(cd)
    ylo, yhi, wylo, wyhi, gy = _axis_samples(
        r[:, 2], r[:, 4], ph, h, spatial_scale, sampling_ratio, aligned, quantize_box
    )
    xlo, xhi, wxlo, wxhi, gx = _axis_samples(
        r[:, 1], r[:, 3], pw, w, spatial_scale, sampling_ratio, aligned, quantize_box
    )
    sy, sx = ylo.size(2), xlo.size(2)

    nhwc = features.permute(0, 2, 3, 1)  # a view: gathering [b, y, x] gives all channels at once
    batch = rois[:, 0].long().view(k, 1, 1)
    samples = 0
    for yi, wy in ((ylo, wylo), (yhi, wyhi)):
        for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
            corner = nhwc[batch, yi.view(k, ph * sy, 1), xi.view(k, 1, pw * sx)]  # [K, ph*sy, pw*sx, C]
            weight = (wy.view(k, ph * sy, 1, 1) * wx.view(k, 1, pw * sx, 1)).to(features.dtype)
            samples = samples + torch.where(weight != 0, corner * weight, 0.0)  # 0 * Inf would be NaN
    samples = samples.view(k, ph, sy, pw, sx, c).permute(0, 5, 1, 3, 2, 4).reshape(k, c, ph, pw, sy * sx)

    if not use_max:
        count = (gy * gx).clamp(min=1).to(features.dtype).view(k, 1, 1, 1)
        return samples.sum(-1) / count  # padded samples have weight 0
    used = (torch.arange(sy, device=rois.device).view(1, sy, 1) < gy.view(k, 1, 1)) & (
        torch.arange(sx, device=rois.device).view(1, 1, sx) < gx.view(k, 1, 1)
    )
    used = used.view(k, 1, 1, 1, sy * sx)
    best = samples.masked_fill(~used, float("-inf")).max(dim=-1).values  # first maximum wins ties
    empty = (gy * gx == 0).view(k, 1, 1, 1)
    return torch.where(empty, torch.zeros_like(best), best)
