"""COCO annotations of the shapes data set: each visible mask as polygons, compressed RLE or (for crowds)
uncompressed RLE, with ``area`` and ``bbox`` read back from the stored segmentation by pycocotools
(see :mod:`mrcnn_lite.data.shapes`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mrcnn_lite.data import masks

RLE_FRACTION = 0.3  # share of ordinary instances stored as compressed RLE instead of polygons


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of 0s."""
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _drop_collinear(polygon: list[float]) -> list[float]:
    """Remove vertices that lie on the straight line through their neighbours (same outline, fewer points).

    ``masks.to_polygons`` puts a vertex on every pixel edge; coordinates are multiples of 0.5, so the
    collinearity test is exact.
    """
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    before, after = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    kept = xy[turn != 0]
    return kept.reshape(-1).tolist() if len(kept) >= 3 else []


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one pixel (3x3 square), with numpy shifts."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def _polygons_if_faithful(mask: np.ndarray) -> list[list[float]] | None:
    """Polygons of ``mask``, or None where they would misrepresent it.

    Polygons cannot hold holes (a ring's hole, or the place where a smaller shape sits on top of a
    bigger one), and thin slivers can vanish when rasterised; such masks are kept as RLE. Accepted
    polygons decode to the mask up to pixels along its boundary.
    """
    polygons = [p for p in map(_drop_collinear, masks.to_polygons(mask)) if p]
    if not polygons:
        return None
    decoded = masks.decode(polygons, *mask.shape).astype(bool)
    if np.any(decoded & ~_dilate(mask)) or np.count_nonzero(decoded & mask) < 0.8 * mask.sum():
        return None
    return polygons


def _annotation(
    visible: np.ndarray, obj: dict[str, Any], rng: np.random.Generator, ann_id: int, image_id: int
) -> dict[str, Any]:
    """COCO annotation of one visible mask; area and bbox are read back from the stored segmentation."""
    h, w = visible.shape
    want_rle = rng.random() < RLE_FRACTION
    if obj["iscrowd"]:
        segm: Any = _uncompressed_rle(visible)
    else:
        segm = None if want_rle else _polygons_if_faithful(visible)
        if segm is None:
            segm = masks.encode(visible)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category_id"],
        "segmentation": segm,
        "area": float(masks.area(segm, h, w)),
        "bbox": masks.bbox(segm, h, w),
        "iscrowd": obj["iscrowd"],
    }
