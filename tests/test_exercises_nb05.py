"""Notebook 05's exercise checks: each passes on the notebook's solution and fails on the stub and on the
usual wrong answers, with a message that names the mistake."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from notebook_cells import cell_source, function

from mrcnn_lite.exercises import ExerciseError, nb05
from mrcnn_lite.modeling.losses import mask_loss, mask_targets

NOTEBOOK = "05_heads_and_losses.ipynb"


def _cell(gid: str) -> str:
    return cell_source(NOTEBOOK, gid)


def _function(gid: str, name: str, stub: bool = False):
    return function(NOTEBOOK, gid, name, stub)


EXERCISES = [
    ("nb05_ex1_solution", "my_mask_target", nb05.check_mask_target),
    ("nb05_ex2_solution", "my_mask_loss", nb05.check_sigmoid_mask_loss),
    ("nb05_ex3_solution", "my_mask_loss_grad", nb05.check_mask_loss_grad),
    ("nb05_ex4_solution", "my_box_loss", nb05.check_box_loss),
]


@pytest.mark.parametrize(("grade_id", "name", "check"), EXERCISES)
def test_check_passes_on_the_notebook_solution(grade_id, name, check, capsys):
    check(_function(grade_id, name))
    assert "✓ Your turn" in capsys.readouterr().out


@pytest.mark.parametrize(("grade_id", "name", "check"), EXERCISES)
def test_check_fails_on_the_stub(grade_id, name, check):
    with pytest.raises(ExerciseError, match="not written yet"):
        check(_function(grade_id, name, stub=True))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_check_cells_follow_the_convention(n):
    source = _cell(f"nb05_ex{n}_check")
    assert source.startswith("from mrcnn_lite.exercises import nb05\n")
    assert re.fullmatch(r"nb05\.check_\w+\(my_\w+\)", source.splitlines()[-1])


# ----------------------------------------------------------------------------- Your turn 1: mask target
def _library_target(gt_mask, box, m, aligned=True, shift=(0.0, 0.0)):
    bw, bh = float(box[2] - box[0]) / m, float(box[3] - box[1]) / m
    moved = box - torch.tensor([shift[0] * bw, shift[1] * bh] * 2)
    return mask_targets(gt_mask[None], moved[None], torch.zeros(1, dtype=torch.int64), m, aligned, 1)[0]


def _nearest(gt_mask, box, m):
    x1, y1, x2, y2 = box.tolist()
    ys = (y1 + (torch.arange(m) + 0.5) * (y2 - y1) / m).floor().long().clamp(0, gt_mask.shape[0] - 1)
    xs = (x1 + (torch.arange(m) + 0.5) * (x2 - x1) / m).floor().long().clamp(0, gt_mask.shape[1] - 1)
    return gt_mask[ys][:, xs]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda g, b, m: _library_target(g, b, m, aligned=False), "subtract 0.5"),
        (lambda g, b, m: _library_target(g, b, m, shift=(0.5, 0.5)), "top-left corners"),
        (lambda g, b, m: _library_target(g, b, m).T, "swapped"),
        (_nearest, "only 0 and 1"),
        (lambda g, b, m: _library_target(g, b, m)[None], "shape"),
    ],
)
def test_mask_target_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb05.check_mask_target(fn)


# ----------------------------------------------------------------------------- Your turn 2: L_mask
def _naive_bce(logits, targets, labels):  # the notebook's readable version: log(sigmoid) underflows
    p = torch.sigmoid(logits[torch.arange(len(labels)), labels])
    return (-(targets * torch.log(p) + (1 - targets) * torch.log(1 - p))).mean()


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x, t, k: F.binary_cross_entropy_with_logits(x, t[:, None].expand_as(x)), "all K channels"),
        (lambda x, t, k: mask_loss(x, t, k - 1), "label - 1"),
        (lambda x, t, k: mask_loss(x, t, k, kind="softmax"), "softmax"),
        (lambda x, t, k: mask_loss(x, t, k) * t[0].numel(), "sum over the pixels"),
        (_naive_bce, "underflows"),
        (lambda x, t, k: F.binary_cross_entropy_with_logits(x[torch.arange(len(k)), k], t, reduction="none")
         .mean(dim=(1, 2)), "one number"),
    ],
)
def test_sigmoid_mask_loss_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb05.check_sigmoid_mask_loss(fn)


# ----------------------------------------------------------------------------- Your turn 3: gradients
def _grad(logits, targets, labels, kind, scale=True, every_channel=False, one_channel=False):
    p, k, m, _ = logits.shape
    rows = torch.arange(p)
    if kind == "sigmoid" and not every_channel:
        g = torch.zeros_like(logits)
        g[rows, labels] = torch.sigmoid(logits[rows, labels]) - targets
    elif kind == "sigmoid":
        g = torch.sigmoid(logits) - targets[:, None]
    else:
        cls = torch.where(targets >= 0.5, labels[:, None, None], 0)
        g = torch.softmax(logits, 1) - F.one_hot(cls, k).permute(0, 3, 1, 2).float()
        if one_channel:
            keep = torch.zeros_like(g)
            keep[rows, labels] = g[rows, labels]
            g = keep
    return g / (p * m * m) if scale else g


def _with_autograd(logits, targets, labels, kind):
    x = logits.clone().requires_grad_(True)
    mask_loss(x, targets, labels, kind=kind).backward()
    return x.grad


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x, t, k, kind: -_grad(x, t, k, kind), "sign is flipped"),
        (lambda x, t, k, kind: _grad(x, t, k, kind, scale=False), "too large"),
        (lambda x, t, k, kind: _grad(x, t, k, kind, every_channel=True), "one channel per RoI"),
        (lambda x, t, k, kind: _grad(x, t, k, kind, one_channel=True), "every channel gets a gradient"),
        (lambda x, t, k, kind: _grad(x, t, k, "sigmoid"), "every channel gets a gradient"),  # ignores kind
        (_with_autograd, "autograd is switched off"),
    ],
)
def test_mask_loss_grad_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb05.check_mask_loss_grad(fn)


# ----------------------------------------------------------------------------- Your turn 4: L_box
def _box(deltas, labels, targets, beta=1 / 9, layout="KC", divide="all", first=False, everyone=False):
    r = len(labels)
    rows = torch.arange(r) if everyone else torch.nonzero(labels > 0).flatten()
    table = deltas.reshape(r, -1, 4) if layout == "KC" else deltas.reshape(r, 4, -1).transpose(1, 2)
    picked = table[rows, 0] if first else table[rows, labels[rows]]
    total = F.smooth_l1_loss(picked, targets[rows], beta=beta, reduction="sum")
    return total / (r if divide == "all" else len(rows))


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda d, k, t: _box(d, k, t, divide="positives"), "divide by all"),
        (lambda d, k, t: _box(d, k, t, first=True), "first 4 deltas"),
        (lambda d, k, t: _box(d, k, t, layout="CK"), r"not \[R, 4, K\]"),
        (lambda d, k, t: _box(d, k, t, everyone=True), "positives only"),
        (lambda d, k, t: _box(d, k, t, beta=1.0), "β = 1/9"),
        (lambda d, k, t: _box(d, k, t) / 4, "4 coordinates"),
    ],
)
def test_box_loss_fails_on_wrong_answers(fn, message):
    with pytest.raises(ExerciseError, match=message):
        nb05.check_box_loss(fn)
