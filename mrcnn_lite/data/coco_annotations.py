"""Judging one annotation's geometry: a box, a segmentation (polygons or RLE) and a stated area that
training can use (:func:`check_annotation`), and the counts of what was skipped, for the warnings.
Training skips the unusable ones (:class:`~mrcnn_lite.data.coco.CocoDetection`); evaluation keeps them
as ignore regions (:mod:`mrcnn_lite.evaluation.ground_truth`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pycocotools import mask as mask_utils

from mrcnn_lite.data.masks import is_number, rle_runs, usable_polygons


class DegenerateAnnotationWarning(UserWarning):
    """Some annotations could not become training targets and were skipped."""


#: the plural of each reason :func:`check_annotation` gives, for the warnings' counts
REASONS = {
    "box that is not 4 finite numbers": "boxes that are not 4 finite numbers",
    "box with a negative width or height": "boxes with a negative width or height",
    "zero-area box": "zero-area boxes",
    "annotation without a segmentation": "annotations without a segmentation",
    "segmentation that is neither polygons nor RLE": "segmentations that are neither polygons nor RLE",
    "polygon with a coordinate that is not a finite number": (
        "polygons with a coordinate that is not a finite number"
    ),
    "polygon with an odd number of coordinates": "polygons with an odd number of coordinates",
    "polygon with <3 points": "polygons with <3 points",
    "polygon that covers no pixel": "polygons that cover no pixel",
    "empty mask": "empty masks",
    "RLE of another size than its image": "RLEs of another size than their image",
    "RLE that cannot be decoded": "RLEs that cannot be decoded",
    "empty RLE": "empty RLEs",
    "area that is not a finite number": "areas that are not a finite number",
}


def count_reasons(counts: Counter[str]) -> str:
    """``Counter({"zero-area box": 1, "polygon with <3 points": 3})`` -> "3 polygons with <3 points, 1
    zero-area box" (most frequent first)."""
    return ", ".join(f"{n} {why if n == 1 else REASONS.get(why, why)}" for why, n in counts.most_common())


@dataclass(frozen=True)
class AnnotationCheck:
    """What :func:`check_annotation` found: why the box, the segmentation and the stated area are
    unusable (None: usable), the usable segmentation (polygons without their pieces of < 3 points, or the
    RLE; None when unusable) and how many pieces were dropped."""

    box: str | None
    segm: str | None
    area: str | None
    segmentation: list[list[float]] | dict[str, Any] | None
    dropped_pieces: int = 0


def check_annotation(ann: dict, img: dict, rasterise: bool = True) -> AnnotationCheck:
    """Judge an annotation's box, segmentation and area on their own (each as a short reason or None).

    The box must be 4 finite numbers with a positive width and height. Polygons go through
    :func:`~mrcnn_lite.data.masks.usable_polygons` and, with ``rasterise``, must cover at least one pixel
    (training skips rasterising here: train2017 has 860k annotations). An RLE must have its image's size,
    run lengths that cover exactly height x width pixels and at least one foreground pixel. The area must
    be a finite number. Fields are assumed present (:func:`~mrcnn_lite.data.coco_format.validate_coco`),
    except ``segmentation``.
    """
    h, w = img["height"], img["width"]
    box_problem = _box_problem(ann["bbox"])
    area_problem = None if is_number(ann["area"]) else "area that is not a finite number"

    segm, segm_problem, dropped = ann.get("segmentation"), None, 0
    if "segmentation" not in ann:
        segm_problem = "annotation without a segmentation"
    elif isinstance(segm, list):
        segm_problem, pieces, dropped = usable_polygons(segm)
        segm = pieces
        if segm_problem is None and rasterise:
            if mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(pieces, h, w))) == 0:
                segm_problem = "polygon that covers no pixel"
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        segm_problem = _rle_problem(segm, h, w)
    else:
        segm_problem = "segmentation that is neither polygons nor RLE"
    usable = None if segm_problem else segm
    return AnnotationCheck(box_problem, segm_problem, area_problem, usable, 0 if segm_problem else dropped)


def _box_problem(box: Any) -> str | None:
    """Why a COCO ``bbox`` ([x, y, w, h]) is unusable, or None: 4 finite numbers, a positive width and
    height."""
    if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
        return "box that is not 4 finite numbers"
    if box[2] < 0 or box[3] < 0:
        return "box with a negative width or height"
    if box[2] == 0 or box[3] == 0:
        return "zero-area box"
    return None


def _rle_problem(segm: dict, h: int, w: int) -> str | None:
    """Why an RLE segmentation is unusable in an ``h`` x ``w`` image, or None: its size is the image's, its
    run lengths cover exactly h x w pixels, and at least one pixel is foreground."""
    size = segm["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        return "RLE that cannot be decoded"
    if list(size) != [h, w]:
        return "RLE of another size than its image"
    try:
        runs = rle_runs(segm)
    except ValueError:
        runs = None
    if runs is None or sum(runs) != h * w:
        return "RLE that cannot be decoded"
    if sum(runs[1::2]) == 0:
        return "empty RLE"
    return None
