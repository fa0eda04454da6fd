"""Notebook 04's exercise checks: each passes on the notebook's solution and fails on the stub and on the
usual wrong answers, with a message that names the mistake."""

from __future__ import annotations

import math
import re

import pytest
import torch
from notebook_cells import cell_source, function

from mrcnn_lite.exercises import ExerciseError, nb04

NOTEBOOK = "04_anchors_rpn.ipynb"


def _cell(gid: str) -> str:
    return cell_source(NOTEBOOK, gid)


def _function(gid: str, name: str, stub: bool = False):
    return function(NOTEBOOK, gid, name, stub)


EXERCISES = [
    ("nb04_ex1_solution", "my_grid_anchors", nb04.check_grid_anchors),
    ("nb04_ex2_solution", "my_decode", nb04.check_decode),
    ("nb04_ex3_solution", "my_match", nb04.check_match),
]


@pytest.mark.parametrize(("grade_id", "name", "check"), EXERCISES)
def test_check_passes_on_the_notebook_solution(grade_id, name, check, capsys):
    check(_function(grade_id, name))
    assert "✓ Your turn" in capsys.readouterr().out


@pytest.mark.parametrize(("grade_id", "name", "check"), EXERCISES)
def test_check_fails_on_the_stub(grade_id, name, check):
    with pytest.raises(ExerciseError, match="not written yet"):
        check(_function(grade_id, name, stub=True))


@pytest.mark.parametrize("grade_id", ["nb04_ex1_check", "nb04_ex2_check", "nb04_ex3_check"])
def test_check_cells_follow_the_convention(grade_id):
    source = _cell(grade_id)
    assert source.startswith("from mrcnn_lite.exercises import nb04\n")
    assert re.fullmatch(r"nb04\.check_\w+\(my_\w+\)", source.splitlines()[-1])


# ----------------------------------------------------------------------------- Your turn 1: anchors
def _cell_anchors(sizes, ratios, swap=False, rounded=True):
    rows = []
    for r in ratios:
        for s in sizes:
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            if swap:
                w, h = h, w
            half = [-w / 2, -h / 2, w / 2, h / 2]
            rows.append([round(v) for v in half] if rounded else half)
    return torch.tensor(rows, dtype=torch.float32)


def _shifts(grid, stride, offset=0.0):
    (gh, gw), (sy, sx) = grid, stride
    return torch.tensor([[(j + offset) * sx, (i + offset) * sy] * 2 for i in range(gh) for j in range(gw)])


def anchors_at_centres(sizes, ratios, grid, stride):
    return (_shifts(grid, stride, 0.5)[:, None] + _cell_anchors(sizes, ratios)[None]).reshape(-1, 4)


def anchors_anchor_major(sizes, ratios, grid, stride):
    return (_shifts(grid, stride)[None] + _cell_anchors(sizes, ratios)[:, None]).reshape(-1, 4)


def anchors_unrounded(sizes, ratios, grid, stride):
    return (_shifts(grid, stride)[:, None] + _cell_anchors(sizes, ratios, rounded=False)[None]).reshape(-1, 4)


def anchors_swapped(sizes, ratios, grid, stride):
    return (_shifts(grid, stride)[:, None] + _cell_anchors(sizes, ratios, swap=True)[None]).reshape(-1, 4)


def anchors_one_per_location(sizes, ratios, grid, stride):
    return _shifts(grid, stride) + _cell_anchors(sizes[:1], ratios[:1])


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (anchors_at_centres, "cell centres"),
        (anchors_anchor_major, "another order"),
        (anchors_unrounded, "round each"),
        (anchors_swapped, "swapped"),
        (anchors_one_per_location, "shape"),
    ],
)
def test_grid_anchors_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb04.check_grid_anchors(fn)


# ----------------------------------------------------------------------------- Your turn 2: decode
def _decode(deltas, anchors, weights, clamp=True, divide=True, corners=True):
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    d = deltas / torch.tensor(weights) if divide else deltas
    dw, dh = d[:, 2], d[:, 3]
    if clamp:
        dw, dh = dw.clamp(max=math.log(1000 / 16)), dh.clamp(max=math.log(1000 / 16))
    x, y, w, h = xa + d[:, 0] * wa, ya + d[:, 1] * ha, wa * torch.exp(dw), ha * torch.exp(dh)
    if not corners:
        return torch.stack([x, y, w, h], 1)
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda d, a, w: _decode(d, a, w, divide=False), "divide the deltas by the weights"),
        (lambda d, a, w: _decode(d, a, w, clamp=False), "clamp dw and dh"),
        (lambda d, a, w: _decode(d, a, w, corners=False), r"\(cx, cy, w, h\)"),
        (lambda d, a, w: _decode(d[:, [1, 0, 3, 2]], a, w), "values differ"),  # x and y mixed up
    ],
)
def test_decode_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb04.check_decode(fn)


# ----------------------------------------------------------------------------- Your turn 3: matching
def _match(iou, high, low, rule_i=True, ties=True, own_best=True, strict=False, no_band=False):
    best, best_gt = iou.max(dim=0)
    m = best_gt.clone()
    m[best < low] = -1
    if not no_band:
        m[(best >= low) & (best < high)] = -2
    else:
        m[best < high] = -1
    if strict:
        m[best <= high] = torch.where(best[best <= high] < low, -1, -2)
    if rule_i:
        for g in range(len(iou)):
            if iou[g].max() > 0:
                hit = torch.where(iou[g] == iou[g].max())[0] if ties else iou[g].argmax()[None]
                m[hit] = best_gt[hit] if own_best else g
    return m


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda iou, h, lo: _match(iou, h, lo, rule_i=False), "rule \\(i\\) makes it positive"),
        (lambda iou, h, lo: _match(iou, h, lo, ties=False), "ties included"),
        (lambda iou, h, lo: _match(iou, h, lo, own_best=False), "its \\*own\\* best ground truth"),
        (lambda iou, h, lo: _match(iou, h, lo, strict=True), r">= high, not > high"),
        (lambda iou, h, lo: _match(iou, h, lo, no_band=True), "ignore band"),
        (lambda iou, h, lo: _match(iou, h, lo).float(), "integer labels"),
    ],
)
def test_match_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb04.check_match(fn)


def test_match_flags_a_rule_i_match_for_a_ground_truth_that_overlaps_nothing():
    def torchvision_like(iou, high, low):  # every zero-IoU anchor counts as the lonely GT's "best"
        m = _match(iou, high, low)
        for g in range(len(iou)):
            if iou[g].max() == 0:
                hit = torch.where(iou[g] == 0)[0]
                m[hit] = iou.max(dim=0).indices[hit]
        return m

    with pytest.raises(ExerciseError, match="overlaps no anchor at all"):
        nb04.check_match(torchvision_like)
