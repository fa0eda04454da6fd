"""Region Proposal Network (Faster R-CNN §3.1; FPN §4.1; Mask R-CNN §3 "Faster R-CNN", §3.1).

Mask R-CNN's first stage is Faster R-CNN's RPN, unchanged: "The first stage, called a Region Proposal
Network (RPN), proposes candidate object bounding boxes" (§3). A small network slides over the feature map:
a 3x3 conv + ReLU, then two sibling 1x1 convs giving, for each of the k anchors at each location, an
objectness logit and 4 box deltas (Faster R-CNN §3.1, Figure 3; we use k logits with a sigmoid rather than
2k with a softmax). With FPN the same head, weights shared, runs on every level P2-P6 (FPN §4.1).

Training (Faster R-CNN §3.1.2-3): anchors are matched to ground truth (IoU >= 0.7 positive, plus each ground
truth's best anchor; < 0.3 negative; the rest ignored), 256 anchors per image are sampled at up to 1:1, and

    L = L_cls (binary cross-entropy, mean over sampled anchors)
      + L_reg (smooth-L1 with beta = 1/9 over the positive sampled anchors, summed, / number sampled)

which is torchvision's normalisation. Proposals: decode the deltas on every anchor, keep the top
``pre_nms_top_n`` scores per level, clip to the image, drop tiny boxes, NMS at 0.7 separately per level, and
keep the ``post_nms_top_n`` best per image. Proposals are detached: Mask R-CNN trains "RPN and Mask R-CNN
... jointly" with Faster R-CNN's approximate joint training, which ignores the gradient w.r.t. the proposal
coordinates.

``RegionProposalNetwork`` matches ``torchvision.models.detection.rpn.RegionProposalNetwork`` given the same
weights (proposals, losses, gradients; the tests check it), with the loss names ``loss_rpn_objectness`` and
``loss_rpn_box``, an explicit ``torch.Generator`` for sampling, and ``propose`` / ``assign_targets`` for the
notebook to look inside.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .finite import NonFiniteError, all_finite, count_nonfinite, where_if_finite
from .matcher import Matcher
from .sampler import BalancedPositiveNegativeSampler


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to ``num_anchors`` objectness logits and ``4 * num_anchors`` deltas
    per location; one set of weights for all feature maps (Faster R-CNN §3.1, Figure 3; FPN §4.1)."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # Faster R-CNN §3.1.3: N(0, 0.01²)
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: logits ``[N, A, H, W]`` and deltas ``[N, 4A, H, W]``."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_head_outputs(logits: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[N, A, H, W]`` / ``[N, 4A, H, W]`` per level -> ``[N, sum H*W*A]`` / ``[N, sum H*W*A, 4]``, ordered
    level, location (row-major), anchor: the order of ``AnchorGenerator``."""
    flat_logits, flat_deltas = [], []
    for lg, dt in zip(logits, deltas, strict=True):
        n, a, h, w = lg.shape
        flat_logits.append(lg.permute(0, 2, 3, 1).reshape(n, -1))
        flat_deltas.append(dt.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    """Anchors + head -> proposals per image, and during training the RPN losses.

    ``pre_nms_top_n`` / ``post_nms_top_n`` are ``{"training": int, "testing": int}``; the pre-NMS number is
    per feature level, the post-NMS number per image (as in torchvision). Defaults: 2000/1000 (training /
    testing) for both, as torchvision's Faster R-CNN; Mask R-CNN §3.1 uses 2000 proposals per image in
    training and, at test time, 300 for C4 and 1000 for FPN (set by the config). ``generator`` (a seeded
    ``torch.Generator``, settable later as ``rpn.generator``) makes the anchor sampling reproducible.
    """

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: dict[str, int] | None = None,
        post_nms_top_n: dict[str, int] | None = None,
        nms_thresh: float = 0.7,
        min_size: float = 1e-3,
        score_thresh: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = dict(pre_nms_top_n or {"training": 2000, "testing": 1000})
        self._post_nms_top_n = dict(post_nms_top_n or {"training": 2000, "testing": 1000})
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.score_thresh = score_thresh
        # The sampler's random source (on the anchors' device); None draws from torch's global generator.
        self.generator = generator

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    # ---- training targets and losses -----------------------------------------------------------------

    def assign_targets(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: ``labels [A]`` (float: 1 positive, 0 negative, -1 ignored) and the matched ground-truth
        box of every anchor ``[A, 4]`` (meaningful where the label is 1; zeros in an image without boxes)."""
        labels, matched_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # background image: every anchor is negative
                labels.append(torch.zeros(len(anchors_per_image), device=anchors_per_image.device))
                matched_boxes.append(torch.zeros_like(anchors_per_image, dtype=torch.float32))
                continue
            matches = self.matcher(box_iou(gt_boxes, anchors_per_image))
            lab = (matches >= 0).to(torch.float32)
            lab[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(lab)
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])
        return labels, matched_boxes

    def compute_loss(
        self, objectness: Tensor, deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> dict[str, Tensor]:
        """``objectness [N, A]`` logits, ``deltas [N, A, 4]``; labels / targets per image."""
        pos, neg = self.sampler(labels, generator=self.generator)
        pos_idx = torch.where(torch.cat(pos))[0]
        sampled_idx = torch.cat([pos_idx, torch.where(torch.cat(neg))[0]])

        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        objectness, deltas = objectness.reshape(-1), deltas.reshape(-1, 4)

        loss_box = F.smooth_l1_loss(deltas[pos_idx], targets_all[pos_idx], beta=1 / 9, reduction="sum")
        loss_box = loss_box / sampled_idx.numel()
        loss_obj = F.binary_cross_entropy_with_logits(objectness[sampled_idx], labels_all[sampled_idx])
        return {"loss_rpn_objectness": loss_obj, "loss_rpn_box": loss_box}

    # ---- proposals ---------------------------------------------------------------------------------------

    def _select_image(
        self,
        boxes: Tensor,
        logits: Tensor,
        levels: Tensor,
        image_size: tuple[int, int],
        finite: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """One image's top-k boxes -> clip, remove small / low-score, per-level NMS, keep the best.

        ``finite`` (a 0-d bool tensor, see :meth:`propose`): raise :class:`NonFiniteError` when False,
        checked with the score filter's own host sync."""
        boxes = clip_boxes_to_image(boxes, image_size)
        scores = torch.sigmoid(logits)
        keep = remove_small_boxes(boxes, self.min_size)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = where_if_finite(scores >= self.score_thresh, finite)
        if keep is None:
            raise NonFiniteError("rpn proposals")
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, self.nms_thresh)[: self.post_nms_top_n()]
        return {
            "pre_nms_boxes": boxes,
            "pre_nms_scores": scores,
            "pre_nms_levels": levels,
            "boxes": boxes[keep],
            "scores": scores[keep],
            "levels": levels[keep],
        }

    def select_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_sizes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
        finite: Tensor | None = None,
    ) -> list[dict[str, Tensor]]:
        """Decoded boxes ``[N, A, 4]`` and logits ``[N, A]`` -> per image, the boxes that enter NMS
        (``pre_nms_*``: top-k per level, clipped, filtered) and the final proposals (``boxes``, ``scores``,
        ``levels``). ``finite``: see :meth:`_select_image`."""
        objectness = objectness.detach()
        levels = torch.cat(
            [
                torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                for i, n in enumerate(num_anchors_per_level)
            ]
        )
        top_idx, offset = [], 0
        for ob in objectness.split(num_anchors_per_level, dim=1):  # top-k per level, as torchvision
            top_idx.append(ob.topk(min(self.pre_nms_top_n(), ob.shape[1]), dim=1).indices + offset)
            offset += ob.shape[1]
        top_idx = torch.cat(top_idx, dim=1)
        batch_idx = torch.arange(len(proposals), device=proposals.device)[:, None]
        boxes, logits = proposals[batch_idx, top_idx], objectness[batch_idx, top_idx]
        return [
            self._select_image(boxes[i], logits[i], levels[top_idx[i]], image_sizes[i], finite)
            for i in range(len(proposals))
        ]

    def propose(self, images: ImageList, features: OrderedDict[str, Tensor] | list[Tensor]) -> dict:
        """Everything the RPN computes before its loss: ``anchors`` (per image), flat ``objectness [N, A]``
        logits and ``deltas [N, A, 4]`` (with their graph), ``decoded [N, A, 4]`` boxes for every anchor,
        ``num_anchors_per_level``, and ``per_image``: the dicts of :meth:`select_proposals`.

        Raises :class:`~mrcnn_lite.modeling.finite.NonFiniteError` ("rpn proposals") when any decoded box
        or objectness logit is NaN or infinite (a diverging model), before any proposal reaches NMS or the
        RoI heads: NMS and the size filter would otherwise drop NaN boxes without a word."""
        features = list(features.values()) if isinstance(features, dict) else list(features)
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(images, features)
        num_anchors_per_level = [lg[0].numel() for lg in logits]  # A * H * W per level
        objectness, deltas = flatten_head_outputs(logits, deltas)
        n = len(anchors)
        decoded = self.box_coder.decode(deltas.detach().reshape(-1, 4), torch.cat(anchors)).view(n, -1, 4)
        finite = all_finite(decoded, objectness.detach())  # read with the score filter's sync
        try:
            per_image = self.select_proposals(
                decoded, objectness, images.image_sizes, num_anchors_per_level, finite
            )
        except NonFiniteError:
            detail = count_nonfinite(box_deltas=deltas.detach(), objectness=objectness.detach())
            raise NonFiniteError("rpn proposals", detail) from None
        return {
            "anchors": anchors,
            "objectness": objectness,
            "deltas": deltas,
            "decoded": decoded,
            "num_anchors_per_level": num_anchors_per_level,
            "per_image": per_image,
        }

    def forward(
        self,
        images: ImageList,
        features: OrderedDict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals ``[K_i, 4]`` per image (detached) and, in training mode, the two RPN losses."""
        out = self.propose(images, features)
        proposals = [p["boxes"] for p in out["per_image"]]
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN needs targets in training mode")
            labels, matched_boxes = self.assign_targets(out["anchors"], targets)
            regression_targets = [
                self.box_coder.encode(m, a) for m, a in zip(matched_boxes, out["anchors"], strict=True)
            ]
            losses = self.compute_loss(out["objectness"], out["deltas"], labels, regression_targets)
        return proposals, losses
