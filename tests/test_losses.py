"""L_cls + L_box + L_mask and the mask targets (§3) against torchvision's ``roi_heads`` and by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss, maskrcnn_loss, project_masks_on_boxes
from torchvision.ops import roi_align

from mrcnn_lite.modeling.losses import fast_rcnn_loss, mask_loss, mask_targets

K = 5  # classes, background included


def random_boxes(gen: torch.Generator, n: int, lo: float, hi: float, min_size: float = 4.0) -> torch.Tensor:
    xy = lo + torch.rand(n, 2, generator=gen) * (hi - lo - min_size)
    wh = min_size + torch.rand(n, 2, generator=gen) * (hi - xy - min_size)
    return torch.cat([xy, xy + wh], dim=1)


def test_fast_rcnn_loss_equals_torchvision() -> None:
    gen = torch.Generator().manual_seed(0)
    r = 64
    logits = torch.randn(r, K, generator=gen, requires_grad=True)
    deltas = torch.randn(r, 4 * K, generator=gen, requires_grad=True)
    labels = torch.randint(0, K, (r,), generator=gen)
    labels[::3] = 0  # plenty of background
    targets = torch.randn(r, 4, generator=gen) * 0.3  # small and large errors: both smooth-L1 branches
    ours = fast_rcnn_loss(logits, deltas, labels, targets)
    theirs = fastrcnn_loss(logits, deltas, [labels[:40], labels[40:]], [targets[:40], targets[40:]])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
        ga = torch.autograd.grad(a, (logits, deltas), allow_unused=True)
        gb = torch.autograd.grad(b, (logits, deltas), allow_unused=True)
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y)


def test_fast_rcnn_box_loss_by_hand() -> None:
    """Two sampled RoIs: one negative (ignored by L_box), one positive of class 2 whose class-2 deltas miss by
    (0.05, 0, 1, 0). Smooth-L1 with beta = 1/9: 0.5·0.05²/beta = 0.01125 (|x| < beta) and 1 - 0.5/9 (|x| >=
    beta); summed over the positive and divided by the 2 sampled RoIs."""
    deltas = torch.zeros(2, 4 * 3)
    deltas[:, 0:4] = 7.0  # class 0's deltas: never read
    deltas[1, 8:12] = torch.tensor([0.05, 0.0, 1.0, 0.0])
    labels = torch.tensor([0, 2])
    targets = torch.tensor([[9.0, 9.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]])  # the negative's target is ignored
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, math.log(2.0)]])
    loss_cls, loss_box = fast_rcnn_loss(logits, deltas, labels, targets)
    # softmax: p(0 | RoI 0) = 3/5, p(2 | RoI 1) = 2/4
    assert loss_cls.item() == pytest.approx((math.log(5 / 3) + math.log(2)) / 2)
    assert loss_box.item() == pytest.approx((0.5 * 0.05**2 * 9 + 1 - 0.5 / 9) / 2)


def test_mask_targets_equal_torchvision_project_masks_on_boxes() -> None:
    gen = torch.Generator().manual_seed(1)
    gt_masks = torch.rand(3, 40, 50, generator=gen) > 0.5
    proposals = random_boxes(gen, 12, 0.0, 40.0)  # real-valued edges
    matched = torch.randint(0, 3, (12,), generator=gen)
    ours = mask_targets(gt_masks, proposals, matched, 14, aligned=False, sampling_ratio=-1)
    torch.testing.assert_close(ours, project_masks_on_boxes(gt_masks, proposals, matched, 14))
    # the default (detectron2's): half-pixel aligned, adaptive sampling
    rois = torch.cat([matched[:, None].float(), proposals], dim=1)
    expected = roi_align(gt_masks[:, None].float(), rois, 14, 1.0, 0, aligned=True)[:, 0]
    torch.testing.assert_close(mask_targets(gt_masks, proposals, matched, 14), expected)


def test_mask_targets_crop_and_resize_by_hand() -> None:
    """A box on pixel boundaries, 2m × 2m pixels, aligned RoIAlign with 2×2 samples per bin: bin (i, j) covers
    pixels y0+2i..y0+2i+1, x0+2j..x0+2j+1, and its samples sit at (box start - 0.5) + 2j + (0.5, 1.5) =
    x0 + 2j + (0, 1), i.e. on those pixels' centres, where bilinear interpolation reads a pixel exactly. So
    the target is the crop, 2×2 average-pooled. A box of m × m pixels (1 sample per bin) gives the crop
    itself. Without the half-pixel alignment the samples land between pixels: x0 + 2j + (0.5, 1.5) average
    pixels (x0+2j, x0+2j+1) and (x0+2j+1, x0+2j+2), weights (1/4, 1/2, 1/4) reaching one pixel past the box.
    """
    m, y0, x0 = 7, 5, 3
    gen = torch.Generator().manual_seed(2)
    gt = (torch.rand(2, 32, 30, generator=gen) > 0.5).to(torch.uint8)
    matched = torch.tensor([1])
    crop = gt[1, y0 : y0 + 2 * m, x0 : x0 + 2 * m].float()
    box = torch.tensor([[x0, y0, x0 + 2 * m, y0 + 2 * m]], dtype=torch.float32)
    expected = F.avg_pool2d(crop[None, None], 2)[0, 0]
    torch.testing.assert_close(mask_targets(gt, box, matched, m)[0], expected)  # adaptive: 2 samples
    torch.testing.assert_close(mask_targets(gt, box, matched, m, sampling_ratio=2)[0], expected)
    small = torch.tensor([[x0, y0, x0 + m, y0 + m]], dtype=torch.float32)
    torch.testing.assert_close(
        mask_targets(gt, small, matched, m)[0], gt[1, y0 : y0 + m, x0 : x0 + m].float()
    )
    # aligned=False: the (1/4, 1/2, 1/4) filter with stride 2 over pixels x0 .. x0 + 2m (one past the box)
    window = gt[1, y0 : y0 + 2 * m + 1, x0 : x0 + 2 * m + 1].float()
    w = torch.tensor([0.25, 0.5, 0.25])
    expected_unaligned = F.conv2d(window[None, None], (w[:, None] * w[None, :])[None, None], stride=2)[0, 0]
    unaligned = mask_targets(gt, box, matched, m, aligned=False, sampling_ratio=2)[0]
    torch.testing.assert_close(unaligned, expected_unaligned)


def test_mask_loss_equals_torchvision_maskrcnn_loss() -> None:
    """Same ground truth, proposals and matches for two images: torchvision builds the targets itself
    (``project_masks_on_boxes``), so ours uses ``aligned=False, sampling_ratio=-1`` to match."""
    gen = torch.Generator().manual_seed(3)
    m = 14
    gt_masks = [torch.rand(3, 40, 48, generator=gen) > 0.4, torch.rand(2, 36, 30, generator=gen) > 0.4]
    gt_labels = [torch.tensor([1, 4, 2]), torch.tensor([3, 3])]
    proposals = [random_boxes(gen, 6, 0.0, 30.0), random_boxes(gen, 4, 0.0, 30.0)]
    matched = [torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 2, (4,), generator=gen)]
    logits = torch.randn(10, K, m, m, generator=gen, requires_grad=True)
    theirs = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched)
    targets = torch.cat(
        [
            mask_targets(g, p, i, m, aligned=False, sampling_ratio=-1)
            for g, p, i in zip(gt_masks, proposals, matched, strict=True)
        ]
    )
    labels = torch.cat([lab[i] for lab, i in zip(gt_labels, matched, strict=True)])
    ours = mask_loss(logits, targets, labels)
    torch.testing.assert_close(ours, theirs)
    g_ours, g_theirs = (torch.autograd.grad(x, logits)[0] for x in (ours, theirs))
    torch.testing.assert_close(g_ours, g_theirs)


def test_mask_loss_gradient_only_on_the_gt_class_channel() -> None:
    """§3: "L_mask is only defined on the k-th mask (other mask outputs do not contribute to the loss)"."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(6, K, 5, 5, generator=gen, requires_grad=True)
    labels = torch.tensor([1, 4, 2, 2, 3, 1])
    targets = (torch.rand(6, 5, 5, generator=gen) > 0.5).float()
    (grad,) = torch.autograd.grad(mask_loss(logits, targets, labels), logits)
    gt_channel = F.one_hot(labels, K).bool()  # [P, K]
    assert (grad[gt_channel] != 0).all()  # every pixel of the GT channel
    assert (grad[~gt_channel] == 0).all()  # nothing elsewhere, background channel 0 included
    # the softmax variant, by contrast, pushes on every channel
    (grad_softmax,) = torch.autograd.grad(mask_loss(logits, targets, labels, kind="softmax"), logits)
    assert (grad_softmax[~gt_channel] != 0).any()


def test_mask_loss_sigmoid_by_hand() -> None:
    """One RoI of class 2, 2×2 mask, 3 channels. BCE of logit x against target t is softplus(x) - t·x:
    x = 0 -> ln 2 whatever t; x = ln 3, t = 1: sigmoid = 3/4 -> ln(4/3); x = -ln 3, t = 0: 1 - 1/4 = 3/4 ->
    ln(4/3). Mean over the 4 pixels = (2 ln 2 + 2 ln(4/3)) / 4 = ln(8/3) / 2. Channels 0 and 1 hold absurd
    logits that must not count."""
    ln3 = math.log(3.0)
    logits = torch.empty(1, 3, 2, 2)
    logits[0, 0], logits[0, 1] = 50.0, -50.0
    logits[0, 2] = torch.tensor([[0.0, 0.0], [ln3, -ln3]])
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    loss = mask_loss(logits, targets, torch.tensor([2]))
    assert loss.item() == pytest.approx(math.log(8 / 3) / 2)
    # class-agnostic (one channel): the same numbers on channel 0
    agnostic = mask_loss(logits[:, 2:], targets, torch.tensor([2]), class_agnostic=True)
    assert agnostic.item() == pytest.approx(math.log(8 / 3) / 2)


def test_mask_loss_softmax_by_hand() -> None:
    """Table 2b's multinomial loss, one RoI of class 2, 2×2 mask, 3 channels (0 = background). Pixel class =
    2 where target >= 0.5, else 0. Logits per pixel (channels 0, 1, 2) and their cross-entropy:
    (0, 0, 0), any class: p = 1/3 -> ln 3;  (ln 2, 0, 0), target 0.49 -> class 0: p = 2/4 -> ln 2;
    (0, 0, ln 2), target 0.5 -> class 2: p = 2/4 -> ln 2;  (0, ln 2, ln 2), target 0 -> class 0: p = 1/5 ->
    ln 5. Mean = (ln 3 + 2 ln 2 + ln 5) / 4 = ln(60) / 4."""
    ln2 = math.log(2.0)
    logits = torch.tensor([[[0.0, ln2], [0.0, 0.0]], [[0.0, 0.0], [0.0, ln2]], [[0.0, 0.0], [ln2, ln2]]])[
        None
    ]
    targets = torch.tensor([[[1.0, 0.49], [0.5, 0.0]]])
    loss = mask_loss(logits, targets, torch.tensor([2]), kind="softmax")
    assert loss.item() == pytest.approx(math.log(60) / 4)


def test_mask_loss_errors_and_empty() -> None:
    logits = torch.randn(0, K, 4, 4, requires_grad=True)
    for kind in ("sigmoid", "softmax"):
        loss = mask_loss(logits, torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.int64), kind=kind)
        assert loss.item() == 0 and loss.grad_fn is not None
        loss.backward()  # still connected to the logits
    assert logits.grad is not None and logits.grad.shape == logits.shape
    one_channel, targets, labels = torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="class-specific"):
        mask_loss(one_channel, targets, labels, kind="softmax", class_agnostic=True)
    with pytest.raises(ValueError, match="does not fit"):
        mask_loss(one_channel, targets, labels)  # one channel, but class_agnostic not said
    with pytest.raises(ValueError, match="does not fit"):
        mask_loss(torch.randn(2, K, 4, 4), targets, labels, class_agnostic=True)
    with pytest.raises(ValueError, match="unknown mask loss"):
        mask_loss(torch.randn(2, K, 4, 4), torch.zeros(2, 4, 4), torch.tensor([1, 2]), kind="focal")
