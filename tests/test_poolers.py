"""RoI feature extraction over C4/C5 maps and FPN pyramids, against torchvision's MultiScaleRoIAlign."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from mrcnn_lite import ops
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor, assign_fpn_levels

NAMES, STRIDES = ["p2", "p3", "p4", "p5"], [4, 8, 16, 32]


def pyramid(seed: int = 0, n: int = 2, c: int = 4, h: int = 512, w: int = 640) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, torch.randn(n, c, h // s, w // s, generator=g)) for k, s in zip(NAMES, STRIDES, strict=True)
    )


def random_boxes(seed: int, k: int, h: int = 512, w: int = 640) -> torch.Tensor:
    """Boxes of scale sqrt(wh) log-uniform in [8, 640] px (every pyramid level) and aspect ratio 1/2..2."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.empty(k).uniform_(2.1, 6.45, generator=g))
    ratio = torch.exp(torch.empty(k).uniform_(-0.7, 0.7, generator=g))
    wh = torch.stack([scale * ratio.sqrt(), scale / ratio.sqrt()], dim=1)
    xy = torch.rand(k, 2, generator=g) * (torch.tensor([w, h]) - wh).clamp(min=0)
    return torch.cat([xy, xy + wh], dim=1)


def test_levels_by_hand() -> None:
    # sqrt(wh) = 224 -> k0 = 4; 112 -> 3; 448 -> 5; 56 -> 2; 10 -> 4 + log2(10/224) = -0.49 -> clamp to 2;
    # 2000 -> 7.2 -> clamp to 5; 223 -> 3.99 -> 3 (floor)
    sides = [224, 112, 448, 56, 10, 2000, 223]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    assert assign_fpn_levels(boxes, 2, 5).tolist() == [4, 3, 5, 2, 2, 5, 3]


def test_levels_equal_torchvision_level_mapper() -> None:
    boxes = random_boxes(1, 500)
    expected = LevelMapper(k_min=2, k_max=5, canonical_scale=224, canonical_level=4)([boxes]) + 2
    assert torch.equal(assign_fpn_levels(boxes, 2, 5), expected)


def test_fpn_roi_align_equals_torchvision_multiscale() -> None:
    feats = pyramid()
    boxes = [random_boxes(2, 80), random_boxes(3, 50)]
    ours = RoIFeatureExtractor(NAMES, STRIDES, 7, op="roi_align", mode="avg", sampling_ratio=2, aligned=False)
    theirs = torchvision.ops.MultiScaleRoIAlign(NAMES, 7, 2)
    expected = theirs(feats, boxes, [(512, 640), (512, 640)])
    levels = assign_fpn_levels(torch.cat(boxes), 2, 5)
    assert len(levels.unique()) == 4, "the boxes should spread over all four levels"
    torch.testing.assert_close(ours(feats, boxes), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "op,mode",
    [
        ("roi_align", "avg"),
        ("roi_align", "max"),
        ("roi_warp", "avg"),
        ("roi_warp", "max"),
        ("roi_pool", "max"),
    ],
)
def test_single_map_uses_the_chosen_operator(op: str, mode: str) -> None:
    feats = {"c4": torch.randn(2, 4, 32, 40, generator=torch.Generator().manual_seed(4))}
    boxes = [random_boxes(5, 6), random_boxes(6, 3)]
    pooler = RoIFeatureExtractor(["c4"], [16], 14, op=op, mode=mode, sampling_ratio=2, aligned=True)
    out = pooler(feats, boxes)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    if op == "roi_pool":
        expected = torchvision.ops.roi_pool(feats["c4"], rois, 14, 1 / 16)
    else:
        expected = getattr(ops.reference, op)(feats["c4"], rois, 14, 1 / 16, 2, True, mode)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # the operator is bound at construction: the attributes describe it, they do not select it
    assert (pooler.op, pooler.mode) == (op, mode)
    pooler.op, pooler.mode = "roi_align" if op != "roi_align" else "roi_pool", "sum"
    assert torch.equal(pooler(feats, boxes), out)
    assert torch.equal(pooler.pool(feats["c4"], rois, 1 / 16), out)


def test_arguments_after_the_output_size_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        RoIFeatureExtractor(["c4"], [16], 7, "roi_align")  # type: ignore[misc]


def test_gradient_reaches_every_level_used() -> None:
    feats = OrderedDict((k, v.requires_grad_()) for k, v in pyramid(7).items())
    boxes = [random_boxes(8, 60)]
    RoIFeatureExtractor(NAMES, STRIDES, 7)(feats, boxes).sum().backward()
    used = set(assign_fpn_levels(boxes[0], 2, 5).tolist())
    for name, level in zip(NAMES, (2, 3, 4, 5), strict=True):
        grad = feats[name].grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == (level in used), name


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown RoI operator 'roi_crop'"):
        RoIFeatureExtractor(["c4"], [16], 7, op="roi_crop")
    with pytest.raises(ValueError, match="unknown RoI pooling mode 'sum'"):
        RoIFeatureExtractor(["c4"], [16], 7, mode="sum")
    with pytest.raises(ValueError, match="roi_pool always max-pools"):
        RoIFeatureExtractor(["c4"], [16], 7, op="roi_pool", mode="avg")
    with pytest.raises(ValueError, match="one stride per feature map"):
        RoIFeatureExtractor(["p2", "p3"], [4], 7)
    with pytest.raises(ValueError, match="consecutive powers of two"):
        RoIFeatureExtractor(["p2", "p4"], [4, 16], 7)


@pytest.mark.parametrize("op,mode", [("roi_align", "avg"), ("roi_pool", "max")])
def test_under_bfloat16_autocast_rois_stay_float32(op: str, mode: str) -> None:
    """CPU mixed precision hands the pooler bfloat16 feature maps; the RoI coordinates must not be rounded
    to bfloat16 (8-bit mantissa: 1 px steps near 200 px, RoIPool's quantization again). Under autocast the
    output equals the float32 pooler run on the same (bfloat16-valued) maps, and differs from what rounding
    the boxes to bfloat16 would give."""
    feats = OrderedDict((k, v.bfloat16()) for k, v in pyramid(9).items())
    boxes = [random_boxes(10, 60) + 0.3, random_boxes(11, 40) + 0.3]  # fractional coordinates
    pooler = RoIFeatureExtractor(NAMES, STRIDES, 7, op=op, mode=mode, sampling_ratio=2, aligned=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pooler(feats, boxes)
    as_float = OrderedDict((k, v.float()) for k, v in feats.items())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, pooler(as_float, boxes), rtol=0, atol=0)
    rounded = pooler(as_float, [b.bfloat16().float() for b in boxes])
    assert not torch.allclose(out, rounded, atol=1e-3), "the bfloat16-rounded boxes should pool differently"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the ops themselves, called directly
        direct = getattr(ops, op)(feats["p3"], boxes, 7, 1 / 8)
    expected = getattr(ops, op)(as_float["p3"], boxes, 7, 1 / 8)
    torch.testing.assert_close(direct, expected, rtol=0, atol=0)
