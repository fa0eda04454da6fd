"""COCO evaluation through pycocotools' ``COCOeval``: the numbers every table of the paper reports.

AP is averaged over IoU thresholds 0.50:0.05:0.95; AP50 and AP75 at one threshold; APs, APm, APl over
objects of area < 32², 32²..96², > 96² (paper §4, "Instance Segmentation"). ``iou_type="segm"`` is mask AP
(Table 1, Table 2), ``"bbox"`` box AP (Table 3). Crowd regions come from the ground-truth file: a detection
on a crowd region is neither a true nor a false positive.

**Unusable ground truth.** Real annotation exports hold geometry pycocotools cannot read (polygons with
fewer than 3 points, odd-length or NaN coordinate lists, empty lists, zero-area or negative boxes, RLEs of
the wrong size or that decode empty, a segmentation of another type): ``COCOeval`` would crash on them
after the whole inference. :func:`check_ground_truth` judges every annotation before anything runs, each
IoU type by the geometry it compares: ``bbox`` by the box, ``segm`` by the segmentation (and both by a
stated area that is not a number). An annotation unusable for a type becomes, for that type only, an
*ignore region*: ``iscrowd=1`` (``COCOeval._prepare`` overwrites an annotation's ``ignore`` with its
``iscrowd``, so ``iscrowd`` is the only ignore flag it honours, for ``bbox`` and ``segm`` alike) over the
geometry it still has: its box for ``segm`` when only the polygon is bad, the tight box of its mask for
``bbox`` when only the box is bad, nothing when neither is usable. A detection on it is then neither a
true nor a false positive (matched with COCO's crowd IoU, intersection over the detection's area), and it
is no object to find. An object with a good box and a bad polygon still counts as an object for box AP.
Each call warns once per IoU type with the counts (:class:`UnusableGroundTruthWarning`). What cannot be
worked around (a missing field, an annotation whose image or category is not listed, two annotations with
one id) raises :class:`~mrcnn_lite.data.coco.CocoFormatError` naming the file, the field and the id.

Predictions are converted to COCO's results format: one dict per detection with the *original* category
id, an ``[x, y, w, h]`` box and, for masks, compressed RLE.
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

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.data.coco import (
    AnnotationCheck,
    CocoFormatError,
    DegenerateAnnotationWarning,
    check_annotation,
    count_reasons,
    read_ground_truth,
    validate_coco,
)
from mrcnn_lite.data.masks import decode, encode

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")


@dataclass
class CocoStats:
    """The twelve ``COCOeval.stats`` by name, and pycocotools' printed summary."""

    iou_type: str
    stats: dict[str, float]
    summary: str

    def __getitem__(self, name: str) -> float:
        return self.stats[name]


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


def _empty_results(coco_gt: COCO) -> COCO:
    """A results ``COCO`` with no detections (pycocotools' ``loadRes`` rejects an empty list)."""
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def run_cocoeval(
    gt: COCO | str | Path,
    results: list[dict[str, Any]] | str | Path,
    iou_type: str,
    img_ids: list[int] | None = None,
    check: GroundTruthCheck | None = None,
) -> COCOeval:
    """pycocotools' ``COCOeval`` after ``evaluate()`` and ``accumulate()``, without its prints.

    Everything the analysis of :mod:`mrcnn_lite.evaluation.analysis` reads lives in the returned object:
    ``eval["precision"]`` ([T, R, K, A, M]: IoU thresholds, the 101 recall points, categories, area
    ranges, max detections), ``eval["recall"]``, ``eval["scores"]``, the per-image ``evalImgs`` and the
    IoU matrices ``ious``. :func:`summarize` turns it into :class:`CocoStats`. Arguments as
    :func:`evaluate`'s; an empty result list is evaluated as "no detections" (precision and recall 0).

    ``COCOeval`` gets a copy of the ground truth with its unusable annotations as ignore regions
    (:func:`check_ground_truth`, which warns here; pass its result as ``check`` to skip the check and its
    warning, e.g. after checking before inference). ``eval.cocoGt`` is that copy.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    coco_gt = gt if isinstance(gt, COCO) else load_ground_truth(gt)
    if isinstance(results, (str, Path)) and not Path(results).is_file():
        raise FileNotFoundError(f"COCO results file not found: {results}")
    if check is None:
        check = check_ground_truth(coco_gt, img_ids)
        check.warn([iou_type])
    coco_gt = ground_truth_for(coco_gt, iou_type, check)
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(results, list) and not results:
            coco_dt = _empty_results(coco_gt)
        else:
            coco_dt = coco_gt.loadRes(str(results) if isinstance(results, Path) else results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            evaluator.params.imgIds = sorted(img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def summarize(evaluator: COCOeval) -> CocoStats:
    """``COCOeval.summarize()`` on an accumulated evaluator: the twelve stats by name and the summary text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        evaluator.summarize()
    summary = "\n".join(line for line in out.getvalue().splitlines() if line.startswith(" Average"))
    iou_type = evaluator.params.iouType
    return CocoStats(iou_type, dict(zip(STAT_NAMES, map(float, evaluator.stats), strict=True)), summary)


def evaluate(
    gt: COCO | str | Path,
    results: list[dict[str, Any]] | str | Path,
    iou_type: str,
    img_ids: list[int] | None = None,
    check: GroundTruthCheck | None = None,
) -> CocoStats:
    """Run ``COCOeval`` (evaluate, accumulate, summarize) and return its stats by name.

    ``results`` is a list of result dicts or a results JSON file; ``img_ids`` restricts the images
    (default: every image of the ground truth, so images without detections count as misses).
    An empty result list gives zeros, not pycocotools' error. Unusable ground truth: see
    :func:`run_cocoeval` (``check``) and the module's docstring.
    """
    evaluator = run_cocoeval(gt, results, iou_type, img_ids, check)  # checks the arguments
    if isinstance(results, list) and not results:  # COCOeval's summary would read -1 (no detections)
        return CocoStats(iou_type, dict.fromkeys(STAT_NAMES, 0.0), "no detections")
    return summarize(evaluator)


def to_coco_results(
    image_id: int, prediction: dict[str, torch.Tensor], label_to_cat_id: dict[int, int]
) -> list[dict[str, Any]]:
    """One image's detections (``boxes`` XYXY, ``scores``, ``labels``, optional ``masks`` [D, 1, H, W]) as
    COCO result dicts with the original category ids; masks become compressed RLE."""
    boxes = prediction["boxes"].detach().cpu().to(torch.float64)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = prediction["scores"].detach().cpu().tolist()
    labels = prediction["labels"].detach().cpu().tolist()
    masks = prediction.get("masks")
    rles = (
        [encode(np.asarray(m[0].cpu().numpy(), dtype=np.uint8)) for m in masks] if masks is not None else None
    )
    results = []
    for i, (box, score, label) in enumerate(zip(xywh, scores, labels, strict=True)):
        item = {"image_id": int(image_id), "category_id": label_to_cat_id[int(label)], "bbox": box,
                "score": float(score)}  # fmt: skip
        if rles is not None:
            item["segmentation"] = rles[i]
        results.append(item)
    return results


def from_coco_results(
    results: list[dict[str, Any]],
    image_id: int,
    cat_id_to_label: dict[int, int],
    height: int,
    width: int,
    score_thresh: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_coco_results` for one image, to draw what was evaluated: the detections of
    ``image_id`` with score ≥ ``score_thresh``, highest score first, as ``boxes`` (XYXY, float32),
    ``labels`` (contiguous), ``scores`` and, when the results have RLE masks (or there are no detections),
    ``masks`` [D, H, W] (bool)."""
    mine = sorted(
        (r for r in results if r["image_id"] == image_id and r["score"] >= score_thresh),
        key=lambda r: -r["score"],
    )
    xywh = torch.tensor([r["bbox"] for r in mine], dtype=torch.float32).reshape(-1, 4)
    out = {
        "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
        "labels": torch.tensor([cat_id_to_label[r["category_id"]] for r in mine], dtype=torch.int64),
        "scores": torch.tensor([r["score"] for r in mine], dtype=torch.float32),
    }
    if mine and isinstance(
        mine[0].get("segmentation"), dict
    ):  # RLE (loadRes gives box-only results polygons)
        out["masks"] = torch.from_numpy(
            np.stack([decode(r["segmentation"], height, width) for r in mine]).astype(bool)
        )
    elif not mine:
        out["masks"] = torch.zeros((0, height, width), dtype=torch.bool)
    return out
