"""Balanced positive/negative sampling of anchors or RoIs for a loss (Faster R-CNN §3.1.3; Mask R-CNN §3.1).

Most anchors are background, so a loss over all of them would be dominated by easy negatives. Faster R-CNN
§3.1.3: "we randomly sample 256 anchors in an image to compute the loss function of a mini-batch, where the
sampled positive and negative anchors have a ratio of up to 1:1. If there are fewer than 128 positive
samples in an image, we pad the mini-batch with negative ones." Mask R-CNN §3.1 samples the RoI head the
same way: "N RoIs per image ... with a ratio of 1:3 of positive to negatives" (N = 64 for C4, 512 for FPN;
``positive_fraction = 0.25``).

Same draws as torchvision's ``BalancedPositiveNegativeSampler`` (``randperm`` of the positives, then of the
negatives, image by image), but from an explicit ``torch.Generator`` when one is given, so a seeded generator
reproduces torchvision's sampling under the same global seed.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BalancedPositiveNegativeSampler:
    """Picks up to ``batch_size_per_image`` entries per image, at most ``positive_fraction`` of them positive.

    ``labels`` holds one tensor per image: ``>= 1`` positive (foreground, or a class label), ``0`` negative,
    ``< 0`` ignored (never sampled). Returns boolean masks ``(positive, negative)``, one pair per image.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(
        self, labels: list[Tensor], generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        pos_masks, neg_masks = [], []
        for labels_per_image in labels:
            positive = torch.where(labels_per_image >= 1)[0]
            negative = torch.where(labels_per_image == 0)[0]

            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)  # negatives fill up

            perm_pos = torch.randperm(positive.numel(), generator=generator, device=positive.device)[:num_pos]
            perm_neg = torch.randperm(negative.numel(), generator=generator, device=negative.device)[:num_neg]

            pos_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            neg_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            pos_mask[positive[perm_pos]] = True
            neg_mask[negative[perm_neg]] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
