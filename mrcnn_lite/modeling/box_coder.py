"""Box coder: boxes <-> regression deltas (dx, dy, dw, dh) (R-CNN appendix C; Faster R-CNN §3.1.2).

Faster R-CNN §3.1.2 (Eq. 2) parameterises a box relative to an anchor (or a proposal, in the RoI head):

    tx = (x - xa) / wa,   ty = (y - ya) / ha,   tw = log(w / wa),   th = log(h / ha)

with (x, y) the box centre and (w, h) its width and height. ``weights`` scale the four targets (Fast/Faster
R-CNN's target normalisation): Mask R-CNN's RPN uses (1, 1, 1, 1), its box head (10, 10, 5, 5). ``decode``
clamps dw, dh at ``log(1000 / 16)`` before the exponential so an untrained head cannot blow a box up.
Widths are ``x2 - x1`` (no "+1"), as in torchvision's ``BoxCoder``, which the tests check against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class BoxCoder:
    """Encodes boxes as deltas from reference boxes and decodes deltas back to boxes."""

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        clamp: float = math.log(1000 / 16),
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.clamp = clamp

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas ``[N, 4]`` that move each of ``proposals [N, 4]`` (anchors) onto ``reference_boxes [N, 4]``
        (their matched ground truth). The argument order is torchvision's."""
        wx, wy, ww, wh = self.weights
        ex_w = proposals[:, 2] - proposals[:, 0]
        ex_h = proposals[:, 3] - proposals[:, 1]
        ex_x = proposals[:, 0] + 0.5 * ex_w
        ex_y = proposals[:, 1] + 0.5 * ex_h

        gt_w = reference_boxes[:, 2] - reference_boxes[:, 0]
        gt_h = reference_boxes[:, 3] - reference_boxes[:, 1]
        gt_x = reference_boxes[:, 0] + 0.5 * gt_w
        gt_y = reference_boxes[:, 1] + 0.5 * gt_h

        dx = wx * (gt_x - ex_x) / ex_w
        dy = wy * (gt_y - ex_y) / ex_h
        dw = ww * torch.log(gt_w / ex_w)
        dh = wh * torch.log(gt_h / ex_h)
        return torch.stack([dx, dy, dw, dh], dim=1)

    def decode(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``[N, 4 * K]`` from ``deltas [N, 4 * K]`` applied to ``boxes [N, 4]`` (K = 1 for the RPN,
        K = number of classes for the class-specific box head)."""
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.clamp)

        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])
        pred = torch.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], dim=2)
        return pred.flatten(1)
