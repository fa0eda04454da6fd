"""The second stage of Mask R-CNN (§3): per-RoI classification, box regression and the mask branch.

Training (§3.1 "Training"): proposals from the RPN (plus the ground-truth boxes) are matched to the ground
truth (IoU ≥ 0.5 is positive), N RoIs per image are sampled at positives:negatives = 1:3, their features
are pooled (RoIPool / RoIWarp / RoIAlign) and fed to the box head; the mask head sees the positive RoIs
only, and its target is the RoI ∩ ground-truth mask resampled to m×m. L = Lcls + Lbox + Lmask.

Inference (§3.1 "Inference"): the box head scores all proposals; per-class NMS keeps the top detections;
the mask head then runs on those *detection* boxes (not the proposals), and only the mask of the predicted
class is kept.

The C4 variant (Figure 4 left) runs res5 on 14×14 RoI features inside the box head and hands res5's 7×7
output to its mask head; C5 and FPN (Figure 4 right) pool separate 7×7 (box) and 14×14 (mask) features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from mrcnn_lite.modeling.box_coder import BoxCoder
from mrcnn_lite.modeling.losses import fast_rcnn_loss, mask_loss, mask_targets
from mrcnn_lite.modeling.matcher import Matcher
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor
from mrcnn_lite.modeling.postprocess import postprocess_detections, select_masks
from mrcnn_lite.modeling.sampler import BalancedPositiveNegativeSampler


class RoIHeads(nn.Module):
    """Box and mask heads on RoIs, with their targets and losses (train) or detections (eval).

    ``mask_head`` is None for Faster R-CNN (Table 3). With ``mask_pooler=None`` (C4), the mask head reads
    the box head's res5 features: of the sampled positives when training, of the detections at inference.
    """

    def __init__(
        self,
        box_pooler: RoIFeatureExtractor,
        box_head: nn.Module,
        mask_pooler: RoIFeatureExtractor | None,
        mask_head: nn.Module | None,
        fg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        mask_resolution: int = 28,
        mask_loss: str = "sigmoid",
        class_agnostic_masks: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.box_pooler, self.box_head = box_pooler, box_head
        self.mask_pooler, self.mask_head = mask_pooler, mask_head
        self.matcher = Matcher(fg_iou_thresh, fg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(box_coder_weights)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image = detections_per_image
        self.mask_resolution = mask_resolution
        self.mask_loss_kind = mask_loss
        self.class_agnostic_masks = class_agnostic_masks
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
        targets ``[R, 4]`` and the index of the matched ground truth (meaningful for positives).
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
        rois, labels, reg_targets, matched = self.sample_proposals(proposals, targets)
        class_logits, box_deltas, res5 = self.box_head(self.box_pooler(features, rois))
        loss_cls, loss_box = fast_rcnn_loss(
            class_logits, box_deltas, torch.cat(labels), torch.cat(reg_targets)
        )
        losses = {"loss_cls": loss_cls, "loss_box": loss_box}
        if not self.with_mask:
            return losses

        pos = [torch.where(lab > 0)[0] for lab in labels]
        pos_rois = [r[p] for r, p in zip(rois, pos, strict=True)]
        if self.mask_pooler is None:  # C4: the mask head reads res5's output for the positive RoIs
            offsets = torch.cumsum(torch.tensor([0] + [len(r) for r in rois[:-1]]), 0).tolist()
            flat = torch.cat([p + o for p, o in zip(pos, offsets, strict=True)])
            mask_logits = self.mask_head(res5[flat])
        else:
            mask_logits = self.mask_head(self.mask_pooler(features, pos_rois))
        targets_m = [
            mask_targets(t["masks"], r, m[p], self.mask_resolution)
            for t, r, m, p in zip(targets, pos_rois, matched, pos, strict=True)
        ]
        pos_labels = torch.cat([lab[p] for lab, p in zip(labels, pos, strict=True)])
        losses["loss_mask"] = mask_loss(
            mask_logits, torch.cat(targets_m), pos_labels, self.mask_loss_kind, self.class_agnostic_masks
        )
        return losses

    def _infer(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        class_logits, box_deltas, _ = self.box_head(self.box_pooler(features, proposals))
        detections = postprocess_detections(
            class_logits, box_deltas, proposals, image_sizes, self.box_coder,
            self.score_thresh, self.nms_thresh, self.detections_per_image,
        )  # fmt: skip
        if not self.with_mask:
            return detections
        boxes = [d["boxes"] for d in detections]
        if sum(len(b) for b in boxes) == 0:
            m = self.mask_resolution
            for d in detections:
                d["masks"] = d["boxes"].new_zeros((0, 1, m, m))
            return detections
        if self.mask_pooler is None:  # C4: res5 on the detections' 14x14 features, then the mask head
            _, _, res5 = self.box_head(self.box_pooler(features, boxes))
            mask_logits = self.mask_head(res5)
        else:
            mask_logits = self.mask_head(self.mask_pooler(features, boxes))
        labels = torch.cat([d["labels"] for d in detections])
        probs = select_masks(mask_logits, labels, self.mask_loss_kind, self.class_agnostic_masks)
        for d, p in zip(detections, probs.split([len(b) for b in boxes]), strict=True):
            d["masks"] = p  # [D, 1, m, m] probabilities; MaskRCNN pastes them into the image
        return detections
