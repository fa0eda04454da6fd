"""``roi_warp_mnc``: RoIWarp as MNC's Caffe layer computes it (Mask R-CNN Table 2c's RoIWarp rows).

The reference here is a line-by-line port of ``ROIWarpingForward`` / ``bilinear_interpolate`` /
``get_feature_gradient`` (daijifeng001/caffe-mnc, src/caffe/layers/roi_warping_layer.cu) as scalar loops, with
Caffe's ``Dtype`` played by a numpy scalar type, so the float loop ``fph += 1/r`` rounds as it does there.
Hand-computed cases use the 4x4 map f[y, x] = 4y + x: bilinear sampling reproduces it exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrcnn_lite import ops
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.ops.reference.warp_mnc import roi_warp_mnc

F44 = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)  # f[y, x] = 4y + x
FLT_MAX = float(np.finfo(np.float32).max)


def c_round(v):
    """C's ``round``: halves away from zero, in ``v``'s own precision."""
    t = np.trunc(v)
    return t + np.sign(v) if abs(v - t) >= 0.5 else t


def bilinear_interpolate(data: np.ndarray, height: int, width: int, h, w, d):
    """Port of MNC's ``bilinear_interpolate``: ``(value, h, w)`` or None for a skipped sample."""
    if h < -0.5 or h > height - 0.5 or w < -0.5 or w > width - 0.5:
        return None
    h, w = (d(0) if h <= 0 else h), (d(0) if w <= 0 else w)
    h_low, w_low = int(h), int(w)
    if h_low >= height - 1:
        h_high = h_low = height - 1
        h = d(h_low)
    else:
        h_high = h_low + 1
    if w_low >= width - 1:
        w_high = w_low = width - 1
        w = d(w_low)
    else:
        w_high = w_low + 1
    lh, lw = d(h - h_low), d(w - w_low)
    hh, hw = d(1 - lh), d(1 - lw)
    v1, v2, v3, v4 = (
        d(data[y, x]) for y, x in ((h_low, w_low), (h_low, w_high), (h_high, w_low), (h_high, w_high))
    )
    return d(hh * hw * v1 + hh * lw * v2 + lh * hw * v3 + lh * lw * v4), h, w


def feature_weight(ah, aw, h: int, w: int, height: int, width: int) -> float:
    """Port of MNC's ``get_feature_gradient``: d(sample at (ah, aw)) / d(cell (h, w))."""
    if ah < -0.5 or ah > height - 0.5 or aw < -0.5 or aw > width - 0.5:
        return 0.0
    ah, aw = max(ah, 0.0), max(aw, 0.0)
    hl, wl = int(ah), int(aw)
    if hl >= height - 1:
        hh = hl = height - 1
        ah = float(hl)
    else:
        hh = hl + 1
    if wl >= width - 1:
        wh = wl = width - 1
        aw = float(wl)
    else:
        wh = wl + 1
    if h == hl:
        return (h + 1 - ah) * (w + 1 - aw) if w == wl else (h + 1 - ah) * (aw + 1 - w) if w == wh else 0.0
    if h == hh:
        return (ah + 1 - h) * (w + 1 - aw) if w == wl else (ah + 1 - h) * (aw + 1 - w) if w == wh else 0.0
    return 0.0


def mnc_loop(x, rois, out_hw, scale, d=np.float64, ratio=0, mode="max"):
    """Port of ``ROIWarpingForward`` (``mode="avg"``: the mean of the same kept samples) -> output and, per
    output element, the samples it read with their backward weights ``[(h, w, dout/dsample)]``."""
    x, rois = x.detach().double().numpy(), rois.detach().double().numpy()
    (_, ch, height, width), (ph_n, pw_n) = x.shape, out_hw
    out = np.zeros((len(rois), ch, ph_n, pw_n))
    taps = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for n, roi in enumerate(rois):
            sw, sh, ew, eh = (c_round(d(v) * d(scale)) for v in roi[1:])
            rw, rh = max(d(ew - sw), d(0)), max(d(eh - sh), d(0))
            bh, bw = d(rh / d(ph_n)), d(rw / d(pw_n))
            rat_h = ratio if ratio > 0 else int(math.ceil(d(rh / d(ph_n))))
            rat_w = ratio if ratio > 0 else int(math.ceil(d(rw / d(pw_n))))
            step_h, step_w = d(d(1.0) / d(rat_h)), d(d(1.0) / d(rat_w))
            for c in range(ch):
                data = x[int(roi[0]), c]
                for ph in range(ph_n):
                    for pw in range(pw_n):
                        kept, fph = [], d(ph)
                        while fph <= ph + 1:
                            fpw = d(pw)
                            while fpw <= pw + 1:
                                ih, iw = d(sh + d(fph * bh)), d(sw + d(fpw * bw))
                                s = bilinear_interpolate(data, height, width, ih, iw, d)
                                if s is not None:
                                    kept.append(s)
                                fpw = d(fpw + step_w)
                            fph = d(fph + step_h)
                        if mode == "max":
                            best, arg = -FLT_MAX, None
                            for v, h, w in kept:
                                if v > best:
                                    best, arg = v, (h, w)
                            out[n, c, ph, pw] = best if arg else 0.0
                            taps[n, c, ph, pw] = [(*arg, 1.0)] if arg else []
                        else:
                            out[n, c, ph, pw] = sum(v for v, _, _ in kept) / len(kept) if kept else 0.0
                            taps[n, c, ph, pw] = [(h, w, 1.0 / len(kept)) for _, h, w in kept]
    return torch.from_numpy(out), taps


def mnc_feature_grad(x, rois, taps, grad_out):
    """The feature gradient of ``sum(out * grad_out)`` by ``get_feature_gradient`` over every output."""
    n, c, height, width = x.shape
    g = np.zeros((n, c, height, width))
    for (k, ch, ph, pw), samples in taps.items():
        b = int(rois[k, 0])
        for ah, aw, scale in samples:
            for h in range(max(int(ah) - 1, 0), min(int(ah) + 3, height)):
                for w in range(max(int(aw) - 1, 0), min(int(aw) + 3, width)):
                    g[b, ch, h, w] += (
                        scale
                        * feature_weight(float(ah), float(aw), h, w, height, width)
                        * float(grad_out[k, ch, ph, pw])
                    )
    return torch.from_numpy(g)


def random_case(seed: int, dtype=torch.float64, n=2, c=2, h=9, w=11, k=10, scale=1 / 4):
    """Features and ``k`` boxes of varied sizes (some tiny, some past the border) on an ``h x w`` map."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    size = torch.tensor([w, h], dtype=dtype) / scale
    xy1 = (torch.rand(k, 2, generator=g, dtype=dtype) * 1.2 - 0.15) * size
    wh = torch.rand(k, 2, generator=g, dtype=dtype) ** 2 * size * 0.9
    batch = torch.randint(0, n, (k, 1), generator=g).to(dtype)
    return x, torch.cat([batch, xy1, xy1 + wh], 1)


def box(*xyxy: float) -> torch.Tensor:
    return torch.tensor([[0.0, *xyxy]], dtype=torch.float64)


# ---------------------------------------------------------------- hand-computed


def test_by_hand_bins_read_their_corners_and_edges():
    # box (0, 0, 3, 3), 3x3 bins of 1 cell: r = ceil(1) = 1, so bin (p, q) samples y in {p, p+1},
    # x in {q, q+1}
    # max: 4(p+1) + (q+1); avg: 4(p+0.5) + (q+0.5)
    p, q = torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")
    out = roi_warp_mnc(F44, box(0, 0, 3, 3), 3, mode="max")
    torch.testing.assert_close(out[0, 0], (4 * (p + 1) + q + 1).double())
    out = roi_warp_mnc(F44, box(0, 0, 3, 3), 3, mode="avg")
    torch.testing.assert_close(out[0, 0], (4 * p + q + 2.5).double())
    # our v1 roi_warp samples sub-cell centres p + 0.25, p + 0.75: its max is 4p + q + 3.75, not 4p + q + 5
    old = ops.reference.roi_warp(F44, box(0, 0, 3, 3), 3, 1.0, 2, False, "max")
    torch.testing.assert_close(old[0, 0], (4 * p + q + 3.75).double())


def test_by_hand_rounding_skipped_and_clamped_samples():
    # x: round(0.6) = 1, round(2.4) = 2 -> 1 bin of 1 cell, r = 1: x in {1, 2}
    # y: round(0.4) = 0, round(3.6) = 4 -> 2 bins of 2 cells, r = 2: {0, 1, 2} and {2, 3, 4};
    # y = 4 > 3.5 is skipped
    out = roi_warp_mnc(F44, box(0.6, 0.4, 2.4, 3.6), (2, 1), mode="max")
    torch.testing.assert_close(out.flatten(), torch.tensor([4 * 2 + 2, 4 * 3 + 2], dtype=torch.float64))
    out = roi_warp_mnc(F44, box(0.6, 0.4, 2.4, 3.6), (2, 1), mode="avg")
    torch.testing.assert_close(out.flatten(), torch.tensor([4 * 1 + 1.5, 4 * 2.5 + 1.5], dtype=torch.float64))
    # y 1..4 in 2 bins: {1, 1.75, 2.5}, {2.5, 3.25, 4}: 3.25 reads row 3 (clamped), 4 is skipped;
    # x 0..0 (zero width): r = 0, one sample at x = 0
    out = roi_warp_mnc(F44, box(0, 1, 0, 4), (2, 1), mode="max")
    torch.testing.assert_close(out.flatten(), torch.tensor([10.0, 12.0], dtype=torch.float64))
    out = roi_warp_mnc(F44, box(0, 1, 0, 4), (2, 1), mode="avg")
    torch.testing.assert_close(out.flatten(), torch.tensor([7.0, 11.0], dtype=torch.float64))
    # spatial_scale before the rounding, halves away from zero: 8/16 = 0.5 -> 1, 40/16 = 2.5 -> 3
    out = roi_warp_mnc(F44, box(8, 8, 40, 40), 1, 1 / 16, mode="max")
    torch.testing.assert_close(out.flatten(), torch.tensor([15.0], dtype=torch.float64))  # samples 1..3


def test_outside_and_empty():
    assert torch.equal(
        roi_warp_mnc(F44, box(100, 100, 120, 130), 2), torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    )
    # a box reaching to -1 on the map: its first samples (-1 < -0.5) are skipped, not read as 0
    out = roi_warp_mnc(-F44 - 1, box(-1, -1, 1, 1), 1, mode="max")  # samples -1, 0, 1: kept 0, 1
    assert out.item() == -1.0  # max of -(4y+x)-1 over y, x in {0, 1}
    assert roi_warp_mnc(F44, torch.zeros(0, 5, dtype=torch.float64), 2).shape == (0, 1, 2, 2)


# ---------------------------------------------------------------- against the port of the Caffe loop


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("ratio", [0, 2])
def test_matches_the_caffe_loop_forward_and_backward(mode: str, ratio: int):
    x, rois = random_case(3)
    x.requires_grad_()
    out = roi_warp_mnc(x, rois, (3, 4), 1 / 4, ratio, mode)
    expected, taps = mnc_loop(x, rois, (3, 4), 1 / 4, ratio=ratio, mode=mode)
    torch.testing.assert_close(out, expected)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * grad_out).sum().backward()
    torch.testing.assert_close(x.grad, mnc_feature_grad(x, rois, taps, grad_out))


def test_float32_loop_rounding_and_ties():
    # r = 3 (bins of 3 cells): in float32 the loop's f = p + 1/3 + 1/3 + 1/3 overshoots p + 1 for p = 4, 5, 6
    x = torch.randn(1, 2, 48, 5, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 42.0]])
    out = roi_warp_mnc(x, rois, (14, 1), 1.0, 0, "avg")
    expected32, _ = mnc_loop(x, rois, (14, 1), 1.0, np.float32, mode="avg")
    expected64, _ = mnc_loop(x, rois, (14, 1), 1.0, np.float64, mode="avg")
    torch.testing.assert_close(out.double(), expected32, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected32, expected64, atol=1e-3)  # the dropped samples matter
    out = roi_warp_mnc(x, rois, (14, 1), 1.0, 0, "max")  # max with r = 3: each bin sampled on its own
    torch.testing.assert_close(out.double(), mnc_loop(x, rois, (14, 1), 1.0, np.float32)[0])
    # ties (a constant map): the gradient goes to the first sample of the loop, as MNC's strict `>`
    x = torch.ones(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = box(0.0, 0.0, 4.0, 4.0)
    roi_warp_mnc(x, rois, 2, mode="max").sum().backward()
    _, taps = mnc_loop(x, rois, (2, 2), 1.0)
    torch.testing.assert_close(x.grad, mnc_feature_grad(x, rois, taps, torch.ones(1, 1, 2, 2)))


def test_gradcheck():
    x, rois = random_case(5, n=1, c=2, h=6, w=7, k=4)
    for mode in ("max", "avg"):
        assert torch.autograd.gradcheck(
            lambda f, mode=mode: roi_warp_mnc(f, rois, (2, 3), 1 / 4, 0, mode), (x.requires_grad_(),)
        )


def test_mnc_backward_drops_end_bins_of_small_rois():
    """MNC's ``ROIWarpingBackwardFeature`` looks for the bins that read cell h in
    ``[floor((h - a - 1) / b' - 1), ceil((h - a + 1) / b'))`` with ``b' = (L + 1) / P``, one cell wider than
    the forward's ``b = L / P``: for a RoI of 10 cells and 14 bins, cell a + 9 misses bin 13 (samples
    a + 9.29 ... a + 10), whose gradient our autograd (the derivative of the forward) keeps."""
    a, length, pooled, h = 0, 10, 14, 9
    b_fwd, b_bwd = length / pooled, (length + 1) / pooled
    phend = min(max(math.ceil((h - a + 1) / b_bwd), 0), pooled)
    reads = [p for p in range(pooled) if any(h - 1 < a + (p + k / 1) * b_fwd < h + 1 for k in (0, 1))]
    assert phend == 13 and 13 in reads  # MNC's search stops before bin 13
    x = torch.zeros(1, 1, 12, 1, dtype=torch.float64, requires_grad=True)
    out = roi_warp_mnc(x - torch.arange(12.0).view(1, 1, 12, 1), box(0, a, 0, a + length), (pooled, 1))
    out[0, 0, 13, 0].backward()  # a decreasing map: bin 13's max is its first sample, y = 13 * 10/14
    torch.testing.assert_close(x.grad[0, 0, 9:11, 0], torch.tensor([1 - 4 / 14, 4 / 14], dtype=torch.float64))


# ---------------------------------------------------------------- API and pooler


def test_public_op_and_pooler():
    x, rois = random_case(7, dtype=torch.float32)
    torch.testing.assert_close(ops.roi_warp_mnc(x, rois, 3, 1 / 4), roi_warp_mnc(x, rois, 3, 1 / 4, 0, "max"))
    pooler = RoIFeatureExtractor(
        ["c4"], [4], 3, op="roi_warp_mnc", mode="avg", sampling_ratio=2, aligned=True
    )
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i).squeeze(1) for i in range(2)])
    # MNC's layer has no sampling_ratio or aligned: the pooler binds only the mode
    torch.testing.assert_close(pooler({"c4": x}, boxes), roi_warp_mnc(x, rois[order], 3, 1 / 4, 0, "avg"))
    with pytest.raises(ValueError, match="mode"):
        roi_warp_mnc(x, rois, 3, 1 / 4, 0, "sum")
