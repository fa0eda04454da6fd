"""Notebook 03's exercise checks: each passes on a correct solution and fails on the stub and on the usual
wrong answers, with a message that names the mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mrcnn_lite.exercises import ExerciseError, nb03


def stub(*args, **kwargs):
    raise NotImplementedError()


# ----------------------------------------------------------------------------- receptive field


def rf_right(layers):
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r, j


def rf_jump_first(layers):  # multiplies the jump before adding the kernel's reach
    r, j = 1, 1
    for k, s in layers:
        j = j * s
        r = r + (k - 1) * j
    return r, j


def rf_no_jump(layers):  # adds k - 1 per layer, as if every layer had stride 1
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1), j * s
    return r, j


def test_receptive_field_passes_on_the_solution(capsys):
    nb03.check_receptive_field(rf_right)
    assert "r = 435 px, j = 32" in capsys.readouterr().out  # notebook 03's table for res5


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (stub, "not written yet"),
        (rf_jump_first, "RF r ="),
        (rf_no_jump, "RF r ="),
        (lambda layers: 5, "pair"),
    ],
)
def test_receptive_field_fails(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb03.check_receptive_field(fn)


def test_measured_rf_is_the_recurrence_on_a_resnet18_trunk():
    """The check's reference (autograd) agrees with notebook 03's numbers for the stem and the trunk."""
    assert nb03._measured_rf([(7, 2), (3, 2)]) == (11, 4)
    assert nb03._measured_rf([]) == (1, 1)


# ----------------------------------------------------------------------------- FPN merge


def merge_right(top_down, c, lateral):
    return lateral(c) + F.interpolate(top_down, size=c.shape[-2:], mode="nearest")


def merge_bilinear(top_down, c, lateral):
    return lateral(c) + F.interpolate(top_down, size=c.shape[-2:], mode="bilinear", align_corners=False)


def merge_scale_factor(top_down, c, lateral):  # right on padded maps, wrong size on odd ones
    return lateral(c) + F.interpolate(top_down, scale_factor=2, mode="nearest")


def merge_no_lateral(top_down, c, lateral):
    return lateral(c) * 0 + F.interpolate(top_down, size=c.shape[-2:], mode="nearest")


def test_top_down_merge_passes_on_the_solution():
    nb03.check_top_down_merge(merge_right)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (stub, "not written yet"),
        (merge_bilinear, "values differ"),
        (merge_scale_factor, "size=c.shape"),
        (merge_no_lateral, "values differ"),
    ],
)
def test_top_down_merge_fails(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb03.check_top_down_merge(fn)


# ----------------------------------------------------------------------------- FPN level


def level_right(boxes, k_min=2, k_max=5):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.floor(4 + torch.log2(torch.sqrt(w * h) / 224)).clamp(k_min, k_max).long()


def level_rounded(boxes, k_min=2, k_max=5):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.round(4 + torch.log2(torch.sqrt(w * h) / 224)).clamp(k_min, k_max).long()


def level_corners(boxes, k_min=2, k_max=5):  # reads x1, y1 as the width and height
    return torch.floor(4 + torch.log2(torch.sqrt(boxes[:, 2] * boxes[:, 3]) / 224)).clamp(k_min, k_max).long()


def level_fixed_clamp(boxes, k_min=2, k_max=5):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.floor(4 + torch.log2(torch.sqrt(w * h) / 224)).clamp(2, 5).long()


def level_longer_side(boxes, k_min=2, k_max=5):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.floor(4 + torch.log2(torch.maximum(w, h) / 224)).clamp(k_min, k_max).long()


def test_fpn_level_passes_on_the_solution():
    nb03.check_fpn_level(level_right)


@pytest.mark.parametrize(
    "fn", [level_rounded, level_corners, level_fixed_clamp, level_longer_side]
)
def test_fpn_level_fails_on_wrong_answers(fn):
    with pytest.raises(ExerciseError, match="levels: .* differ"):
        nb03.check_fpn_level(fn)


def test_fpn_level_fails_on_the_stub():
    with pytest.raises(ExerciseError, match="not written yet"):
        nb03.check_fpn_level(stub)
