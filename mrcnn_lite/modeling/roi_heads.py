"""The second stage of Mask R-CNN (§3): per-RoI classification, box regression and the mask branch.

Training (§3.1 "Training"): proposals from the RPN (plus the ground-truth boxes) are matched to the ground
truth (IoU ≥ 0.5 is positive), N RoIs per image are sampled at positives:negatives = 1:3, their features
are pooled (RoIPool / RoIWarp / RoIAlign) and fed to the box head; the mask head sees the positive RoIs
only, and its target is the RoI ∩ ground-truth mask resampled to m×m. L = Lcls + Lbox + Lmask.

Inference (§3.1 "Inference"): the box head scores all proposals; per-class NMS keeps the top detections;
the mask head then runs on those *detection* boxes (not the proposals), and only the mask of the predicted
class is kept.

Figure 4's two head architectures are two classes over one base:

- :class:`RoIHeads`, the base: sampling, targets, losses and inference. It pools with ``box_pooler`` and
  scores with ``box_head``; where the mask head's features come from is the subclasses' business.
- :class:`StandardRoIHeads` (C5, FPN: Figure 4 right): a second pooler, ``mask_pooler``, cuts the mask
  head's own 14×14 features out of the maps the box head reads.
- :class:`Res5RoIHeads` (C4: Figure 4 left): one pooler (14×14 from res4); res5 runs on its output, and
  res5's 7×7 features feed both the box predictor and the C4 mask head.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from mrcnn_lite.modeling.box_coder import BoxCoder
from mrcnn_lite.modeling.box_head import Res5BoxHead
from mrcnn_lite.modeling.losses import fast_rcnn_loss, mask_loss, mask_targets
from mrcnn_lite.modeling.mask_head import C4MaskHead
from mrcnn_lite.modeling.matcher import Matcher
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.modeling.postprocess import postprocess_detections, select_masks
from mrcnn_lite.modeling.sampler import BalancedPositiveNegativeSampler


class HeadOutputs(NamedTuple):
    """What the heads compute on the sampled RoIs of a training batch: ``class_logits [R, K]`` and
    ``box_deltas [R, 4K]`` for all of them, ``mask_logits [P, K_out, m, m]`` for the positives (None
    without a mask branch)."""

    class_logits: Tensor
    box_deltas: Tensor
    mask_logits: Tensor | None


class RoIHeads(nn.Module):
    """Sampling, targets, losses (train) and detections (eval) around a box head and a mask head (§3.1).

    ``box_pooler`` cuts each RoI's features for ``box_head``, which returns ``(class_logits, box_deltas)``.
    ``mask_head`` is None for Faster R-CNN (Table 3). Subclasses say where the mask head's features come
    from (:meth:`forward_mask`) and may share work between the branches in training (:meth:`forward_train`).
    """

    def __init__(
        self,
        *,
        box_pooler: RoIFeatureExtractor,
        box_head: nn.Module,
        mask_head: nn.Module | None,
        fg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        mask_size: int = 28,
        mask_loss: str = "sigmoid",
        class_agnostic_masks: bool = False,
        mask_decode: str = "threshold",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.box_pooler, self.box_head, self.mask_head = box_pooler, box_head, mask_head
        self.matcher = Matcher(fg_iou_thresh, fg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(box_coder_weights)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image = detections_per_image
        self.mask_size = mask_size
        self.mask_loss_kind = mask_loss
        self.class_agnostic_masks = class_agnostic_masks
        self.mask_decode = mask_decode  # plain attribute: evaluation may switch it (Table 2b's two rules)
        self.generator = generator

    @property
    def with_mask(self) -> bool:
        return self.mask_head is not None

    # ------------------------------------------------------------------------------------------ targets
    def sample_proposals(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Match proposals (+ GT boxes) to the ground truth and sample RoIs at 1:3.

        Returns, per image: sampled RoIs ``[R, 4]``, their labels (0 = background), box regression
        targets ``[R, 4]`` and ``matched``, the index of each RoI's ground truth (meaningful for positives).
        """
        rois, labels, reg_targets, matched = [], [], [], []
        for props, target in zip(proposals, targets, strict=True):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            props = torch.cat([props, gt_boxes.to(props.dtype)])  # GT boxes are proposals too (Detectron)
            if gt_boxes.numel():
                idx = self.matcher(box_iou(gt_boxes, props))
                lab = gt_labels[idx.clamp(min=0)].to(torch.int64)
                lab[idx < 0] = 0
            else:
                idx = torch.full((len(props),), -1, dtype=torch.int64, device=props.device)
                lab = torch.zeros(len(props), dtype=torch.int64, device=props.device)
            pos, neg = self.sampler([lab], self.generator)
            keep = torch.where(pos[0] | neg[0])[0]
            keep = torch.cat([keep[pos[0][keep]], keep[neg[0][keep]]])  # positives first
            props, lab, idx = props[keep], lab[keep], idx[keep]
            gt_for_roi = gt_boxes[idx.clamp(min=0)] if gt_boxes.numel() else torch.zeros_like(props)
            rois.append(props)
            labels.append(lab)
            reg_targets.append(self.box_coder.encode(gt_for_roi, props))
            matched.append(idx)
        return rois, labels, reg_targets, matched

    # ------------------------------------------------------------------------------------------ heads
    def forward_box(self, features: dict[str, Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``(class_logits, box_deltas)`` of the boxes (per image, image pixels), in box order."""
        return self.box_head(self.box_pooler(features, boxes))

    def forward_mask(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """Mask logits ``[sum L, K_out, m, m]`` of the boxes (per image): the subclass's mask branch."""
        raise NotImplementedError(f"{type(self).__name__} has no mask branch")

    def forward_train(
        self, features: dict[str, Tensor], rois: list[Tensor], positives: list[Tensor] | None
    ) -> HeadOutputs:
        """Both branches on the sampled ``rois``; the mask branch on ``rois[i][positives[i]]`` only
        (``positives`` is None without a mask head). Here the branches share nothing."""
        class_logits, box_deltas = self.forward_box(features, rois)
        if positives is None:
            return HeadOutputs(class_logits, box_deltas, None)
        pos_rois = [r[p] for r, p in zip(rois, positives, strict=True)]
        return HeadOutputs(class_logits, box_deltas, self.forward_mask(features, pos_rois))

    # ------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("RoIHeads needs targets in training mode")
            return [], self._train(features, proposals, targets)
        return self._infer(features, proposals, image_sizes), {}

    def _train(
        self, features: dict[str, Tensor], proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """L = L_cls + L_box (+ L_mask) on the sampled RoIs (§3 "Multi-task loss")."""
        rois, labels, reg_targets, matched = self.sample_proposals(proposals, targets)
        positives = [torch.where(lab > 0)[0] for lab in labels] if self.with_mask else None
        out = self.forward_train(features, rois, positives)
        loss_cls, loss_box = fast_rcnn_loss(
            out.class_logits, out.box_deltas, torch.cat(labels), torch.cat(reg_targets)
        )
        losses = {"loss_cls": loss_cls, "loss_box": loss_box}
        if positives is None or out.mask_logits is None:
            return losses
        mask_targets_per_image = [
            mask_targets(t["masks"], r[p], gt[p], self.mask_size)
            for t, r, gt, p in zip(targets, rois, matched, positives, strict=True)
        ]
        pos_labels = torch.cat([lab[p] for lab, p in zip(labels, positives, strict=True)])
        losses["loss_mask"] = mask_loss(
            out.mask_logits, torch.cat(mask_targets_per_image), pos_labels, self.mask_loss_kind,
            self.class_agnostic_masks,
        )  # fmt: skip
        return losses

    def _infer(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections (§3.1 "Inference"): boxes, per-class NMS, then masks on the detections."""
        class_logits, box_deltas = self.forward_box(features, proposals)
        detections = postprocess_detections(
            class_logits, box_deltas, proposals, image_sizes, self.box_coder,
            self.score_thresh, self.nms_thresh, self.detections_per_image,
        )  # fmt: skip
        if not self.with_mask:
            return detections
        boxes = [d["boxes"] for d in detections]
        if sum(len(b) for b in boxes) == 0:
            for d in detections:
                d["masks"] = d["boxes"].new_zeros((0, 1, self.mask_size, self.mask_size))
            return detections
        mask_logits = self.forward_mask(features, boxes)
        labels = torch.cat([d["labels"] for d in detections])
        probs = select_masks(
            mask_logits, labels, self.mask_loss_kind, self.class_agnostic_masks, self.mask_decode
        )
        for d, p in zip(detections, probs.split([len(b) for b in boxes]), strict=True):
            d["masks"] = p  # [D, 1, m, m] probabilities; MaskRCNN pastes them into the image
        return detections


class StandardRoIHeads(RoIHeads):
    """C5 and FPN heads (Figure 4 right): ``mask_pooler`` pools the mask head's own features (14×14) from
    the maps the box head reads. ``mask_pooler`` and ``mask_head`` are both set or both None (Faster R-CNN).
    The other keyword arguments are :class:`RoIHeads`'s."""

    def __init__(
        self,
        *,
        box_pooler: RoIFeatureExtractor,
        box_head: nn.Module,
        mask_pooler: RoIFeatureExtractor | None = None,
        mask_head: nn.Module | None = None,
        **settings: Any,
    ) -> None:
        if (mask_pooler is None) != (mask_head is None):
            raise ValueError("a mask branch needs both mask_pooler and mask_head (or neither: Faster R-CNN)")
        super().__init__(box_pooler=box_pooler, box_head=box_head, mask_head=None, **settings)
        # registered in the order the branch runs (the printed model lists box_pooler, box_head,
        # mask_pooler, mask_head); the state dict's keys do not depend on it
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head

    def forward_mask(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        if self.mask_pooler is None or self.mask_head is None:
            raise RuntimeError("this model has no mask branch (Faster R-CNN)")
        return self.mask_head(self.mask_pooler(features, boxes))


class Res5RoIHeads(RoIHeads):
    """C4 heads (Figure 4 left): one pooler, ``box_pooler`` (14×14 from res4); the box head's res5 runs on
    its output and res5's 7×7 features feed both the box predictor and ``mask_head``
    (:class:`~mrcnn_lite.modeling.mask_head.C4MaskHead`, or None for Faster R-CNN). In training res5 runs
    once for both branches (the mask head reads the positive RoIs' rows); at inference it runs again, on
    the detections. The other keyword arguments are :class:`RoIHeads`'s."""

    box_head: Res5BoxHead

    def __init__(
        self,
        *,
        box_pooler: RoIFeatureExtractor,
        box_head: Res5BoxHead,
        mask_head: C4MaskHead | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(box_head, Res5BoxHead):
            raise TypeError(f"Res5RoIHeads needs a Res5BoxHead, got {type(box_head).__name__}")
        super().__init__(box_pooler=box_pooler, box_head=box_head, mask_head=mask_head, **settings)

    def forward_mask(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        if self.mask_head is None:
            raise RuntimeError("this model has no mask branch (Faster R-CNN)")
        return self.mask_head(self.box_head.run_res5(self.box_pooler(features, boxes)))

    def forward_train(
        self, features: dict[str, Tensor], rois: list[Tensor], positives: list[Tensor] | None
    ) -> HeadOutputs:
        """res5 once on all sampled RoIs; the mask head reads the rows of the positive ones."""
        res5 = self.box_head.run_res5(self.box_pooler(features, rois))
        class_logits, box_deltas = self.box_head.predict(res5)
        if positives is None or self.mask_head is None:
            return HeadOutputs(class_logits, box_deltas, None)
        offsets = torch.cumsum(torch.tensor([0] + [len(r) for r in rois[:-1]]), 0).tolist()
        rows = torch.cat([p + o for p, o in zip(positives, offsets, strict=True)])
        return HeadOutputs(class_logits, box_deltas, self.mask_head(res5[rows]))
