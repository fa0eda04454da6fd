"""The multi-task loss routing figure (Mask R-CNN §3 "Multi-task loss"), for notebook 05.

One image's sampled RoIs drawn on it, coloured by the loss terms they feed (every sampled RoI feeds L_cls;
only the positives feed L_box and L_mask), and for one positive RoI what each term reads: all K class
scores (L_cls), the 4 deltas of its ground-truth class out of 4K (L_box), and the mask channel of its
ground-truth class out of K (L_mask). The figure takes the heads' real outputs and the library sampler's
RoIs; it computes nothing but the one RoI's three loss terms, for the labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from mrcnn_lite.viz import to_numpy_image

__all__ = ["plot_loss_routing"]

NEGATIVE = "tab:red"
POSITIVE = "blue"
HIGHLIGHT = "yellow"
DELTA_NAMES = ("dx", "dy", "dw", "dh")


def _box(ax: Axes, b: Sequence[float], **kw: object) -> None:
    """Draw box ``b`` (x1, y1, x2, y2) as an unfilled rectangle."""
    ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **kw))


def _routing_panel(ax: Axes, image: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor,
                   gt_boxes: torch.Tensor, r: int, class_names: Sequence[str]) -> None:
    """The image with its sampled RoIs: negatives thin red (L_cls only), positives thick blue (all three)."""
    ax.imshow(to_numpy_image(image), alpha=0.75)
    pos = labels > 0
    for b in rois[~pos].tolist():
        _box(ax, b, ec=NEGATIVE, lw=0.6, alpha=0.45)
    for b in rois[pos].tolist():
        _box(ax, b, ec=POSITIVE, lw=1.6, alpha=0.85)
    for b in gt_boxes.tolist():
        _box(ax, b, ec="white", lw=1.6, ls="--")
    _box(ax, rois[r].tolist(), ec=HIGHLIGHT, lw=3.2)
    ax.text(float(rois[r, 0]) + 2, float(rois[r, 1]) + 2, "RoI r", color="black", fontsize=9, va="top",
            bbox={"fc": HIGHLIGHT, "ec": "none", "pad": 1.5})
    classes = ", ".join(class_names[k] for k in sorted(set(labels[pos].tolist())))
    handles = [
        Line2D([], [], color=NEGATIVE, lw=1, label=f"{int((~pos).sum())} negatives (IoU < 0.5): L_cls only"),
        Line2D([], [], color=POSITIVE, lw=2.2,
               label=f"{int(pos.sum())} positives ({classes}): L_cls + L_box + L_mask"),
        Line2D([], [], color="white", ls="--", lw=1.6, label="ground-truth box"),
        Line2D([], [], color=HIGHLIGHT, lw=3, label="RoI r, the positive shown on the right"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=9, ncol=1,
              facecolor="0.8")
    ax.set_title(f"{len(labels)} sampled RoIs of one image: {int(pos.sum())} positive, "
                 f"{int((~pos).sum())} negative", fontsize=11)
    ax.set_axis_off()


def _class_panel(ax: Axes, class_logits: torch.Tensor, k: int, class_names: Sequence[str]) -> None:
    """L_cls reads all K scores: the softmax probabilities, the ground-truth class's bar outlined."""
    probs = F.softmax(class_logits.float(), dim=0).numpy()
    colours = ["0.6"] * len(probs)
    colours[k] = POSITIVE
    ax.bar(range(len(probs)), probs, color=colours, edgecolor=["black" if c == k else "none"
                                                              for c in range(len(probs))], lw=1.5)
    ax.set_xticks(range(len(probs)), ["bg" if c == 0 else class_names[c] for c in range(len(probs))],
                  rotation=45, fontsize=8)
    ax.set_ylabel("softmax probability")
    loss = float(-F.log_softmax(class_logits.float(), dim=0)[k])
    ax.set_title(f"L_cls reads all {len(probs)} class scores\n−log p(GT = {class_names[k]}) = {loss:.2f}",
                 fontsize=10)


def _box_panel(ax: Axes, box_deltas: torch.Tensor, box_target: torch.Tensor, k: int,
               class_names: Sequence[str]) -> None:
    """L_box reads 4 of the 4K deltas: the K x 4 table, only the ground-truth class's row in colour."""
    table = box_deltas.float().reshape(-1, 4).numpy()
    n = len(table)
    lim = float(np.abs(table).max()) or 1.0
    ax.imshow(table, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
    for c in range(n):
        if c != k:
            ax.add_patch(Rectangle((-0.5, c - 0.5), 4, 1, fc="white", ec="none", alpha=0.75))
        for j in range(4):
            ax.text(j, c, f"{table[c, j]:+.2f}", ha="center", va="center", fontsize=7.5,
                    color="black" if c == k else "0.55")
    ax.add_patch(Rectangle((-0.5, k - 0.5), 4, 1, fill=False, ec="black", lw=2.2))
    ax.set_xticks(range(4), DELTA_NAMES)
    ax.set_yticks(range(n), ["bg" if c == 0 else class_names[c] for c in range(n)], fontsize=8)
    target = ", ".join(f"{v:+.2f}" for v in box_target.float().tolist())
    loss = float(F.smooth_l1_loss(box_deltas.float().reshape(-1, 4)[k], box_target.float(), beta=1 / 9,
                                  reduction="sum"))
    ax.set_title(f"L_box reads row {class_names[k]} only (4 of {4 * n} deltas)\n"
                 f"target ({target}), smooth-L1 sum {loss:.2f}", fontsize=10)


def _mask_panels(sub: SubFigure, mask_logits: torch.Tensor, mask_target: torch.Tensor, k: int,
                 class_names: Sequence[str]) -> None:
    """L_mask reads 1 of the K channels: each channel's sigmoid, the ground-truth one framed, the target."""
    n = mask_logits.shape[0]
    axes = sub.subplots(1, n + 1)
    probs = torch.sigmoid(mask_logits.float()).numpy()
    for c, ax in enumerate(axes[:n]):
        read = c == k
        ax.imshow(probs[c], cmap="viridis", vmin=0, vmax=1, alpha=1.0 if read else 0.3)
        name = "bg" if c == 0 else class_names[c]
        ax.set_title(f"ch {c}: {name}\n" + ("READ by L_mask" if read else "not read"), fontsize=9,
                     color="black" if read else "0.5", fontweight="bold" if read else "normal")
        for side in ax.spines.values():
            side.set(color="black" if read else "0.8", lw=3 if read else 0.8)
    axes[n].imshow(mask_target.float().numpy(), cmap="gray", vmin=0, vmax=1)
    loss = float(F.binary_cross_entropy_with_logits(mask_logits[k].float(), mask_target.float()))
    axes[n].set_title(f"target (m×m)\nBCE of ch {k}: {loss:.2f}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    sub.suptitle(f"L_mask reads the channel of the GT class ({class_names[k]}) only: 1 of the K = {n} "
                 "mask channels (sigmoid shown)", fontsize=10)


def plot_loss_routing(image: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor, gt_boxes: torch.Tensor,
                      r: int, class_logits: torch.Tensor, box_deltas: torch.Tensor, box_target: torch.Tensor,
                      mask_logits: torch.Tensor, mask_target: torch.Tensor,
                      class_names: Sequence[str]) -> Figure:
    """The routing figure: ``rois [R, 4]`` and ``labels [R]`` (0 = background) are one image's sampled
    RoIs; ``r`` indexes a positive one, whose head outputs are ``class_logits [K]``, ``box_deltas [4K]``,
    ``mask_logits [K, m, m]``, with its targets ``box_target [4]`` and ``mask_target [m, m]``."""
    k = int(labels[r])
    if k <= 0:
        raise ValueError(f"RoI {r} is a negative (label 0): pick a positive one to show L_box and L_mask")
    fig = plt.figure(figsize=(19, 7.8), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.45])
    _routing_panel(left.subplots(), image, rois, labels, gt_boxes, r, class_names)
    top, bottom = right.subfigures(2, 1, height_ratios=[1.3, 0.7])
    ax_cls, ax_box = top.subplots(1, 2, width_ratios=[1, 1.1])
    _class_panel(ax_cls, class_logits, k, class_names)
    _box_panel(ax_box, box_deltas, box_target, k, class_names)
    top.suptitle(f"RoI r (yellow, left): a positive of class {class_names[k]} — what each term reads",
                 fontsize=11)
    _mask_panels(bottom, mask_logits, mask_target, k, class_names)
    fig.suptitle("The multi-task loss L = L_cls + L_box + L_mask (Mask R-CNN §3): which sampled RoIs feed "
                 "which term, and which outputs each term reads", fontsize=13)
    return fig
