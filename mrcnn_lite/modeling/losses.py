"""The RoI heads' losses and mask targets: L = L_cls + L_box + L_mask (Mask R-CNN §3 "Multi-task loss").

"During training, we define a multi-task loss on each sampled RoI as L = L_cls + L_box + L_mask. The
classification loss L_cls and bounding-box loss L_box are identical as those defined in [Fast R-CNN]."

- ``fast_rcnn_loss``: L_cls is the softmax cross-entropy over all sampled RoIs; L_box the smooth-L1 loss
  (beta = 1/9) on the deltas of the ground-truth class of the positive RoIs only, summed and divided by the
  number of sampled RoIs (torchvision's normalisation; equal to its ``fastrcnn_loss``).
- ``mask_targets``: "The mask target is the intersection between an RoI and its associated ground-truth
  mask" (§3 "Training"), cut out of the image-size ground-truth mask and resampled to m×m with RoIAlign
  (a soft target in [0, 1]).
- ``mask_loss``: "L_mask is defined as the average binary cross-entropy loss. For an RoI associated with
  ground-truth class k, L_mask is only defined on the k-th mask (other mask outputs do not contribute to
  the loss)" (§3): per-pixel sigmoid, no competition among classes. ``kind="softmax"`` is Table 2b's
  alternative, a per-pixel softmax over the classes (the FCN way), which couples mask and class prediction:
  24.8 vs 30.3 mask AP with ResNet-50-C4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mrcnn_lite import ops

MASK_LOSS_KINDS = ("sigmoid", "softmax")


def fast_rcnn_loss(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """``(loss_cls, loss_box)`` for the sampled RoIs of all images, concatenated: ``class_logits [R, K]``,
    ``box_deltas [R, 4K]``, ``labels [R]`` (0 = background), ``regression_targets [R, 4]`` (encoded
    against each RoI's matched ground truth; ignored for negatives)."""
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = torch.nonzero(labels > 0).squeeze(1)
    deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)[pos, labels[pos]]  # the GT class's box only
    loss_box = F.smooth_l1_loss(deltas, regression_targets[pos], beta=1 / 9, reduction="sum")
    return loss_cls, loss_box / labels.numel()


def mask_targets(
    gt_masks: Tensor,
    proposals: Tensor,
    matched_gt: Tensor,
    m: int,
    aligned: bool = True,
    sampling_ratio: int = 0,
) -> Tensor:
    """``[P, m, m]`` float targets in [0, 1]: for each of ``proposals [P, 4]`` (image pixels), the part of
    its matched ground-truth mask (``gt_masks [G, H, W]``, indexed by ``matched_gt [P]``) inside the box,
    resampled by RoIAlign.

    ``aligned=True`` (detectron2) puts pixel centres at ``i + 0.5``, so a box on pixel boundaries samples
    exactly its own pixels; ``aligned=False`` with ``sampling_ratio=-1`` is torchvision's
    ``project_masks_on_boxes`` (half a pixel off). ``sampling_ratio <= 0`` samples adaptively.
    """
    rois = torch.cat([matched_gt[:, None].to(proposals.dtype), proposals], dim=1).float()
    return ops.roi_align(gt_masks[:, None].float(), rois, m, 1.0, sampling_ratio, aligned)[:, 0]


def mask_loss(
    mask_logits: Tensor,
    mask_targets: Tensor,
    labels: Tensor,
    kind: str = "sigmoid",
    class_agnostic: bool = False,
) -> Tensor:
    """L_mask over the positive RoIs: ``mask_logits [P, K_out, m, m]``, ``mask_targets [P, m, m]`` in [0, 1],
    ``labels [P]`` their ground-truth classes (1..K-1). ``class_agnostic``: K_out = 1, channel 0 for all.

    - ``"sigmoid"`` (the paper): mean binary cross-entropy of the k-th channel against the target, k = label.
    - ``"softmax"`` (Table 2b): mean per-pixel cross-entropy of a softmax over the K_out = num_classes
      channels, the target class being k where the target is >= 0.5 and background (0) elsewhere.

    No positives: a zero that stays connected to ``mask_logits`` (so ``backward`` still runs).
    """
    if kind not in MASK_LOSS_KINDS:
        raise ValueError(f"unknown mask loss {kind!r}; choose one of {MASK_LOSS_KINDS}")
    if class_agnostic != (mask_logits.shape[1] == 1):
        raise ValueError(
            f"class_agnostic={class_agnostic} does not fit {mask_logits.shape[1]} mask channels "
            "(class-agnostic heads have 1, class-specific ones num_classes)"
        )
    if kind == "softmax" and class_agnostic:
        raise ValueError("the softmax mask loss competes among classes: it needs class-specific masks")
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    if kind == "softmax":
        pixel_classes = torch.where(mask_targets >= 0.5, labels[:, None, None], 0)
        return F.cross_entropy(mask_logits, pixel_classes)
    channel = torch.zeros_like(labels) if class_agnostic else labels
    k_th = mask_logits[torch.arange(labels.shape[0], device=labels.device), channel]
    return F.binary_cross_entropy_with_logits(k_th, mask_targets)
