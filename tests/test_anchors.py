"""Anchors and the box coder against torchvision and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from mrcnn_lite.modeling.anchors import AnchorGenerator, cell_anchors
from mrcnn_lite.modeling.box_coder import BoxCoder

C4_SIZES = ((32, 64, 128, 256, 512),)
C4_RATIOS = ((0.5, 1.0, 2.0),)
FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
FPN_RATIOS = ((0.5, 1.0, 2.0),) * 5


def image_list(batch_hw: tuple[int, int], image_sizes: list[tuple[int, int]]) -> ImageList:
    return ImageList(torch.zeros(len(image_sizes), 3, *batch_hw), image_sizes)


# ---- anchors --------------------------------------------------------------------------------------------


def test_cell_anchors_hand_computed() -> None:
    # size 32: ratio h/w = 0.5 -> w = 32 / sqrt(0.5) = 45.25, h = 22.63; halves 22.63, 11.31 rounded.
    expected = torch.tensor(
        [[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]
    )
    torch.testing.assert_close(cell_anchors((32,), (0.5, 1.0, 2.0)), expected, rtol=0, atol=0)
    # ratio-major: all sizes for ratio 0.5 first
    assert cell_anchors((32, 64), (0.5, 1.0))[:, 2].tolist() == [23.0, 45.0, 16.0, 32.0]


def test_num_anchors_per_location() -> None:
    assert AnchorGenerator(C4_SIZES, C4_RATIOS).num_anchors_per_location() == [15]
    assert AnchorGenerator(FPN_SIZES, FPN_RATIOS).num_anchors_per_location() == [3] * 5


def test_layout_level_location_anchor() -> None:
    """Index = level offset + (row * W + col) * k + anchor; anchor shifted by (col, row) * stride."""
    gen = AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    feats = [torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 2, 3)]
    (anchors,) = gen(image_list((32, 40), [(32, 40)]), feats)
    assert anchors.shape == (4 * 5 * 3 + 2 * 3 * 3, 4)
    base0, base1 = cell_anchors((16,), (0.5, 1.0, 2.0)), cell_anchors((32,), (0.5, 1.0, 2.0))
    row, col, a = 2, 3, 1  # level 0, stride 8
    torch.testing.assert_close(
        anchors[(row * 5 + col) * 3 + a], base0[a] + torch.tensor([24.0, 16.0, 24.0, 16.0])
    )
    row, col, a = 1, 2, 2  # level 1, stride (32 // 2, 40 // 3) = (16, 13)
    torch.testing.assert_close(
        anchors[60 + (row * 3 + col) * 3 + a], base1[a] + torch.tensor([26.0, 16.0, 26.0, 16.0])
    )


@pytest.mark.parametrize(
    ("batch_hw", "image_sizes", "grids"),
    [
        ((64, 96), [(64, 96)], [(4, 6)]),
        ((112, 160), [(112, 160), (90, 100)], [(7, 10)]),
        ((100, 130), [(100, 130)], [(7, 9)]),  # strides not dividing the image: 100 // 7, 130 // 9
    ],
)
def test_c4_anchors_equal_torchvision(batch_hw, image_sizes, grids) -> None:
    ours, theirs = AnchorGenerator(C4_SIZES, C4_RATIOS), TVAnchorGenerator(C4_SIZES, C4_RATIOS)
    images = image_list(batch_hw, image_sizes)
    feats = [torch.zeros(len(image_sizes), 4, *g) for g in grids]
    a, b = ours(images, feats), theirs(images, feats)
    assert len(a) == len(b) == len(image_sizes)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize(
    ("batch_hw", "grids"),
    [
        ((128, 128), [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]),
        ((96, 160), [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]),  # P6 by stride-2 max-pool: ceil
        ((100, 72), [(25, 18), (13, 9), (7, 5), (4, 3), (2, 2)]),
    ],
)
def test_fpn_anchors_equal_torchvision(batch_hw, grids) -> None:
    ours, theirs = AnchorGenerator(FPN_SIZES, FPN_RATIOS), TVAnchorGenerator(FPN_SIZES, FPN_RATIOS)
    images = image_list(batch_hw, [batch_hw, (batch_hw[0] - 8, batch_hw[1] - 4)])
    feats = [torch.zeros(2, 4, *g) for g in grids]
    for x, y in zip(ours(images, feats), theirs(images, feats), strict=True):
        assert torch.equal(x, y)
    assert len(ours(images, feats)[0]) == sum(3 * h * w for h, w in grids)


def test_anchors_follow_feature_dtype() -> None:
    gen = AnchorGenerator(C4_SIZES, C4_RATIOS)
    (anchors,) = gen(image_list((64, 64), [(64, 64)]), [torch.zeros(1, 2, 4, 4, dtype=torch.float64)])
    assert anchors.dtype == torch.float64


def test_mismatched_levels_raise() -> None:
    with pytest.raises(ValueError):
        AnchorGenerator(FPN_SIZES, C4_RATIOS)
    gen = AnchorGenerator(FPN_SIZES, FPN_RATIOS)
    with pytest.raises(ValueError):
        gen(image_list((64, 64), [(64, 64)]), [torch.zeros(1, 2, 16, 16)])


# ---- box coder --------------------------------------------------------------------------------------------


def random_boxes(n: int, gen: torch.Generator, size: float = 200.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 2 + 8.0  # size ratios < 1000 / 16: decode's clamp not hit
    return torch.cat([xy, xy + wh], dim=1)


def test_encode_hand_computed() -> None:
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    gt = torch.tensor([[5.0, 5.0, 25.0, 15.0]])  # centre (15, 10), 20 x 10
    torch.testing.assert_close(BoxCoder().encode(gt, anchor), torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]]))
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(coder.encode(gt, anchor), torch.tensor([[10.0, 5.0, 5 * math.log(2.0), 0.0]]))
    torch.testing.assert_close(coder.decode(torch.tensor([[10.0, 5.0, 5 * math.log(2.0), 0.0]]), anchor), gt)


def test_decode_clamps_scale() -> None:
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    box = BoxCoder().decode(torch.tensor([[0.0, 0.0, 50.0, -1.0]]), anchor)
    w, h = box[0, 2] - box[0, 0], box[0, 3] - box[0, 1]
    torch.testing.assert_close(w, torch.tensor(1000.0))  # exp(log(1000 / 16)) * 16
    torch.testing.assert_close(h, torch.tensor(16.0 * math.exp(-1.0)))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(weights) -> None:
    gen = torch.Generator().manual_seed(0)
    anchors, gt = random_boxes(300, gen), random_boxes(300, gen)
    coder = BoxCoder(weights=weights)
    torch.testing.assert_close(coder.decode(coder.encode(gt, anchors), anchors), gt, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_equals_torchvision(weights) -> None:
    gen = torch.Generator().manual_seed(1)
    anchors, gt = random_boxes(500, gen), random_boxes(500, gen)
    ours, theirs = BoxCoder(weights=weights), tv_utils.BoxCoder(weights=weights)
    torch.testing.assert_close(ours.encode(gt, anchors), theirs.encode_single(gt, anchors), rtol=0, atol=0)
    deltas = torch.randn(500, 4 * 3, generator=gen) * 3  # class-specific (K = 3), some clamped
    torch.testing.assert_close(
        ours.decode(deltas, anchors), theirs.decode_single(deltas, anchors), rtol=0, atol=0
    )
    assert ours.decode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
