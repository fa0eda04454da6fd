"""The pure-PyTorch reference RoI operators (mrcnn_lite.ops.reference) and the public API's argument checks.

Hand-computed cases use a 4x4 map with f[y, x] = 4y + x (values 0..15). Bilinear interpolation reproduces a
linear function exactly, so a RoIAlign sample at (y, x) inside [0, 3]^2 reads 4y + x, and a bin's average is
4 * mean(y) + mean(x).
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from mrcnn_lite import ops
from mrcnn_lite.ops import reference as ref

F44 = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)  # f[y, x] = 4y + x


def box(*xyxy: float) -> torch.Tensor:
    return torch.tensor([[0.0, *xyxy]], dtype=torch.float64)


def random_case(seed: int, dtype=torch.float32, n=2, c=3, h=13, w=17, k=12, scale=1 / 8, inside=False):
    """Features [n, c, h, w] and k boxes (image pixels, scale 1/scale) of varied sizes, some off the map."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    size = torch.tensor([w, h], dtype=dtype) / scale
    if inside:  # strictly inside the map: no clamped samples, so no ties in max mode
        xy1 = (0.1 + 0.5 * torch.rand(k, 2, generator=g, dtype=dtype)) * (size - 2 / scale)
        wh = (0.1 + 0.4 * torch.rand(k, 2, generator=g, dtype=dtype)) * (size - 2 / scale)
        xy1 = xy1 + 1 / scale
    else:
        xy1 = (torch.rand(k, 2, generator=g, dtype=dtype) * 1.2 - 0.1) * size
        wh = torch.rand(k, 2, generator=g, dtype=dtype) * size * 0.6
    batch = torch.randint(0, n, (k, 1), generator=g).to(dtype)
    return x, torch.cat([batch, xy1, xy1 + wh], 1)


# ---------------------------------------------------------------- hand-computed


def test_roi_pool_by_hand():
    # box (0.6, 0.4, 2.4, 2.6) -> rounded to cells x 1..2, y 0..3 (round(0.6)=1, round(0.4)=0, round(2.4)=2,
    # round(2.6)=3): width 2, height 4; 2x2 bins -> columns {1}, {2}; rows {0, 1}, {2, 3}.
    # bin (0,0): max(f[0,1], f[1,1]) = max(1, 5) = 5;   bin (0,1): max(f[0,2], f[1,2]) = max(2, 6) = 6
    # bin (1,0): max(f[2,1], f[3,1]) = max(9, 13) = 13; bin (1,1): max(f[2,2], f[3,2]) = max(10, 14) = 14
    expected = torch.tensor([[[[5.0, 6.0], [13.0, 14.0]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_pool(F44, box(0.6, 0.4, 2.4, 2.6), 2), expected)
    # unequal, overlapping bins: x 0..3 (4 cells) into 3 bins of 4/3 cells: [floor(0), ceil(4/3)) = [0, 2),
    # [floor(4/3), ceil(8/3)) = [1, 3), [floor(8/3), ceil(4)) = [2, 4); row 0 only
    # -> max(0, 1), max(1, 2), max(2, 3)
    expected = torch.tensor([[[[1.0, 2.0, 3.0]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_pool(F44, box(0, 0, 3, 0), (1, 3)), expected)


def test_roi_align_by_hand():
    b = box(0.5, 0.5, 2.5, 2.5)  # 2x2 cells -> bins of 1 cell; sampling 2 puts samples at +0.25 / +0.75
    # aligned=False: bin (0,0) samples y, x in {0.75, 1.25}: mean 1.0 -> 4*1 + 1 = 5;
    # next column: mean x = 2 -> 6; next row: mean y = 2 -> 9, 10
    # e.g. the sample (0.75, 0.75): .25*.25*f00 + .25*.75*f01 + .75*.25*f10 + .75*.75*f11 = 0 + .1875 + .75 +
    # 2.8125 = 3.75 = 4*.75 + .75
    expected = torch.tensor([[[[5.0, 6.0], [9.0, 10.0]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_align(F44, b, 2, 1.0, 2, aligned=False), expected)
    # max: the largest sample of each bin is its bottom-right one: (1.25, 1.25) -> 4*1.25 + 1.25 = 6.25, ...
    expected = torch.tensor([[[[6.25, 7.25], [10.25, 11.25]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_align(F44, b, 2, 1.0, 2, aligned=False, mode="max"), expected)
    # aligned=True shifts the box by -0.5 to [0, 2]: sample means 0.5, 1.5 -> 4*.5 + .5 = 2.5, 3.5, 6.5, 7.5
    expected = torch.tensor([[[[2.5, 3.5], [6.5, 7.5]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_align(F44, b, 2, 1.0, 2, aligned=True), expected)
    # adaptive sampling (ratio 0): ceil(1 cell / 1 bin) = 1 sample at the bin centre -> same means as above
    torch.testing.assert_close(ref.roi_align(F44, b, 2, 1.0, 0, aligned=True), expected)


def test_roi_align_edges_by_hand():
    # box x in [-1, 1], y in [0, 2], 1x2 bins, one sample each: x = -0.5 (clamped to 0) and 0.5, y = 1
    # -> f(1, 0) = 4 and f(1, 0.5) = 4.5
    expected = torch.tensor([[[[4.0, 4.5]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_align(F44, box(-1, 0, 1, 2), (1, 2), 1.0, 1), expected)
    # a sample at x = -3 < -1 lies outside the map and reads 0
    torch.testing.assert_close(
        ref.roi_align(F44, box(-4, 0, -2, 2), 1, 1.0, 1), torch.zeros(1, 1, 1, 1).double()
    )


def test_roi_warp_by_hand():
    # box (0.6, 0.4, 2.4, 2.6) is first rounded to (1, 0, 2, 3): width 1, height 3 -> bins 0.5 x 1.5 cells;
    # one sample per bin at x = 1.25, 1.75 and y = 0.75, 2.25 -> 4y + x = 4.25, 4.75, 10.25, 10.75
    expected = torch.tensor([[[[4.25, 4.75], [10.25, 10.75]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_warp(F44, box(0.6, 0.4, 2.4, 2.6), 2, 1.0, 1), expected)
    # RoIAlign keeps the real box (width 1.8, height 2.2): x = 0.6 + 0.45 = 1.05, 1.95; y = 0.95, 2.05
    # -> 4.85, 5.75, 9.25, 10.15: the quantization moved every sample by up to half a cell (Table 2c)
    expected = torch.tensor([[[[4.85, 5.75], [9.25, 10.15]]]], dtype=torch.float64)
    torch.testing.assert_close(ref.roi_align(F44, box(0.6, 0.4, 2.4, 2.6), 2, 1.0, 1), expected)


# ---------------------------------------------------------------- vs torchvision


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 4])
@pytest.mark.parametrize("scale", [1 / 4, 1 / 32])
def test_reference_roi_align_matches_torchvision(aligned, sampling_ratio, scale):
    x, rois = random_case(seed=sampling_ratio, scale=scale)
    for size in (7, (5, 3)):
        expected = torchvision.ops.roi_align(x, rois, size, scale, sampling_ratio, aligned)
        torch.testing.assert_close(
            ref.roi_align(x, rois, size, scale, sampling_ratio, aligned), expected, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [7, 2, (3, 5)])
def test_reference_roi_pool_equals_torchvision(dtype, size):
    x, rois = random_case(seed=3, dtype=dtype)
    x.requires_grad_()
    got = ref.roi_pool(x, rois, size, 1 / 8)
    (g_got,) = torch.autograd.grad(got, x, torch.ones_like(got))
    expected = torchvision.ops.roi_pool(x, rois, size, 1 / 8)
    (g_exp,) = torch.autograd.grad(expected, x, torch.ones_like(expected))
    assert torch.equal(got, expected)
    assert torch.equal(g_got, g_exp)


def test_reference_gradient_matches_torchvision():
    x, rois = random_case(seed=7, n=3)
    x.requires_grad_()
    grad = torch.randn(rois.size(0), 3, 7, 7, generator=torch.Generator().manual_seed(0))
    (g_ref,) = torch.autograd.grad(ref.roi_align(x, rois, 7, 1 / 8, 2, True), x, grad)
    (g_tv,) = torch.autograd.grad(torchvision.ops.roi_align(x, rois, 7, 1 / 8, 2, True), x, grad)
    torch.testing.assert_close(g_ref, g_tv, atol=1e-5, rtol=1e-5)


def test_list_of_boxes_equals_batch_index_form():
    x, rois = random_case(seed=4)
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i).flatten() for i in range(2)])
    for fn in (ref.roi_align, ref.roi_warp, ref.roi_pool):
        torch.testing.assert_close(fn(x, per_image, 3, 1 / 8), fn(x, rois, 3, 1 / 8)[order])


# ---------------------------------------------------------------- gradcheck (float64)

REFERENCE_CASES = [
    ("align avg", lambda x, r: ref.roi_align(x, r, 3, 1 / 8, 2, True)),
    ("align avg adaptive", lambda x, r: ref.roi_align(x, r, (2, 3), 1 / 8, 0, False)),
    ("align max", lambda x, r: ref.roi_align(x, r, 3, 1 / 8, 2, True, "max")),
    ("warp avg", lambda x, r: ref.roi_warp(x, r, 3, 1 / 8, 2, False)),
    ("warp max", lambda x, r: ref.roi_warp(x, r, 3, 1 / 8, 0, True, "max")),
    ("pool", lambda x, r: ref.roi_pool(x, r, 3, 1 / 8)),
]


@pytest.mark.parametrize("name,fn", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_reference_gradcheck(name, fn):
    x, rois = random_case(seed=11, dtype=torch.float64, c=2, h=8, w=9, k=4, inside=True)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fn(t, rois), (x,))


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    "fn", [ref.roi_align, ref.roi_warp, ref.roi_pool, ops.roi_align, ops.roi_warp, ops.roi_pool]
)
def test_empty_boxes(fn):
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = fn(x, torch.zeros(0, 5), (7, 5), 0.5)
    assert out.shape == (0, 3, 7, 5)
    out.sum().backward()  # still part of the graph
    assert x.grad is not None and not x.grad.any()
    assert fn(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 7).shape == (0, 3, 7, 7)


def test_outside_and_degenerate_boxes_match_torchvision():
    x = torch.randn(2, 3, 10, 12)
    rois = torch.tensor(
        [
            [0, -50.0, -50.0, -20.0, -20.0],  # wholly outside (top-left)
            [1, 150.0, 10.0, 200.0, 60.0],  # wholly outside (right)
            [0, -10.0, -10.0, 30.0, 30.0],  # partly outside
            [1, 40.0, 20.0, 40.0, 60.0],  # zero width
            [0, 40.0, 20.0, 40.0, 20.0],  # a point
            [1, 60.0, 60.0, 20.0, 20.0],  # inverted
        ]
    )
    for aligned in (True, False):
        for s in (0, 2):
            expected = torchvision.ops.roi_align(x, rois, 7, 1 / 8, s, aligned)
            torch.testing.assert_close(
                ref.roi_align(x, rois, 7, 1 / 8, s, aligned), expected, atol=1e-6, rtol=1e-6
            )
            torch.testing.assert_close(
                ops.roi_align(x, rois, 7, 1 / 8, s, aligned), expected, atol=1e-6, rtol=1e-6
            )
    assert torch.equal(ref.roi_pool(x, rois, 7, 1 / 8), torchvision.ops.roi_pool(x, rois, 7, 1 / 8))
    assert torch.equal(ops.roi_pool(x, rois, 7, 1 / 8), torchvision.ops.roi_pool(x, rois, 7, 1 / 8))
    assert not ref.roi_align(x, rois[:2], 7, 1 / 8, 2, True, "max").any()  # every sample outside -> zeros
    torch.testing.assert_close(
        ops.roi_warp(x, rois, 7, 1 / 8, 0, True, "max"), ref.roi_warp(x, rois, 7, 1 / 8, 0, True, "max")
    )


# ---------------------------------------------------------------- bad inputs

ALL_FNS = [ref.roi_align, ref.roi_warp, ref.roi_pool, ops.roi_align, ops.roi_warp, ops.roi_pool]


@pytest.mark.parametrize("fn", ALL_FNS)
def test_bad_inputs(fn):
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match="4-D"):
        fn(x[0], rois, 2)
    with pytest.raises(ValueError, match=r"Tensor\[K, 5\]"):
        fn(x, rois[:, 1:], 2)
    with pytest.raises(ValueError, match=r"Tensor\[L, 4\]"):
        fn(x, [rois], 2)
    with pytest.raises(TypeError, match=r"Tensor\[K, 5\]"):
        fn(x, rois.numpy(), 2)
    with pytest.raises(ValueError, match="batch index out of range"):
        fn(x, torch.tensor([[2, 1.0, 1.0, 5.0, 5.0]]), 2)
    with pytest.raises(ValueError, match="batch index out of range"):
        fn(x, torch.tensor([[-1, 1.0, 1.0, 5.0, 5.0]]), 2)
    with pytest.raises(ValueError, match="batch index out of range"):
        fn(x, [rois[:, 1:]] * 3, 2)
    with pytest.raises(ValueError, match="output_size must be positive"):
        fn(x, rois, 0)
    with pytest.raises(ValueError, match="output_size must be positive"):
        fn(x, rois, (2, -1))
    with pytest.raises(ValueError, match="same dtype"):
        fn(x, rois.double(), 2)
    with pytest.raises(ValueError, match="same device"):
        fn(x, rois.to("meta"), 2)


@pytest.mark.parametrize("fn", [ref.roi_align, ref.roi_warp, ops.roi_align, ops.roi_warp])
def test_bad_mode(fn):
    with pytest.raises(ValueError, match="mode must be"):
        fn(torch.randn(1, 1, 4, 4), torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]]), 2, mode="sum")


def test_backend_reports_kernels():
    info = ops.backend()
    assert set(info) >= {"cpu", "cuda", "extension", "reason"}
    assert isinstance(info["reason"], str) and info["reason"]
