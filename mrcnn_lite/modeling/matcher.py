"""Matcher: assign each anchor / proposal a ground-truth box, background, or "ignore" (Faster R-CNN §3.1.2).

Faster R-CNN §3.1.2 labels anchors for the RPN: "We assign a positive label to two kinds of anchors: (i) the
anchor/anchors with the highest Intersection-over-Union (IoU) overlap with a ground-truth box, or (ii) an
anchor that has an IoU overlap higher than 0.7 with any ground-truth box. ... We assign a negative label to a
non-positive anchor if its IoU ratio is lower than 0.3 for all ground-truth boxes. Anchors that are neither
positive nor negative do not contribute to the training objective." Rule (i) is ``allow_low_quality_matches``
(it guarantees every ground-truth box some positive anchor). Mask R-CNN §3.1 matches RoIs the same way with
a single threshold: "an RoI is considered positive if it has IoU with a ground-truth box of at least 0.5 and
negative otherwise" (``high = low = 0.5``, no low-quality matches).

Semantics are torchvision's ``_utils.Matcher`` (tests check equality), except that (a) an image without
ground truth gives all-background instead of raising, and (b) a ground-truth box with IoU 0 to every
prediction gets no low-quality match (torchvision treats all its zero-IoU predictions as tied "best" and
matches them all). With dense anchors and boxes of positive area (b) never arises, so the RPN still equals
torchvision's.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """IoU matrix ``[G, N]`` -> ``matches [N]`` (int64): index of the matched ground truth, or
    ``BELOW_LOW_THRESHOLD`` (-1, background: best IoU < ``low``) or ``BETWEEN_THRESHOLDS`` (-2, ignored:
    ``low <= best IoU < high``). IoU ``>= high`` is a match."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high: float, low: float, allow_low_quality_matches: bool = False) -> None:
        if low > high:
            raise ValueError(f"low threshold {low} must be <= high threshold {high}")
        self.high = high
        self.low = low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        num_gt, num_pred = iou.shape
        if num_gt == 0:  # no ground truth: everything is background
            return torch.full((num_pred,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou.device)
        if num_pred == 0:
            return torch.empty((0,), dtype=torch.int64, device=iou.device)

        best_iou, matches = iou.max(dim=0)  # best ground truth for each prediction
        best_matches = matches.clone()
        matches[best_iou < self.low] = self.BELOW_LOW_THRESHOLD
        matches[(best_iou >= self.low) & (best_iou < self.high)] = self.BETWEEN_THRESHOLDS

        if self.allow_low_quality_matches:
            # Rule (i): for each ground truth, the prediction(s) with its highest IoU, ties included, become
            # positive, matched to *their* best ground truth (which is usually, but need not be, this one).
            # A ground truth that overlaps nothing (best IoU 0) gets no such match; torchvision would match
            # every zero-IoU prediction (and a degenerate zero-area box would then give infinite box targets).
            best_per_gt = iou.max(dim=1).values
            _, pred_idx = torch.where((iou == best_per_gt[:, None]) & (best_per_gt[:, None] > 0))
            matches[pred_idx] = best_matches[pred_idx]
        return matches
