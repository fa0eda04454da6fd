"""Matcher and balanced sampler against torchvision's ``_utils`` and hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.ops import box_iou

from mrcnn_lite.modeling.matcher import Matcher
from mrcnn_lite.modeling.sampler import BalancedPositiveNegativeSampler

# ---- matcher ----------------------------------------------------------------------------------------------

# IoU [G=3, N=6]. Columns: 0 clear match of gt0; 1 best IoU 0.5 (gt2): ignored; 2 best 0.4 (gt1): ignored;
# 3 best 0.2: background; 4 exactly the high threshold: match; 5 exactly the low threshold: ignored.
IOU = torch.tensor(
    [
        [0.9, 0.4, 0.35, 0.0, 0.7, 0.0],
        [0.0, 0.4, 0.4, 0.1, 0.0, 0.3],
        [0.0, 0.5, 0.0, 0.2, 0.0, 0.0],
    ]
)


def test_matcher_hand_computed_thresholds() -> None:
    assert Matcher(0.7, 0.3)(IOU.clone()).tolist() == [0, -2, -2, -1, 0, -2]


def test_matcher_hand_computed_low_quality() -> None:
    # gt0's best anchor is 0 (already matched); gt1's best IoU 0.4 is tied on anchors 1 and 2; gt2's is
    # anchor 1. Each of those anchors is matched to *its own* best ground truth: anchor 1 -> gt2 (0.5 > 0.4),
    # anchor 2 -> gt1. (gt1 thus keeps a positive anchor only through the tie; Detectron/torchvision rule.)
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(IOU.clone()).tolist() == [0, 2, 1, -1, 0, -2]


def test_matcher_single_threshold_roi_head() -> None:
    # Mask R-CNN §3.1: IoU >= 0.5 positive, else negative; no ignore band.
    m = Matcher(0.5, 0.5)(IOU.clone())
    assert m.tolist() == [0, 2, -1, -1, 0, -1]


def test_matcher_empty() -> None:
    assert Matcher(0.7, 0.3, True)(torch.zeros(0, 5)).tolist() == [-1] * 5
    assert Matcher(0.7, 0.3, True)(torch.zeros(3, 0)).shape == (0,)
    with pytest.raises(ValueError):
        Matcher(0.3, 0.7)


def grid_boxes(n: int, gen: torch.Generator, cells: int = 6, step: float = 8.0) -> torch.Tensor:
    """Boxes with corners on a coarse integer grid: many exact IoU ties (duplicates, symmetric overlaps)."""
    xy = torch.randint(0, cells, (n, 2), generator=gen).float() * step
    wh = torch.randint(1, 4, (n, 2), generator=gen).float() * step
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("low_quality", [False, True])
@pytest.mark.parametrize(("high", "low"), [(0.7, 0.3), (0.5, 0.5), (0.6, 0.4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_equals_torchvision(high, low, low_quality, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    for make in (grid_boxes, lambda n, g: grid_boxes(n, g, cells=40, step=1.0)):
        preds = make(400, gen)
        gt = torch.cat([preds[:3] + torch.tensor([0.0, 0.0, 1.0, 0.0]), make(5, gen)])  # some IoU >= 0.7
        gt = torch.cat([gt, gt[3:4]])  # a duplicated ground truth: ties along both axes of the IoU matrix
        iou = box_iou(gt, preds)
        iou = iou[iou.max(dim=1).values > 0]  # every ground truth overlaps something (see the next test)
        ours = Matcher(high, low, low_quality)(iou.clone())
        theirs = tv_utils.Matcher(high, low, low_quality)(iou.clone())
        assert ours.dtype == torch.int64 and torch.equal(ours, theirs)
        assert (ours >= 0).any() and (ours == -1).any()


def test_matcher_ground_truth_overlapping_nothing() -> None:
    """Our one deviation: a ground truth with IoU 0 everywhere does not make all zero-IoU anchors positive."""
    iou = torch.tensor([[0.8, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert Matcher(0.7, 0.3, True)(iou.clone()).tolist() == [0, -1, -1, -1]
    assert tv_utils.Matcher(0.7, 0.3, True)(iou.clone()).tolist() == [0, 0, 0, 0]  # torchvision's behaviour


# ---- sampler ----------------------------------------------------------------------------------------------


def make_labels(
    num_pos: int, num_neg: int, num_ignored: int, seed: int = 0, pos_value: int = 1
) -> torch.Tensor:
    """Shuffled labels: ``pos_value`` positives, 0 negatives, ignored split between -1 and -2."""
    labels = torch.cat(
        [
            torch.full((num_pos,), pos_value),
            torch.zeros(num_neg, dtype=torch.int64),
            torch.tensor([-1, -2]).repeat(num_ignored // 2 + 1)[:num_ignored],
        ]
    )
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize(
    ("num_pos", "num_neg", "batch", "fraction", "expected"),
    [
        (500, 1000, 256, 0.5, (128, 128)),  # RPN, enough positives: 1:1
        (10, 1000, 256, 0.5, (10, 246)),  # too few positives: negatives fill up to 256
        (10, 30, 256, 0.5, (10, 30)),  # too few of both: everything
        (300, 3000, 512, 0.25, (128, 384)),  # FPN RoI head: 1:3
        (5, 3000, 64, 0.25, (5, 59)),  # C4 RoI head, few positives
    ],
)
def test_sampler_counts(num_pos, num_neg, batch, fraction, expected) -> None:
    labels = make_labels(num_pos, num_neg, 200)
    (pos,), (neg,) = BalancedPositiveNegativeSampler(batch, fraction)(
        [labels], torch.Generator().manual_seed(0)
    )
    assert pos.dtype == neg.dtype == torch.bool
    assert (int(pos.sum()), int(neg.sum())) == expected
    assert bool((labels[pos] >= 1).all()) and bool((labels[neg] == 0).all())  # ignored -1/-2 never sampled


def test_sampler_class_labels_are_positive() -> None:
    labels = make_labels(40, 200, 20, pos_value=3)  # RoI head: class labels
    (pos,), (neg,) = BalancedPositiveNegativeSampler(64, 0.25)([labels], torch.Generator().manual_seed(0))
    assert int(pos.sum()) == 16 and int(neg.sum()) == 48 and bool((labels[pos] == 3).all())


def test_sampler_reproducible_and_random() -> None:
    sampler = BalancedPositiveNegativeSampler(256, 0.5)
    labels = [make_labels(400, 1500, 100, seed=1), make_labels(50, 900, 100, seed=2)]
    a = sampler(labels, torch.Generator().manual_seed(7))
    b = sampler(labels, torch.Generator().manual_seed(7))
    c = sampler(labels, torch.Generator().manual_seed(8))
    for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0][0], c[0][0]) and not torch.equal(a[1][0], c[1][0])


def test_sampler_equals_torchvision_under_same_seed() -> None:
    """A generator seeded with s draws what torchvision draws from the global RNG after manual_seed(s)."""
    labels = [make_labels(400, 1500, 100, seed=1).float(), make_labels(50, 900, 100, seed=2).float()]
    ours = BalancedPositiveNegativeSampler(256, 0.5)(labels, torch.Generator().manual_seed(123))
    torch.manual_seed(123)
    theirs = tv_utils.BalancedPositiveNegativeSampler(256, 0.5)(labels)
    for x, y in zip(ours[0] + ours[1], theirs[0] + theirs[1], strict=True):
        assert torch.equal(x, y.bool())
