"""Drawing FPN's level assignment: each RoI on the feature grid of the pyramid level it is routed to.

FPN (Lin et al. 2017, Eq. 1; Mask R-CNN §3.1) pools an RoI of scale sqrt(wh) from level
k = floor(4 + log2(sqrt(wh) / 224)), clamped to P2..P5. Drawn on its level's grid (one cell per stride x
stride pixels), every RoI that is not clamped spans between 14 and 28 cells across, so the 7x7 (box head)
or 14x14 (mask head) RoIAlign output samples a similar number of cells for a small and a large object.
Used by notebook 03; no library module imports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["draw_level_grid", "level_grids_figure"]

LEVEL_COLOURS = {2: "tab:green", 3: "tab:orange", 4: "tab:red", 5: "tab:purple"}


def _show(ax: Axes, image: torch.Tensor, extent_hw: tuple[int, int]) -> None:
    """The image (float [3, H, W] in [0, 1] or uint8) in faded grey, on a canvas of the padded size."""
    img = image.permute(1, 2, 0).float()
    img = img / 255.0 if image.dtype == torch.uint8 else img
    ph, pw = extent_hw
    ax.add_patch(Rectangle((0, 0), pw, ph, color="0.9", zorder=0))
    grey = img.clamp(0, 1).mean(-1).numpy()  # grey, so that the levels' colours stand out
    extent = (0, img.shape[1], img.shape[0], 0)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, alpha=0.6, extent=extent, zorder=1)
    ax.set_xlim(0, pw)
    ax.set_ylim(ph, 0)


def draw_level_grid(
    ax: Axes,
    image: torch.Tensor,
    boxes: torch.Tensor,
    level: int,
    stride: int,
    padded_hw: tuple[int, int],
    names: Sequence[str] | None = None,
) -> None:
    """One panel: ``image`` with the grid of level ``level`` (a line every ``stride`` px over the padded
    ``padded_hw`` batch) and the RoIs ``boxes`` ([K, 4] XYXY, test-size pixels) routed to it, each with the
    cells it overlaps shaded and its scale in pixels and in cells."""
    _show(ax, image, padded_hw)
    ph, pw = padded_hw
    colour = LEVEL_COLOURS.get(level, "tab:blue")
    lines = [[(x, 0), (x, ph)] for x in range(0, pw + 1, stride)]
    lines += [[(0, y), (pw, y)] for y in range(0, ph + 1, stride)]
    width = 0.3 if stride < 8 else 0.5
    ax.add_collection(LineCollection(lines, colors="k", linewidths=width, alpha=0.5, zorder=2))
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        c0, r0 = math.floor(x0 / stride), math.floor(y0 / stride)
        c1, r1 = math.ceil(x1 / stride), math.ceil(y1 / stride)
        ax.add_patch(Rectangle((c0 * stride, r0 * stride), (c1 - c0) * stride, (r1 - r0) * stride,
                               color=colour, alpha=0.35, lw=0, zorder=3))  # fmt: skip
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=2, zorder=4))
        scale = math.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0))
        label = f"{names[i]}: " if names is not None else ""
        box_style = {"fc": colour, "ec": "none", "pad": 1.0}
        ax.text(x0 + 2, y0 + 2, f"{label}{scale:.0f} px = {scale / stride:.1f} cells", fontsize=7,
                color="white", va="top", zorder=5, bbox=box_style)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def level_grids_figure(
    image: torch.Tensor,
    boxes: torch.Tensor,
    levels: torch.Tensor,
    strides: dict[int, int],
    padded_hw: tuple[int, int],
    names: Sequence[str] | None = None,
    k0: int = 4,
    canonical: float = 224.0,
) -> Figure:
    """One panel per level of ``strides`` ({level: stride}, e.g. P2..P5), each RoI of ``boxes`` drawn on the
    panel of its level in ``levels`` ([K] int, e.g. from ``assign_fpn_levels``). An empty panel says which
    scales Eq. 1 would send there."""
    ks = sorted(strides)
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 4.4), layout="constrained")
    for ax, k in zip(axes, ks, strict=True):
        on = (levels == k).nonzero().flatten().tolist()
        draw_level_grid(ax, image, boxes[on], k, strides[k], padded_hw,
                        [names[i] for i in on] if names is not None else None)  # fmt: skip
        lo = canonical * 2.0 ** (k - k0) if k != ks[0] else 0.0
        hi = canonical * 2.0 ** (k + 1 - k0) if k != ks[-1] else math.inf
        if lo == 0:
            rule = f"sqrt(wh) < {hi:.0f} px"
        else:
            rule = f"sqrt(wh) ≥ {lo:.0f} px" if hi == math.inf else f"{lo:.0f} ≤ sqrt(wh) < {hi:.0f} px"
        gh, gw = -(-padded_hw[0] // strides[k]), -(-padded_hw[1] // strides[k])
        ax.set_title(f"P{k}: stride {strides[k]}, {gh}x{gw} cells, {len(on)} RoI{'s' * (len(on) != 1)}\n"
                     f"Eq. 1 sends {rule} here", fontsize=9, color=LEVEL_COLOURS.get(k, "k"))  # fmt: skip
        if not on:
            ax.text(padded_hw[1] / 2, padded_hw[0] / 2, f"no RoI of this image\n({rule})", ha="center",
                    va="center", fontsize=9, zorder=5, bbox={"fc": "white", "alpha": 0.8})  # fmt: skip
    return fig
