"""Checks for notebook 05's exercises (mask targets, the mask and box losses, the mask loss's gradient).

- ``check_mask_target``: the RoI ∩ ground-truth mask on an m×m grid (Mask R-CNN §3 "Training"), one
  bilinear sample per bin with the aligned pixel convention, as ``mask_targets(..., aligned=True,
  sampling_ratio=1)`` and torchvision's ``roi_align``.
- ``check_sigmoid_mask_loss``: L_mask, the mean binary cross-entropy of the ground-truth class's channel
  (§3), as ``mask_loss`` and torchvision's ``maskrcnn_loss``.
- ``check_mask_loss_grad``: ∂L_mask/∂logits for the sigmoid and the softmax loss (Table 2b), as autograd
  through ``mask_loss``.
- ``check_box_loss``: L_box on the ground-truth class's 4 of the 4K deltas (Fast R-CNN), as
  ``fast_rcnn_loss`` and torchvision's ``fastrcnn_loss``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.ops import roi_align

from mrcnn_lite.exercises import ExerciseError, call_student, check_close, check_shape, passed
from mrcnn_lite.modeling.losses import fast_rcnn_loss, mask_loss, mask_targets

__all__ = ["check_box_loss", "check_mask_loss_grad", "check_mask_target", "check_sigmoid_mask_loss"]


def _shapes_masks(h: int = 60, w: int = 80) -> Tensor:
    """Three binary masks ``[3, h, w]``: a disc, a triangle and a ring (the shapes dataset's kinds)."""
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disc = (xx - 25) ** 2 + (yy - 22) ** 2 <= 15**2
    triangle = (yy >= 10) & (yy <= 55) & ((xx - 58).abs() <= (yy - 10) * 0.45)
    r = ((xx - 40) ** 2 + (yy - 40) ** 2).sqrt()
    ring = (r <= 17) & (r >= 9)
    return torch.stack([disc, triangle, ring]).float()


def _scalar(got: object, what: str) -> Tensor:
    """``got`` as a float64 0-dim tensor; otherwise an ExerciseError asking for one number."""
    t = check_shape(got, (), what=what, hint="return one number (a 0-dim tensor), not one per RoI or pixel")
    return t.to(torch.float64)


# ------------------------------------------------------------------------------- Your turn 1: mask target
def _mask_target_hint(mask: Tensor, box: Tensor, m: int, got: Tensor, expected: Tensor) -> str:
    """Name the usual mistake by comparing ``got`` with the targets that make it."""
    def lib(b: Tensor, aligned: bool = True) -> Tensor:
        """The library's one-sample-per-bin target of box ``b``."""
        return mask_targets(mask[None], b[None], torch.zeros(1, dtype=torch.int64), m, aligned, 1)[0]

    bw, bh = float(box[2] - box[0]) / m, float(box[3] - box[1]) / m
    if torch.allclose(got, lib(box, aligned=False), atol=1e-3):
        return ("you read the mask at the continuous position itself: pixel (r, c) holds its value at "
                "(c + 0.5, r + 0.5), so subtract 0.5 from x and y before interpolating (aligned=True)")
    if torch.allclose(got, lib(box - torch.tensor([bw, bh, bw, bh]) / 2), atol=1e-3):
        return "you sample at the bins' top-left corners: sample each at its centre, x1 + (j + 0.5) * bin_w"
    if torch.allclose(got.T, expected, atol=1e-3):
        return "rows and columns are swapped: target[i, j] has i along y (rows) and j along x (columns)"
    if set(got.unique().tolist()) <= {0.0, 1.0} and not set(expected.unique().tolist()) <= {0.0, 1.0}:
        return "your target holds only 0 and 1: interpolate bilinearly between the 4 neighbouring pixels"
    return "one sample per bin, at the bin's centre, bilinear, with the aligned (-0.5) convention"


def check_mask_target(fn: Callable[..., Tensor]) -> None:
    """Your turn 1: ``fn(gt_mask [H, W], box [4], m)`` -> ``[m, m]`` target in [0, 1]."""
    masks = _shapes_masks()
    cases = [  # (mask index, box (x1, y1, x2, y2), m, what)
        (0, (10.0, 7.0, 40.0, 37.0), 28, "a disc's own box, m = 28"),
        (0, (18.3, 3.6, 47.9, 29.2), 28, "a RoI that cuts the disc"),
        (1, (39.5, 8.25, 71.0, 57.5), 14, "a tall RoI on the triangle, m = 14"),
        (2, (30.2, 33.7, 36.1, 38.9), 14, "a RoI smaller than m pixels (the target is upsampled)"),
        (2, (0.0, 20.0, 80.0, 60.0), 28, "a RoI along the image's right and bottom edges"),
    ]
    for g, box_list, m, what in cases:
        box = torch.tensor(box_list)
        expected = mask_targets(masks[g][None], box[None], torch.zeros(1, dtype=torch.int64), m,
                                aligned=True, sampling_ratio=1)[0]
        rois = torch.cat([torch.zeros(1, 1), box[None]], dim=1)
        tv = roi_align(masks[g][None, None], rois, m, 1.0, 1, aligned=True)[0, 0]
        if not torch.allclose(expected, tv, atol=1e-6):
            raise RuntimeError("library mask_targets differs from torchvision roi_align: run its tests")
        got = call_student(fn, masks[g].clone(), box.clone(), m)
        got = check_shape(got, (m, m), what=f"target ({what})", hint=f"one value per bin: [{m}, {m}]")
        got = got.to(torch.float32)
        if not torch.allclose(got, expected, atol=1e-4):
            hint = _mask_target_hint(masks[g], box, m, got, expected)
            check_close(got, expected, what=f"target ({what})", hint=hint, atol=1e-4)
    passed("Your turn 1: the mask target RoI ∩ mask -> m×m",
           "equal to mask_targets and torchvision's roi_align")


# ------------------------------------------------------------------------------- Your turn 2: sigmoid loss
def _mask_loss_hint(logits: Tensor, targets: Tensor, labels: Tensor, got: Tensor) -> str:
    """Name the usual mistake: the wrong answers' values, computed, against ``got``."""
    p, m2 = len(labels), targets.shape[-1] ** 2
    expected = mask_loss(logits, targets, labels)
    all_channels = F.binary_cross_entropy_with_logits(logits, targets[:, None].expand_as(logits))
    variants = {
        "you average the cross-entropy over all K channels: read only channel k = the RoI's label":
            all_channels,
        "channel label - 1 is the wrong one: channel 0 is background, so class k is channel k":
            mask_loss(logits, targets, labels - 1),
        "that is the softmax loss over the channels: use an independent sigmoid on channel k":
            mask_loss(logits, targets, labels, kind="softmax"),
        "you sum instead of averaging: take the mean over the m×m pixels and the RoIs":
            expected * p * m2,
        "you sum over the pixels: take the mean over the m×m pixels of each RoI": expected * m2,
    }
    for message, value in variants.items():
        if torch.isclose(got, value.to(torch.float64), rtol=1e-4, atol=1e-6):
            return message
    return "the mean over RoIs and pixels of -(t log σ(x) + (1 - t) log(1 - σ(x))), x = logits[r, label_r]"


def check_sigmoid_mask_loss(fn: Callable[..., Tensor]) -> None:
    """Your turn 2: ``fn(mask_logits [P, K, m, m], targets [P, m, m], labels [P])`` -> L_mask (a scalar)."""
    gen = torch.Generator().manual_seed(5)
    masks = _shapes_masks()
    rois = torch.tensor([[8.0, 5.0, 42.0, 40.0], [36.0, 6.0, 78.0, 58.0], [20.0, 22.0, 60.0, 59.0],
                         [12.0, 12.0, 30.0, 45.0]])
    gt_labels, matched = torch.tensor([1, 3, 5]), torch.tensor([0, 1, 2, 0])
    logits = torch.randn(4, 6, 14, 14, generator=gen) * 2
    aligned = mask_targets(masks, rois, matched, 14)
    tv_targets = mask_targets(masks, rois, matched, 14, aligned=False, sampling_ratio=-1)
    tv = tv_roi_heads.maskrcnn_loss(logits, [rois], [masks], [gt_labels], [matched])
    confident = torch.where(aligned > 0.5, 40.0, -40.0)[:, None].repeat(1, 6, 1, 1)  # σ(±40) rounds to 1, 0
    confident[:, :, 0, :] *= -1  # and wrong on the first row: log(σ(x)) must not become log(0)
    cases = [  # logits, targets, labels, expected, what
        (logits, aligned, gt_labels[matched], mask_loss(logits, aligned, gt_labels[matched]),
         "4 RoIs, K = 6 channels"),
        (logits, tv_targets, gt_labels[matched], tv, "torchvision's targets, against its maskrcnn_loss"),
        (logits[:1], torch.rand(1, 14, 14, generator=gen), torch.tensor([5]), None, "one RoI, soft targets"),
        (confident, aligned, gt_labels[matched], None, "confident logits of ±40"),
    ]
    for x, t, lab, expected, what in cases:
        expected = mask_loss(x, t, lab) if expected is None else expected
        got = call_student(fn, x.clone(), t.clone(), lab.clone())
        got = _scalar(got, f"L_mask ({what})")
        if not torch.isfinite(got):
            raise ExerciseError(f"L_mask ({what}): {got.item()} instead of {expected.item():.6g}. "
                                "log(sigmoid(x)) underflows to log(0) for |x| > ~17 in float32: use "
                                "F.logsigmoid(x) and F.logsigmoid(-x), or F.binary_cross_entropy_with_logits")
        if not torch.isclose(got, expected.to(torch.float64), rtol=1e-4, atol=1e-6):
            hint = _mask_loss_hint(x, t, lab, got)
            check_close(got, expected, what=f"L_mask ({what})", hint=hint, rtol=1e-4)
    passed("Your turn 2: the sigmoid mask loss", "equal to mask_loss and torchvision's maskrcnn_loss")


# ------------------------------------------------------------------------------- Your turn 3: gradients
def _autograd_grad(logits: Tensor, targets: Tensor, labels: Tensor, kind: str) -> Tensor:
    """The reference gradient: autograd through the library's ``mask_loss``."""
    x = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mask_loss(x, targets, labels, kind=kind), x)
    return grad


def _grad_hint(got: Tensor, expected: Tensor, kind: str, n: int) -> str:
    """Name the usual mistake (sign, the 1/(P·m·m), which channels) from ``got`` and the reference."""
    touched = got.abs().sum(dim=(2, 3)) > 0  # [P, K]
    should = expected.abs().sum(dim=(2, 3)) > 0
    if torch.allclose(got, -expected, atol=1e-7, rtol=1e-4):
        return "the sign is flipped: ∂L/∂x is p - target (the loss falls when x moves against it)"
    if torch.allclose(got, expected * n, rtol=1e-4, atol=1e-6):
        return (f"a factor {n} too large: L is a mean over the P·m·m = {n} (RoI, pixel) pairs, so divide "
                "each pixel's p - target by P·m·m")
    if kind == "sigmoid" and not torch.equal(touched, should):
        return ("the sigmoid loss reads one channel per RoI, its label's: every other channel gets an "
                "exactly zero gradient")
    if kind == "softmax" and not torch.equal(touched, should):
        return ("with the softmax every channel gets a gradient, softmax(x)_c - [c = pixel's class], not "
                "only the label's channel")
    if kind == "softmax":
        return ("the pixel's class is the label where the target is >= 0.5 and 0 (background) elsewhere; "
                "subtract 1 at that class from the softmax")
    return "on channel k = label: (sigmoid(x) - target) / (P·m·m)"


def check_mask_loss_grad(fn: Callable[..., Tensor]) -> None:
    """Your turn 3: ``fn(mask_logits [P, K, m, m], targets [P, m, m], labels [P], kind)`` -> ∂L_mask/∂logits
    ``[P, K, m, m]`` for ``kind`` "sigmoid" or "softmax", from the formula (autograd is off in this check)."""
    gen = torch.Generator().manual_seed(6)
    masks = _shapes_masks()
    rois = torch.tensor([[8.0, 5.0, 42.0, 40.0], [36.0, 6.0, 78.0, 58.0], [20.0, 22.0, 60.0, 59.0]])
    targets = mask_targets(masks, rois, torch.arange(3), 14)
    logits = torch.randn(3, 7, 14, 14, generator=gen)
    labels = torch.tensor([1, 6, 4])
    cases = [(logits, targets, labels, "3 RoIs, K = 7"),
             (logits[:1, :2], targets[:1], torch.tensor([1]), "one RoI, K = 2 (one class + background)")]
    for kind in ("sigmoid", "softmax"):
        for x, t, lab, what in cases:
            expected = _autograd_grad(x, t, lab, kind)
            try:
                with torch.inference_mode():
                    got = call_student(fn, x.clone(), t.clone(), lab.clone(), kind)
            except RuntimeError as err:
                if "grad" not in str(err):
                    raise
                raise ExerciseError("autograd is switched off in this check: write the gradient from the "
                                    f"formula, without .backward() or torch.autograd ({err})") from err
            label = f"∂L/∂logits, {kind} ({what})"
            got = check_shape(got, tuple(x.shape), what=label, hint="one value per logit: the logits' shape")
            got = got.to(torch.float32)
            if not torch.allclose(got, expected, rtol=1e-4, atol=1e-8):
                hint = _grad_hint(got, expected, kind, t.numel())
                check_close(got, expected, what=label, hint=hint, rtol=1e-4, atol=1e-8)
    passed("Your turn 3: the gradients of the sigmoid and softmax mask losses", "equal to autograd's")


# ------------------------------------------------------------------------------- Your turn 4: box loss
def _box_loss_hint(deltas: Tensor, labels: Tensor, targets: Tensor, got: Tensor) -> str:
    """Name the usual mistake: the wrong answers' values, computed, against ``got``."""
    r = len(labels)
    pos = torch.nonzero(labels > 0).squeeze(1)
    k = deltas.shape[1] // 4
    rows = deltas.reshape(r, k, 4)[pos, labels[pos]]

    def sl1(x: Tensor, beta: float = 1 / 9) -> Tensor:
        """Summed smooth-L1 of ``x`` against the positives' targets."""
        return F.smooth_l1_loss(x, targets[pos], beta=beta, reduction="sum")
    everyone = F.smooth_l1_loss(deltas.reshape(r, k, 4)[torch.arange(r), labels], targets, beta=1 / 9,
                                reduction="sum") / r
    variants = {
        f"you divide by the {len(pos)} positives: divide by all {r} sampled RoIs (positives and negatives)":
            sl1(rows) / max(len(pos), 1),
        "you read the first 4 deltas of every RoI: take the 4 of its GT class, deltas[r, 4k : 4k + 4]":
            sl1(deltas[pos, :4]) / r,
        "the layout is [R, K, 4] (class by class, 4 deltas each), not [R, 4, K]":
            sl1(deltas.reshape(r, 4, k)[pos, :, labels[pos]]) / r,
        "negatives (label 0) have no box target: sum over the positives only": everyone,
        "β = 1/9 (quadratic only below 0.111), not 1": sl1(rows, 1.0) / r,
        "that is the L1 loss: smooth-L1 is quadratic below β = 1/9": (rows - targets[pos]).abs().sum() / r,
        "you average over the 4 coordinates too: sum the 4 deltas' losses, divide by the RoIs only":
            sl1(rows) / r / 4,
    }
    for message, value in variants.items():
        if torch.isclose(got, value.to(torch.float64), rtol=1e-4, atol=1e-7):
            return message
    return "sum of smooth_l1(deltas of the GT class - target) over the positives, / number of sampled RoIs"


def check_box_loss(fn: Callable[..., Tensor]) -> None:
    """Your turn 4: ``fn(box_deltas [R, 4K], labels [R], regression_targets [R, 4])`` -> L_box (a scalar)."""
    gen = torch.Generator().manual_seed(7)
    r, k = 16, 5
    deltas = torch.randn(r, 4 * k, generator=gen)
    targets = torch.randn(r, 4, generator=gen)
    labels = torch.tensor([3, 1, 4, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    near = targets.repeat(1, k) + 0.05 * torch.randn(r, 4 * k, generator=gen)  # errors below β: quadratic
    logits = torch.randn(r, k, generator=gen)
    cases = [
        (deltas, labels, targets, "16 RoIs (5 positive), K = 5"),
        (near, labels, targets, "errors below β = 1/9 (the quadratic part)"),
        (deltas[:4], torch.tensor([1, 2, 3, 4]), targets[:4], "positives only"),
        (deltas[5:], labels[5:], targets[5:], "no positive RoI (L_box = 0)"),
    ]
    for d, lab, t, what in cases:
        _, expected = fast_rcnn_loss(logits[: len(lab)], d, lab, t)
        _, tv = tv_roi_heads.fastrcnn_loss(logits[: len(lab)], d, [lab], [t])
        if not torch.isclose(expected, tv, atol=1e-6):
            raise RuntimeError("library fast_rcnn_loss differs from torchvision's: run tests/test_losses.py")
        got = _scalar(call_student(fn, d.clone(), lab.clone(), t.clone()), f"L_box ({what})")
        if not torch.isfinite(got):
            raise ExerciseError(f"L_box ({what}): {got.item()} instead of {expected.item():.6g}. With no "
                                "positive RoI the sum is 0 and so is the loss (divide by the sampled RoIs)")
        if not torch.isclose(got, expected.to(torch.float64), rtol=1e-4, atol=1e-7):
            hint = _box_loss_hint(d, lab, t, got)
            check_close(got, expected, what=f"L_box ({what})", hint=hint, rtol=1e-4, atol=1e-7)
    passed("Your turn 4: the class-specific box loss", "equal to fast_rcnn_loss and torchvision's")

