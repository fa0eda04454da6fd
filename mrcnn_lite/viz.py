"""Drawing images with instances (boxes, masks, labels, scores) for the notebooks and ``predict``.

Colours come from a fixed palette indexed by instance, so the same inputs always draw the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors


def to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A CHW tensor (uint8 or float in [0, 1]) or an HWC array as an HWC float array in [0, 1]."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype == torch.uint8:
            image = image.float() / 255
        image = image.permute(1, 2, 0).numpy()
    elif image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    return np.clip(image, 0, 1)


def draw_instances(
    ax: Axes,
    image: torch.Tensor | np.ndarray,
    boxes: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    labels: Sequence[int] | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    scores: torch.Tensor | None = None,
    alpha: float = 0.45,
    fontsize: int = 7,
) -> Axes:
    """Draw an image with its instances: translucent masks, XYXY boxes and ``name score`` captions."""
    canvas = to_numpy_image(image).copy()
    n = (
        max(len(x) for x in (boxes, masks, labels) if x is not None)
        if any(x is not None for x in (boxes, masks, labels))
        else 0
    )
    if masks is not None and len(masks):
        m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
        for i in range(n):
            colour = np.asarray(PALETTE[i % len(PALETTE)])
            sel = m[i] > 0.5
            canvas[sel] = (1 - alpha) * canvas[sel] + alpha * colour
    ax.imshow(canvas)
    for i in range(n):
        colour = PALETTE[i % len(PALETTE)]
        if boxes is not None:
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))
        if labels is not None and boxes is not None:
            label = int(labels[i])
            text = class_names[label] if class_names is not None else str(label)
            if scores is not None:
                text += f" {float(scores[i]):.2f}"
            ax.text(
                x0,
                y0,
                text,
                fontsize=fontsize,
                color="white",
                va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
    ax.set_axis_off()
    return ax
