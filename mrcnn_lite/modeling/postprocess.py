"""Inference: detections from the box head, their masks pasted into the image (Mask R-CNN §3 "Inference").

"At test time, the proposal number is 300 for the C4 backbone and 1000 for FPN. We run the box prediction
branch on these proposals, followed by non-maximum suppression. The mask branch is then applied to the
highest scoring 100 detection boxes. [...] The m×m floating-number mask output is then resized to the RoI
size, and binarized at a threshold of 0.5." (§3).

- ``postprocess_detections``: softmax class scores, one decoded box per class, clipped to the image;
  background dropped; every (RoI, class) pair with score > ``score_thresh`` is a candidate; tiny boxes
  removed; NMS separately per class; the best ``detections_per_image`` kept. Equal to torchvision's
  ``RoIHeads.postprocess_detections``.
- ``select_masks``: "the mask branch can predict K masks per RoI, but we only use the k-th mask, where k is
  the predicted class by the classification branch" (§3), as probabilities.
- ``paste_masks``: each m×m probability map resized into its box in the full image, all detections at once.

Two conventions for pasting (``legacy``):

- ``legacy=False`` (default, detectron2's): continuous coordinates, the exact inverse of ``aligned``
  RoIAlign. Mask cell (i, j) covers the box's sub-rectangle
  ``[x1 + j·w/m, x1 + (j+1)·w/m] × [y1 + i·h/m, y1 + (i+1)·h/m]`` and pixel (x, y) is sampled at its centre
  (x + 0.5, y + 0.5) by bilinear interpolation, the mask being zero outside its m×m cells.
- ``legacy=True`` (Detectron's and torchvision's ``paste_masks_in_image``): the mask is padded by one zero
  cell, the box scaled by (m + 2) / m about its centre and truncated to integers (x0, y0, x1, y1), and the
  padded mask resized (bilinear, ``align_corners=False``) onto the ``x1 - x0 + 1`` by ``y1 - y0 + 1``
  pixels x0..x1, y0..y1 inclusive (the "+1" of the old box convention): up to about a pixel of
  quantisation, the kind RoIAlign removed on the way in.

Both are computed the same way: bilinear resizing is separable, and along one axis it is a matrix of
"tent" weights ``max(0, 1 - |s - j|)`` from image pixels to mask cells, s being the pixel's mask coordinate.
For all D detections at once, ``image = A_y @ mask @ A_xᵀ`` with ``A_y [D, H, m]`` and ``A_x [D, W, m]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from .box_coder import BoxCoder
from .finite import NonFiniteError, all_finite, count_nonfinite, where_if_finite

_CHUNK_PIXELS = 2**22  # paste_masks: float pixels computed at once (16 MB)


def postprocess_detections(
    class_logits: Tensor,
    box_deltas: Tensor,
    proposals: list[Tensor],
    image_sizes: list[tuple[int, int]],
    box_coder: BoxCoder,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_image: int = 100,
    min_size: float = 1e-2,
) -> list[dict[str, Tensor]]:
    """Per image, ``{"boxes": [D, 4], "scores": [D], "labels": [D]}`` sorted by decreasing score, from the box
    head's ``class_logits [R, K]`` and ``box_deltas [R, 4K]`` on ``proposals`` (per image ``[R_i, 4]``).

    Raises :class:`~mrcnn_lite.modeling.finite.NonFiniteError` ("box head deltas" or "box head class
    scores") when a decoded box or a class logit is NaN or infinite: the boxes go on to the mask branch's
    RoI pooling, and NaN scores would silently drop every detection."""
    num_classes = class_logits.shape[1]
    boxes = box_coder.decode(box_deltas, torch.cat(proposals)).reshape(-1, num_classes, 4)
    finite = all_finite(boxes, class_logits)  # read with the score filter's host sync below
    scores = F.softmax(class_logits, dim=-1)
    per_image = [len(p) for p in proposals]
    results = []
    for b, s, size in zip(boxes.split(per_image), scores.split(per_image), image_sizes, strict=True):
        b = clip_boxes_to_image(b, size)
        labels = torch.arange(num_classes, device=s.device).expand_as(s)
        # every (RoI, object class) pair is a candidate detection; class 0 is background
        b, s, labels = b[:, 1:].reshape(-1, 4), s[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        keep = where_if_finite(s > score_thresh, finite)
        if keep is None:
            bad_boxes = not bool(torch.isfinite(boxes).all())
            raise NonFiniteError(
                "box head deltas" if bad_boxes else "box head class scores",
                count_nonfinite(box_deltas=box_deltas, decoded_boxes=boxes, class_logits=class_logits),
            )
        b, s, labels = b[keep], s[keep], labels[keep]
        keep = remove_small_boxes(b, min_size)
        b, s, labels = b[keep], s[keep], labels[keep]
        keep = batched_nms(b, s, labels, nms_thresh)[:detections_per_image]  # NMS within each class
        results.append({"boxes": b[keep], "scores": s[keep], "labels": labels[keep]})
    return results


def select_masks(
    mask_logits: Tensor,
    labels: Tensor,
    kind: str = "sigmoid",
    class_agnostic: bool = False,
    decode: str = "threshold",
) -> Tensor:
    """``[D, 1, m, m]`` probabilities of the predicted classes ``labels [D]`` from ``mask_logits [D, K_out, m,
    m]``: sigmoid of channel k, softmax probability of class k among all channels (``kind="softmax"``), or the
    sigmoid of channel 0 for a class-agnostic head. The caller keeps pixels above 0.5.

    ``decode="argmax"`` (softmax masks only; Table 2b's rule fixed in advance) keeps the pixels where class
    k wins the argmax over all K+1 channels, as FCN segments: it returns ``sigmoid(z_k - max_{j != k} z_j)``,
    which is above 0.5 exactly there and interpolates smoothly when the mask is pasted."""
    if decode not in ("threshold", "argmax"):
        raise ValueError(f"decode must be 'threshold' or 'argmax', got {decode!r}")
    if decode == "argmax" and (kind != "softmax" or class_agnostic):
        raise ValueError("decode='argmax' compares the classes' channels: it needs class-specific softmax "
                         "masks")
    if class_agnostic:
        if kind == "softmax":
            raise ValueError("the softmax mask variant needs class-specific masks")
        return mask_logits[:, :1].sigmoid()
    index = torch.arange(len(labels), device=labels.device)
    if kind == "softmax" and decode == "argmax":
        own = mask_logits[index, labels]
        others = mask_logits.clone()
        others[index, labels] = float("-inf")
        return (own - others.amax(dim=1)).sigmoid()[:, None]
    if kind == "softmax":  # the probability of class k needs every channel
        return mask_logits.softmax(dim=1)[index, labels][:, None]
    return mask_logits[index, labels][:, None].sigmoid()  # one channel per detection: K times less work


def _tent_weights(coords: Tensor, m: int) -> Tensor:
    """Bilinear weights ``[D, N, m]`` from ``N`` sample positions per detection (mask coordinates, cell
    centres at 0..m-1) to the m cells; positions more than a cell outside the mask get all-zero weights."""
    cells = torch.arange(m, device=coords.device, dtype=coords.dtype)
    return (1 - (coords[..., None] - cells).abs()).clamp(min=0)


def _pixel_coords(lo: Tensor, hi: Tensor, size: int, m: int, legacy: bool) -> Tensor:
    """Mask coordinates ``[D, size]`` of the pixel centres 0..size-1 of one image axis, for boxes spanning
    ``[lo, hi]`` on it; NaN-free, with pixels that must stay empty pushed far outside the mask."""
    pixels = torch.arange(size, device=lo.device, dtype=torch.float32)
    if not legacy:
        return (pixels + 0.5 - lo[:, None]) / (hi - lo).clamp(min=1e-6)[:, None] * m - 0.5
    # torchvision: integer box lo..hi inclusive; F.interpolate of the (m + 2)-cell padded mask onto its
    # n = hi - lo + 1 pixels samples padded coordinate (u + 0.5)·(m + 2)/n - 0.5 at pixel u = x - lo, that is
    # one less in the unpadded mask (the zero padding is the tent weights' zero outside the m cells)
    n = (hi - lo + 1).clamp(min=1).float()
    u = pixels - lo[:, None].float()
    coords = (u + 0.5) * ((m + 2) / n)[:, None] - 1.5
    return torch.where((u >= 0) & (pixels <= hi[:, None].float()), coords, torch.full_like(coords, -2.0))


def _legacy_boxes(boxes: Tensor, m: int) -> Tensor:
    """torchvision's ``expand_boxes(boxes, (m + 2) / m)`` then ``.to(int64)`` (truncation toward zero)."""
    scale = float(m + 2) / m
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1).to(torch.int64)


@torch.no_grad()
def paste_masks(
    masks: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    threshold: float | None = 0.5,
    legacy: bool = False,
) -> Tensor:
    """Paste ``masks [D, 1, m, m]`` (probabilities) into their ``boxes [D, 4]`` (XYXY, image pixels) of an
    image of ``image_size = (H, W)``: ``[D, 1, H, W]``, binarised (``> threshold``, bool) unless
    ``threshold`` is None. See the module docstring for the two conventions (``legacy``). Inference only (no
    gradient).

    All detections share one batched matrix product; it runs over chunks of detections of about
    ``_CHUNK_PIXELS`` image pixels into one reused buffer, because allocating a float ``[D, H, W]`` costs more
    than computing it (100 detections in 800×1333: 426 MB).
    """
    with torch.autocast(masks.device.type, enabled=False):  # float32 geometry, also under amp inference
        return _paste_masks(masks, boxes, image_size, threshold, legacy)


def _paste_masks(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float | None, legacy: bool
) -> Tensor:
    height, width = image_size
    d, m = masks.shape[0], masks.shape[-1]
    boxes = boxes.float()
    if legacy:
        boxes = _legacy_boxes(boxes, m)
    a_y = _tent_weights(_pixel_coords(boxes[:, 1], boxes[:, 3], height, m, legacy), m)  # [D, H, m]
    a_x = _tent_weights(_pixel_coords(boxes[:, 0], boxes[:, 2], width, m, legacy), m)  # [D, W, m]
    rows = a_y @ masks[:, 0].float()  # [D, H, m]: every image row of every detection, still m cells wide
    binarise = threshold is not None
    out = torch.empty(
        (d, 1, height, width), device=masks.device, dtype=torch.bool if binarise else torch.float32
    )
    step = max(1, _CHUNK_PIXELS // (height * width))
    buffer = rows.new_empty((min(step, d), height, width)) if binarise else None
    for start in range(0, d, step):
        chunk = slice(start, start + step)
        n = len(rows[chunk])
        pasted = torch.bmm(
            rows[chunk], a_x[chunk].transpose(1, 2), out=buffer[:n] if binarise else out[chunk, 0]
        )
        if binarise:
            torch.gt(pasted, threshold, out=out[chunk, 0])
    return out
