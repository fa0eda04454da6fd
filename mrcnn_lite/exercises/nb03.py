"""Checks for notebook 03's exercises (backbone and FPN).

- Your turn 1, ``receptive_field(layers)``: the (r, j) recurrence of §3, against the extent of the
  gradient of one output cell measured with autograd on a stack of convs of those kernels and strides.
- Your turn 2, ``top_down_merge(top_down, c, lateral)``: one step of FPN's top-down pass (Lin et al. 2017,
  §3), against torchvision's ``FeaturePyramidNetwork`` (the library's FPN) run on the same weights.
- Your turn 3, ``fpn_level(boxes, k_min, k_max)``: FPN's Eq. 1, against the library's
  ``assign_fpn_levels`` and torchvision's ``LevelMapper``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.poolers import LevelMapper

from mrcnn_lite.exercises import ExerciseError, call_student, check_close, check_equal, passed
from mrcnn_lite.modeling.backbone import build_backbone
from mrcnn_lite.modeling.poolers import assign_fpn_levels

__all__ = ["check_fpn_level", "check_receptive_field", "check_top_down_merge", "trunk_layers"]


# ----------------------------------------------------------------------------- Your turn 1


def trunk_layers(trunk: nn.Module) -> list[tuple[int, int]]:
    """(kernel, stride) of the stem's conv and max pool, then of every block's convs (no shortcuts)."""
    layers = [(trunk.conv1.kernel_size[0], trunk.conv1.stride[0])]
    layers.append((trunk.maxpool.kernel_size, trunk.maxpool.stride))
    for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
        for block in stage:
            for name, conv in block.named_children():
                if name.startswith("conv"):
                    layers.append((conv.kernel_size[0], conv.stride[0]))
    return layers


def _measured_rf(layers: list[tuple[int, int]]) -> tuple[int, int]:
    """(RF side, jump) measured with autograd: convs of all-ones weights, the gradient of two neighbours."""
    bound, jump = 1, 1
    for k, s in layers:
        bound, jump = bound + (k - 1) * jump, jump * s
    side = 2 * bound + 4 * jump
    net = nn.Sequential(*(nn.Conv2d(1, 1, k, stride=s, padding=k // 2, bias=False) for k, s in layers))
    for conv in net:
        nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, side, side, requires_grad=True)
    y = net(x) if layers else x
    cy, cx = y.shape[-2] // 2, y.shape[-1] // 2
    starts = []
    for col in (cx, cx + 1):
        (g,) = torch.autograd.grad(y[0, 0, cy, col], x, retain_graph=True)
        cols = torch.nonzero(g[0, 0].sum(0) != 0).flatten()
        starts.append((int(cols.min()), int(cols.max() - cols.min() + 1)))
    return starts[0][1], starts[1][0] - starts[0][0]


def check_receptive_field(fn: Callable[[list[tuple[int, int]]], tuple[int, int]]) -> None:
    """``fn(layers) -> (r, j)`` for a list of ``(kernel, stride)``, against the measured gradient extent."""
    with torch.device("meta"):
        trunk = build_backbone("resnet18", "c5", width=32).body
    cases = {
        "no layers at all (the input pixel itself)": [],
        "two 3x3 convs, stride 1": [(3, 1), (3, 1)],
        "the stem: 7x7 conv stride 2, 3x3 max pool stride 2": [(7, 2), (3, 2)],
        "a 1x1 conv with stride 2 between 3x3 convs": [(3, 1), (1, 2), (3, 1), (3, 2), (3, 1)],
        "the classroom ResNet-18 trunk up to res5": trunk_layers(trunk),
    }
    for what, layers in cases.items():
        got = call_student(fn, list(layers), name="receptive_field")
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise ExerciseError(f"{what}: return a pair (r, j), got {got!r}")
        r, j = _measured_rf(layers)
        if int(got[1]) != j:
            raise ExerciseError(
                f"{what}: jump j = {got[1]}, expected {j}. j is the product of the strides so far; it "
                "starts at 1 (one input pixel between neighbouring input 'cells')")
        if int(got[0]) != r:
            raise ExerciseError(
                f"{what}: RF r = {got[0]}, expected {r} (measured with autograd). A layer adds (k - 1) "
                "times the jump *before* it: update r with the old j, then multiply j by the stride")
    passed("Your turn 1: receptive field arithmetic", f"ResNet-18 res5: r = {r} px, j = {j}")


# ----------------------------------------------------------------------------- Your turn 2


def _pyramid_with(merge: Callable, fpn: FeaturePyramidNetwork, c: OrderedDict) -> list[torch.Tensor]:
    """P2..P5 computed with ``merge`` for the top-down step and ``fpn``'s own 1x1 and 3x3 convs."""
    feats = list(c.values())
    top_down = fpn.inner_blocks[-1][0](feats[-1])
    outs = [fpn.layer_blocks[-1][0](top_down)]
    for i in range(len(feats) - 2, -1, -1):
        try:
            top_down = call_student(merge, top_down, feats[i], fpn.inner_blocks[i][0], name="top_down_merge")
        except RuntimeError as err:  # typically the sum of two maps of different sizes
            raise ExerciseError(
                f"top_down_merge raised RuntimeError ({err}) for a top-down map of {tuple(top_down.shape)} "
                f"and a C map of {tuple(feats[i].shape)}. Upsample to size=c.shape[-2:], not with "
                "scale_factor=2: an odd-sized map is not exactly twice the coarser one") from err
        if not isinstance(top_down, torch.Tensor):
            raise ExerciseError(f"top_down_merge returned {type(top_down).__name__}, expected a tensor")
        if top_down.shape[-2:] != feats[i].shape[-2:]:
            raise ExerciseError(
                f"top_down_merge: output {tuple(top_down.shape)} for a C map of {tuple(feats[i].shape)}. "
                "The merged map must have the finer map's size: upsample to size=c.shape[-2:], not with "
                "scale_factor=2 (an odd-sized map is not exactly twice the coarser one)")
        outs.insert(0, fpn.layer_blocks[i][0](top_down))
    return outs


def check_top_down_merge(fn: Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]) -> None:
    """``fn(top_down, c, lateral)`` = lateral(c) + nearest upsampling of top_down to c's size, inside a whole
    FPN, against torchvision's ``FeaturePyramidNetwork`` (the layers of the library's FPN)."""
    gen = torch.Generator().manual_seed(0)
    cases = {  # (C2..C5 channels, the input image's side): padded to 32, then an odd, unpadded size
        "a padded 128x160 image": ([8, 16, 32, 64], (128, 160)),
        "an unpadded 100x75 image (odd map sizes)": ([4, 8, 8, 16], (100, 75)),
    }
    for what, (channels, (h, w)) in cases.items():
        torch.manual_seed(0)
        fpn = FeaturePyramidNetwork(channels, 12).eval()
        c, size = OrderedDict(), (h, w)
        for i, ch in enumerate(channels):
            size = tuple(-(-s // (4 if i == 0 else 2)) for s in size)  # ceil division, as a stride-2 conv
            c[f"c{i + 2}"] = torch.randn(2, ch, *size, generator=gen)
        with torch.no_grad():
            expected = list(fpn(c).values())
            got = _pyramid_with(fn, fpn, c)
        for level, (g, e) in enumerate(zip(got, expected, strict=True)):
            check_close(g, e, what=f"{what}, P{level + 2}", atol=1e-5, hint=(
                "the top-down map is upsampled with mode='nearest' (FPN §3), then the lateral 1x1 conv of "
                "the finer C map is added; bilinear upsampling or a missing lateral give other values"))
    passed("Your turn 2: the FPN top-down merge", "P2..P5 equal torchvision's FPN")


# ----------------------------------------------------------------------------- Your turn 3


def _boxes(sides_wh: list[tuple[float, float]], offset: float = 0.0) -> torch.Tensor:
    return torch.tensor([[offset, offset / 2, offset + w, offset / 2 + h] for w, h in sides_wh])


def check_fpn_level(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(boxes, k_min, k_max) -> [K] int64`` by FPN's Eq. 1 (k0 = 4, canonical 224), against the library's
    ``assign_fpn_levels`` and torchvision's ``LevelMapper``."""
    squares = [(s, s) for s in (8.0, 40, 111, 112, 113, 223, 224, 225, 447, 448, 900)]
    cases = {
        "square boxes at (0, 0)": (_boxes(squares), 2, 5),
        "the same boxes moved to (50, 25)": (_boxes(squares, 50.0), 2, 5),
        "elongated boxes (sqrt(wh) is the scale, not the longer side)":
            (_boxes([(20, 600), (448, 28), (56, 224), (300, 30), (10, 10)], 30.0), 2, 5),
        "levels clamped to P3..P5": (_boxes(squares, 10.0), 3, 5),
    }  # fmt: skip
    for what, (boxes, k_min, k_max) in cases.items():
        expected = assign_fpn_levels(boxes, k_min, k_max, 4, 224.0)
        mapper = LevelMapper(k_min, k_max, canonical_scale=224, canonical_level=4)
        assert torch.equal(expected, mapper([boxes]) + k_min), "library and torchvision disagree"
        got = call_student(fn, boxes.clone(), k_min, k_max, name="fpn_level")
        check_equal(got, expected, what=f"{what}: levels", hint=(
            "k = floor(4 + log2(sqrt(w*h) / 224)) with w = x1 - x0 and h = y1 - y0 (not x1, y1), floored "
            "(not rounded), then clamped to [k_min, k_max]"))
    passed("Your turn 3: FPN level assignment", "equals assign_fpn_levels and torchvision's LevelMapper")
