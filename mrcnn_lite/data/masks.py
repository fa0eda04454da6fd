"""Instance masks in COCO's three spellings: polygons, RLE and binary arrays.

COCO stores an object's segmentation either as a list of polygons
(``[[x1, y1, x2, y2, ...], ...]``, one per connected piece) or as run-length
encoding (RLE; ``{"size": [h, w], "counts": ...}``, compressed string or
uncompressed list). Crowd regions are always RLE. Everything here goes through
pycocotools so that our masks, areas and boxes agree with the COCO evaluator's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Segmentation = list[list[float]] | dict[str, Any]


def to_rle(segm: Segmentation, height: int, width: int) -> dict[str, Any]:
    """Return the compressed RLE of a polygon list, an uncompressed RLE or a compressed RLE."""
    if isinstance(segm, list):
        # pycocotools reads a first entry of 4 numbers as a box, so pieces with < 3 points are dropped here.
        polygons = [p for p in segm if len(p) >= 6]
        if not polygons:
            raise ValueError(f"polygon segmentation has no piece with >= 3 points: {segm!r:.80}")
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    if isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        return segm
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segm).__name__}")


def decode(segm: Segmentation, height: int, width: int) -> np.ndarray:
    """Decode any COCO segmentation into a ``uint8`` mask of shape ``(height, width)``."""
    return mask_utils.decode(to_rle(segm, height, width))


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a binary ``(H, W)`` mask as compressed RLE with ``counts`` as ``str`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def area(segm: Segmentation, height: int, width: int) -> int:
    """Pixel area of a segmentation, exactly as pycocotools counts it."""
    return int(mask_utils.area(to_rle(segm, height, width)))


def bbox(segm: Segmentation, height: int, width: int) -> list[float]:
    """Tight ``[x, y, w, h]`` box of a segmentation (COCO's box convention)."""
    return [float(v) for v in mask_utils.toBbox(to_rle(segm, height, width))]


def to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """Trace the outer boundaries of a binary mask into COCO polygons.

    The contour runs along pixel edges at level 0.5 of the mask padded by one
    pixel, so decoding the polygons gives back the mask up to the boundary
    pixels that pycocotools' rasteriser rounds differently. Holes are not
    represented (COCO's polygons cannot hold them either, which is why COCO
    stores such objects as RLE).
    """
    import contourpy

    padded = np.pad(mask.astype(np.float64), 1)
    gen = contourpy.contour_generator(z=padded, name="serial", corner_mask=False)
    polygons = []
    for line in gen.lines(0.5):
        if len(line) - 1 < min_points:  # closed lines repeat their first point
            continue
        xy = line[:-1] - 1.0 + 0.5  # undo the pad; pixel centres -> pixel-edge coordinates
        if _signed_area(xy) <= 0:  # clockwise in image coordinates = a hole
            continue
        polygons.append([round(float(v), 2) for v in xy.reshape(-1)])
    return polygons


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
