"""Checks for notebook 04's exercises (anchors, box coding, matching), against the library and torchvision.

- ``check_grid_anchors``: one feature map's anchors (Faster R-CNN §3.1.1), as ``AnchorGenerator`` and
  torchvision's ``AnchorGenerator`` place them: centres at ``(j * stride_x, i * stride_y)``.
- ``check_decode``: deltas -> boxes (Faster R-CNN Eq. 2 inverted), as ``BoxCoder.decode`` and torchvision's
  ``BoxCoder.decode_single``, weights and the dw/dh clamp included.
- ``check_match``: anchor labels with the ignore band and rule (i) (Faster R-CNN §3.1.2), as ``Matcher``
  and torchvision's ``Matcher``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from mrcnn_lite.exercises import ExerciseError, call_student, check_close, check_equal, check_shape, passed
from mrcnn_lite.modeling.anchors import AnchorGenerator
from mrcnn_lite.modeling.box_coder import BoxCoder
from mrcnn_lite.modeling.matcher import Matcher

__all__ = ["check_decode", "check_grid_anchors", "check_match"]

RATIOS = (0.5, 1.0, 2.0)


# ------------------------------------------------------------------------------------ Your turn 1: anchors
def _reference_anchors(sizes: tuple[int, ...], ratios: tuple[float, ...], grid: tuple[int, int],
                       stride: tuple[int, int]) -> Tensor:
    """The library's anchors for one map, checked equal to torchvision's on the same grid and strides."""
    lib = AnchorGenerator((sizes,), (ratios,)).grid_anchors([grid], [stride], torch.float32,
                                                            torch.device("cpu"))[0]
    image = ImageList(torch.zeros(1, 3, grid[0] * stride[0], grid[1] * stride[1]),
                      [(grid[0] * stride[0], grid[1] * stride[1])])
    (tv,) = TVAnchorGenerator((sizes,), (ratios,))(image, [torch.zeros(1, 1, *grid)])
    if not torch.equal(lib, tv):  # the library's own contract; never the student's fault
        raise RuntimeError("library anchors differ from torchvision's: run tests/test_anchors.py")
    return lib


def _anchor_hint(got: Tensor, expected: Tensor, stride: tuple[int, int], k: int) -> str:
    """Name the usual mistake when ``got`` has the right shape but other values."""
    half = torch.tensor([stride[1], stride[0], stride[1], stride[0]], dtype=torch.float32) / 2
    if torch.allclose(got, expected + half, atol=1e-3):
        return ("your anchors are centred on the cell centres ((j + 0.5) * stride); torchvision and the "
                "library centre them at (j * stride_x, i * stride_y), the top-left corner of the cell")
    centre, half = (expected[:, :2] + expected[:, 2:]) / 2, (expected[:, 2:] - expected[:, :2]) / 2
    swapped = torch.cat([centre - half.flip(1), centre + half.flip(1)], dim=1)
    if not torch.allclose(swapped, expected) and torch.allclose(got, swapped, atol=1.01):
        return "width and height swapped: the ratio is h / w, so w = size / sqrt(r) and h = size * sqrt(r)"
    if torch.allclose(got.sort(dim=0).values, expected.sort(dim=0).values, atol=1e-3):
        return ("the right anchors in another order: location by location (row-major: i, then j), and "
                f"within a location its {k} cell anchors in the cell_anchors order (ratio-major)")
    if (got - expected).abs().max() <= 0.5 + 1e-3:
        return "round each zero-centred cell anchor to whole pixels before shifting it (torch.round)"
    return "compare with cell_anchors_readable above: same half-sizes, then shift by (j*sx, i*sy)"


def check_grid_anchors(fn: Callable[..., Tensor]) -> None:
    """Your turn 1: ``fn(sizes, ratios, grid, stride)`` -> ``[H * W * k, 4]`` anchors of one feature map."""
    cases = [  # (sizes, ratios, (H, W), (stride_y, stride_x)), what the case is
        ((16,), RATIOS, (6, 5), (4, 4), "an FPN P2 map (6 x 5 locations, one size)"),
        ((16, 32, 64, 128, 256), RATIOS, (3, 4), (16, 16), "a C4 map (15 anchors per location)"),
        ((256,), RATIOS, (4, 4), (64, 56), "a P6 map with unequal strides (64, 56)"),
        ((24,), (1.0,), (1, 1), (8, 8), "one location, one anchor"),
    ]
    for sizes, ratios, grid, stride, what in cases:
        expected = _reference_anchors(sizes, ratios, grid, stride)
        got = call_student(fn, sizes, ratios, grid, stride)
        k = len(sizes) * len(ratios)
        got = check_shape(got, tuple(expected.shape), what=f"anchors of {what}",
                          hint=f"one row per location and anchor: H * W * k = {grid[0]} * {grid[1]} * {k}")
        got = got.to(torch.float32)
        if not torch.allclose(got, expected, atol=1e-3):
            hint = _anchor_hint(got, expected, stride, k)
            check_close(got, expected, what=f"anchors of {what}", hint=hint, atol=1e-3)
    passed("Your turn 1: anchors of one feature map", "equal to the library's and torchvision's")


# ------------------------------------------------------------------------------------ Your turn 2: decode
def _random_boxes(n: int, gen: torch.Generator, size: float = 200.0) -> Tensor:
    """Seeded boxes [n, 4] (XYXY) with corners in [0, size) and sides of 8 px to size / 2 + 8 px."""
    xy = torch.rand(n, 2, generator=gen) * size
    wh = 8 + torch.rand(n, 2, generator=gen) * size / 2
    return torch.cat([xy, xy + wh], dim=1)


def _decode_hint(deltas: Tensor, anchors: Tensor, weights: tuple[float, ...], got: Tensor,
                 expected: Tensor) -> str:
    """Name the usual mistake by comparing ``got`` with the decodes that make it (no weights, no clamp)."""
    unweighted = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(deltas, anchors)
    unclamped = BoxCoder(weights, clamp=math.inf).decode(deltas, anchors)
    if weights != (1.0, 1.0, 1.0, 1.0) and torch.allclose(got, unweighted, rtol=1e-4, atol=1e-3):
        return f"divide the deltas by the weights {weights} first: dx / wx, dy / wy, dw / ww, dh / wh"
    if not torch.isfinite(got).all() or torch.allclose(got, unclamped, rtol=1e-4, atol=1e-3):
        return (f"clamp dw and dh at log(1000 / 16) ≈ {math.log(1000 / 16):.3f} before torch.exp, as the "
                "library does, so a wild delta cannot make an astronomically large box")
    w, h = expected[:, 2] - expected[:, 0], expected[:, 3] - expected[:, 1]
    cxcywh = torch.stack([expected[:, 0] + w / 2, expected[:, 1] + h / 2, w, h], 1)
    if torch.allclose(got, cxcywh, rtol=1e-4, atol=1e-3):
        return "you return (cx, cy, w, h): return the corners (x1, y1, x2, y2) = centre -/+ half the size"
    return "dx and dw move and scale by the anchor's width, dy and dh by its height; sizes use exp"


def check_decode(fn: Callable[..., Tensor]) -> None:
    """Your turn 2: ``fn(deltas [N, 4], anchors [N, 4], weights)`` -> boxes ``[N, 4]`` (XYXY)."""
    gen = torch.Generator().manual_seed(4)
    anchors = _random_boxes(20, gen)
    small = (torch.rand(20, 4, generator=gen) - 0.5) * 0.6
    wild = small.clone()
    wild[:3, 2:] = torch.tensor([[6.0, 1.0], [0.5, 9.0], [20.0, 20.0]])  # exp(20) overflows a box
    gt = _random_boxes(20, gen)
    cases = [
        (small, (1.0, 1.0, 1.0, 1.0), "small deltas, the RPN's weights (1, 1, 1, 1)"),
        (small * torch.tensor([10.0, 10.0, 5.0, 5.0]), (10.0, 10.0, 5.0, 5.0),
         "the box head's weights (10, 10, 5, 5)"),
        (wild, (1.0, 1.0, 1.0, 1.0), "huge dw, dh (the clamp)"),
        (BoxCoder().encode(gt, anchors), (1.0, 1.0, 1.0, 1.0), "deltas from encode: decode gives gt back"),
    ]
    for deltas, weights, what in cases:
        expected = BoxCoder(weights).decode(deltas, anchors)
        tv = tv_utils.BoxCoder(weights).decode_single(deltas, anchors)
        if not torch.allclose(expected, tv, rtol=1e-5, atol=1e-3):
            raise RuntimeError("library decode differs from torchvision's: run the box coder tests")
        got = call_student(fn, deltas.clone(), anchors.clone(), weights)
        got = check_shape(got, tuple(expected.shape), what=f"boxes ({what})",
                          hint="one box (x1, y1, x2, y2) per row of deltas").to(torch.float32)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-3):
            hint = _decode_hint(deltas, anchors, weights, got, expected)
            check_close(got, expected, what=f"boxes ({what})", hint=hint, rtol=1e-4, atol=1e-3)
    passed("Your turn 2: decoding deltas into boxes", "equal to BoxCoder.decode and torchvision's")


# ------------------------------------------------------------------------------------ Your turn 3: matching
def _match_hint(iou: Tensor, got: Tensor, expected: Tensor, high: float, low: float) -> str:
    """Explain the first anchor whose label differs."""
    a = int(torch.nonzero(got != expected)[0])
    best_t, g_best = iou[:, a].max(dim=0)  # compared as a tensor: float32 0.7 >= 0.7, as the Matcher sees it
    above_high, on_low = bool(best_t >= high), bool(best_t == low)
    best, e, y = float(best_t), int(expected[a]), int(got[a])
    per_gt = iou.max(dim=1).values
    rule_i = [g for g in range(len(iou)) if per_gt[g] > 0 and iou[g, a] == per_gt[g]]
    where = f"anchor {a} (best IoU {best:.2f} with ground truth {int(g_best)})"
    if e >= 0 and y >= 0:
        return (f"{where} is positive but matched to the wrong ground truth: an anchor made positive by "
                f"rule (i) keeps its *own* best ground truth, iou[:, a].argmax() = {int(g_best)}")
    if e >= 0 and above_high:
        return f"{where}: IoU >= {high} is positive (>= high, not > high)"
    if e >= 0:
        return (f"{where} is the best anchor of ground truth {rule_i} (ties included): rule (i) makes it "
                f"positive although its IoU is below {high}")
    if y >= 0 and (per_gt == 0).any():  # the anchor is no best anchor of a ground truth that overlaps
        return (f"{where}: a ground truth that overlaps no anchor at all (IoU 0 everywhere) gets no rule (i) "
                "match; only a maximum above 0 counts")
    if y >= 0:
        return f"{where} is below {high} and is no ground truth's best anchor: not positive"
    if e == -2:
        return (f"{where} is in the ignore band {low} <= IoU < {high}: label -2 (ignored), not {y}"
                + (" (IoU exactly the low threshold is ignored: >= low)" if on_low else ""))
    return f"{where} is below the low threshold {low}: label -1 (negative), not {y}"


def _match_cases() -> list[tuple[Tensor, float, float, str]]:
    """The IoU matrices the check runs on, with thresholds and a description of each."""
    gen = torch.Generator().manual_seed(3)
    by_hand = torch.tensor([
        [0.90, 0.70, 0.69, 0.30, 0.29, 0.00, 0.10],
        [0.10, 0.20, 0.50, 0.00, 0.00, 0.40, 0.05],
    ])  # GT 1's best anchor (2, IoU 0.5) is GT 0's too (0.69): rule (i) keeps its own best, GT 0
    ties = torch.tensor([[0.60, 0.20, 0.60, 0.10, 0.00], [0.00, 0.45, 0.00, 0.45, 0.10]])
    anchors = AnchorGenerator(((32,),), (RATIOS,)).grid_anchors([(8, 8)], [(16, 16)], torch.float32,
                                                               torch.device("cpu"))[0]
    real = box_iou(_random_boxes(5, gen, 100.0), anchors)
    lonely = torch.cat([ties, torch.zeros(1, ties.shape[1])])  # a ground truth that overlaps nothing
    return [
        (by_hand, 0.7, 0.3, "a hand-made IoU matrix with values on both thresholds"),
        (ties, 0.7, 0.3, "tied best anchors"),
        (real, 0.7, 0.3, "5 boxes against 192 anchors"),
        (real, 0.5, 0.5, "one threshold 0.5 (no ignore band)"),
        (lonely, 0.7, 0.3, "a ground truth with IoU 0 to every anchor"),
    ]


def check_match(fn: Callable[..., Tensor]) -> None:
    """Your turn 3: ``fn(iou [G, A], high, low)`` -> ``[A]`` int64: GT index, -1 negative, -2 ignored."""
    for iou, high, low, what in _match_cases():
        expected = Matcher(high, low, allow_low_quality_matches=True)(iou.clone())
        if (iou.max(dim=1).values > 0).all():  # torchvision matches zero-IoU rows differently (see Matcher)
            tv = tv_utils.Matcher(high, low, allow_low_quality_matches=True)(iou.clone())
            if not torch.equal(expected, tv):
                raise RuntimeError("library Matcher differs from torchvision's: run its tests")
        got = call_student(fn, iou.clone(), high, low)
        got = check_shape(got, tuple(expected.shape), what=f"matches ({what})",
                          hint="one label per anchor: iou has shape [ground truths, anchors]")
        if got.dtype.is_floating_point:
            raise ExerciseError(f"matches ({what}): dtype {got.dtype}; return integer labels (torch.int64)")
        if not torch.equal(got.to(torch.int64), expected):
            hint = _match_hint(iou, got.to(torch.int64), expected, high, low)
            check_equal(got, expected, what=f"matches ({what})", hint=hint)
    passed("Your turn 3: matching anchors to ground truth", "equal to Matcher and torchvision's Matcher")
