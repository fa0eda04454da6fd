"""Ground truth as ``COCOeval`` should see it: validated before inference, unusable annotations turned into
ignore regions, one warning per IoU type.

Real annotation exports hold geometry pycocotools cannot read (polygons with fewer than 3 points, odd-length
or NaN coordinate lists, empty lists, zero-area or negative boxes, RLEs of the wrong size or that decode
empty, a segmentation of another type): ``COCOeval`` would crash on them after the whole inference.
:func:`check_ground_truth` judges every annotation before anything runs, each IoU type by the geometry it
compares: ``bbox`` by the box, ``segm`` by the segmentation (and both by a stated area that is not a
number). An annotation unusable for a type becomes, for that type only, an *ignore region*: ``iscrowd=1``
(``COCOeval._prepare`` overwrites an annotation's ``ignore`` with its ``iscrowd``, so ``iscrowd`` is the
only ignore flag it honours, for ``bbox`` and ``segm`` alike) over the geometry it still has: its box for
``segm`` when only the polygon is bad, the tight box of its mask for ``bbox`` when only the box is bad,
nothing when neither is usable. A detection on it is then neither a true nor a false positive (matched with
COCO's crowd IoU, intersection over the detection's area), and it is no object to find. An object with a
good box and a bad polygon still counts as an object for box AP. Each call warns once per IoU type with the
counts (:class:`UnusableGroundTruthWarning`). What cannot be worked around (a missing field, an annotation
whose image or category is not listed, two annotations with one id) raises
:class:`~mrcnn_lite.data.coco.CocoFormatError` naming the file, the field and the id.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_lite.data.coco_annotations import (
    AnnotationCheck,
    DegenerateAnnotationWarning,
    check_annotation,
    count_reasons,
)
from mrcnn_lite.data.coco_format import CocoFormatError, read_ground_truth, validate_coco

IOU_TYPES = ("bbox", "segm")


class UnusableGroundTruthWarning(DegenerateAnnotationWarning):
    """Some ground-truth annotations are unusable for an IoU type and are evaluated as ignore regions."""


#: what evaluation reads: fewer fields than training (no file names; ``segmentation`` only for ``segm``)
EVAL_IMAGE_FIELDS = ("id", "height", "width")
EVAL_CATEGORY_FIELDS = ("id",)
EVAL_ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area")


@dataclass
class GroundTruthCheck:
    """What :func:`check_ground_truth` found in a ground truth, per IoU type.

    ``unusable[iou_type]`` counts the unusable annotations of the evaluated images by reason;
    ``dropped_pieces`` counts polygon pieces of < 3 points dropped from otherwise usable segmentations
    (they cover no pixel; pycocotools would read a first one of 4 numbers as a box); ``replaced[iou_type]``
    maps an annotation id to the annotation ``COCOeval`` gets instead (an ignore region, or the polygon
    without its short pieces)."""

    source: str
    unusable: dict[str, Counter[str]] = field(default_factory=lambda: {t: Counter() for t in IOU_TYPES})
    dropped_pieces: int = 0
    replaced: dict[str, dict[Any, dict]] = field(default_factory=lambda: {t: {} for t in IOU_TYPES})

    def message(self, iou_type: str) -> str | None:
        """The warning for ``iou_type``, or None when every annotation is usable as it is."""
        parts = []
        n = sum(self.unusable[iou_type].values())
        if n:
            many = n != 1
            parts.append(
                f"{n} annotation{'s' * many} in {self.source} {'are' if many else 'is'} unusable for "
                f"{iou_type} evaluation ({count_reasons(self.unusable[iou_type])}); treated as "
                f"{'' if many else 'an '}ignore region{'s' * many} (iscrowd=1: a detection on "
                f"{'one' if many else 'it'} is neither a true nor a false positive)"
            )
        if iou_type == "segm" and self.dropped_pieces:
            k = self.dropped_pieces
            parts.append(
                f"{k} polygon piece{'s' if k != 1 else ''} with <3 points in {self.source} dropped from "
                "otherwise usable segmentations"
            )
        return "; ".join(parts) or None

    def warn(self, iou_types: Iterable[str], stacklevel: int = 2) -> None:
        """One :class:`UnusableGroundTruthWarning` per IoU type that has something to report."""
        for iou_type in iou_types:
            text = self.message(iou_type)
            if text:
                warnings.warn(text, UnusableGroundTruthWarning, stacklevel=stacklevel + 1)


def check_ground_truth(
    gt: COCO, img_ids: Iterable[int] | None = None, source: str | Path | None = None
) -> GroundTruthCheck:
    """Validate a ground truth for evaluation and decide what ``COCOeval`` gets for every annotation.

    Raises :class:`~mrcnn_lite.data.coco.CocoFormatError` (naming ``source``, default the file the ground
    truth was read from, the field and the annotation id) for what cannot be evaluated at all; judges
    every annotation's box and segmentation (:func:`~mrcnn_lite.data.coco.check_annotation`) and turns
    the unusable ones into ignore regions (see the module's docstring). Counts cover the annotations of
    ``img_ids`` (default: all). Call it before inference: it reads only the JSON.
    """
    if source is None:
        source = getattr(gt, "ann_file", None) or "the ground truth"
    data = gt.dataset
    validate_coco(data, source, EVAL_IMAGE_FIELDS, EVAL_CATEGORY_FIELDS, EVAL_ANNOTATION_FIELDS)
    seen: set = set()
    for ann in data["annotations"]:
        if ann["id"] in seen:
            raise CocoFormatError(
                f"{source}: annotation id {ann['id']!r} appears more than once in 'annotations' "
                "(COCOeval would count one of them twice and lose the other)"
            )
        seen.add(ann["id"])
    images = {img["id"]: img for img in data["images"]}
    wanted = None if img_ids is None else set(img_ids)
    check = GroundTruthCheck(str(source))
    for ann in data["annotations"]:
        img = images[ann["image_id"]]
        found = check_annotation(ann, img, rasterise=True)
        counted = wanted is None or ann["image_id"] in wanted
        for iou_type, problem in (("bbox", found.box), ("segm", found.segm)):
            problem = problem or found.area
            if problem:
                check.replaced[iou_type][ann["id"]] = _ignore_region(ann, img, iou_type, found)
                if counted:
                    check.unusable[iou_type][problem] += 1
        if found.dropped_pieces and not found.area:
            check.replaced["segm"][ann["id"]] = {**ann, "segmentation": found.segmentation}
            if counted:
                check.dropped_pieces += found.dropped_pieces
    return check


def _ignore_region(ann: dict, img: dict, iou_type: str, found: AnnotationCheck) -> dict:
    """``ann`` as an ignore region for ``iou_type``: ``iscrowd=1`` over the geometry it still has."""
    h, w = img["height"], img["width"]
    box = ann["bbox"] if found.box is None else None
    segm = found.segmentation  # None when unusable
    region = {**ann, "iscrowd": 1}
    if found.area:
        region["area"] = 0.0  # a crowd region's area is never compared, but must be a number
    if iou_type == "bbox":
        if box is None and segm is not None:  # the tight box of its mask
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w)) if isinstance(segm, list) else segm
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, h, w)
            box = mask_utils.toBbox(rle).tolist()
        region["bbox"] = [float(v) for v in box] if box is not None else [0.0, 0.0, 0.0, 0.0]
    else:
        if segm is None and box is not None:  # its box, as a polygon
            x, y, bw, bh = (float(v) for v in box)
            segm = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
        region["segmentation"] = segm if segm is not None else {"size": [h, w], "counts": [h * w]}  # nothing
    return region


def ground_truth_for(gt: COCO, iou_type: str, check: GroundTruthCheck) -> COCO:
    """A copy of ``gt`` as ``COCOeval`` should see it for ``iou_type``: the annotations of
    ``check.replaced[iou_type]`` replaced. Every annotation is a copy, since ``COCOeval`` rewrites the
    segmentations of the ground truth it is given."""
    replaced = check.replaced[iou_type]
    clean = COCO()
    clean.dataset = {
        **gt.dataset,
        "annotations": [dict(replaced.get(a["id"], a)) for a in gt.dataset["annotations"]],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        clean.createIndex()
    return clean


def load_ground_truth(ann_file: str | Path) -> COCO:
    """A pycocotools ``COCO`` for an instances JSON, validated for evaluation (a missing field, an unknown
    image or category: ``CocoFormatError``), without its progress prints (a
    :class:`~mrcnn_lite.data.coco.CocoGroundTruth`: it remembers its file for messages)."""
    return read_ground_truth(
        ann_file, image_fields=EVAL_IMAGE_FIELDS, category_fields=EVAL_CATEGORY_FIELDS,
        annotation_fields=EVAL_ANNOTATION_FIELDS,
    )  # fmt: skip
