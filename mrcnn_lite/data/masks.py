"""Instance masks in COCO's three spellings: polygons, RLE and binary arrays.

COCO stores an object's segmentation either as a list of polygons
(``[[x1, y1, x2, y2, ...], ...]``, one per connected piece) or as run-length
encoding (RLE; ``{"size": [h, w], "counts": ...}``, compressed string or
uncompressed list). Crowd regions are always RLE. Everything here goes through
pycocotools so that our masks, areas and boxes agree with the COCO evaluator's.
"""

from __future__ import annotations

import math
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


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity): what a coordinate, box or area must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def are_numbers(values: list) -> bool:
    """Every item is a finite int or float (fast on long lists: no Python loop over the items)."""
    if not set(map(type, values)) <= {int, float}:
        return False
    try:
        return math.isfinite(sum(values))  # NaN and infinities propagate through the sum
    except OverflowError:  # an int too large for a float
        return False


def usable_polygons(segm: list) -> tuple[str | None, list[list[float]], int]:
    """Check a polygon segmentation: ``(problem, usable pieces, pieces dropped)``; ``problem`` is None when
    the pieces can be rasterised.

    Pieces with fewer than 3 points (< 6 numbers) are dropped, as :func:`to_rle` and Detectron2 do (they
    cover no area, and pycocotools reads a first piece of 4 numbers as a box); if none is left the problem
    is "polygon with <3 points". A piece that is not a list of finite numbers, or has an odd number of
    them, makes the whole segmentation unusable (which coordinate is missing cannot be known).
    """
    pieces, dropped = [], 0
    for piece in segm:
        if not isinstance(piece, list) or not are_numbers(piece):
            return "polygon with a coordinate that is not a finite number", [], 0
        if len(piece) < 6:
            dropped += 1
        elif len(piece) % 2:
            return "polygon with an odd number of coordinates", [], 0
        else:
            pieces.append(piece)
    if not pieces:
        return "polygon with <3 points", [], 0
    return None, pieces, dropped


def rle_runs(segm: dict[str, Any]) -> list[int]:
    """The run lengths of an RLE (uncompressed ``counts`` list, or COCO's compressed string, decoded as
    pycocotools' ``rleFrString`` does), without trusting them: raises ``ValueError`` for counts that are
    not non-negative integers. Their sum should be height x width (pycocotools does not check it, and its
    decoder writes past the mask when it is larger)."""
    counts = segm["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("RLE counts must be non-negative integers")
        return list(counts)
    if isinstance(counts, str):
        counts = counts.encode("ascii")  # UnicodeEncodeError is a ValueError
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return []
    if c.min() < 0 or c.max() >= 64:
        raise ValueError("RLE counts hold a character outside '0'..'o'")
    ends = np.flatnonzero((c & 0x20) == 0)  # the last character of each number
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise ValueError("RLE counts end in the middle of a number")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:  # 60 bits: more is no run length pycocotools writes
        raise ValueError("RLE counts hold a number too large")
    k = np.arange(c.size) - np.repeat(starts, lengths)  # each character's place in its number
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0  # sign extension, as rleFrString does
    x[negative] -= np.left_shift(1, 5 * lengths[negative])
    # from the fourth number on, each is stored as the difference to the number two before it
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    if (runs < 0).any():
        raise ValueError("RLE counts decode to a negative run")
    return runs.tolist()


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
