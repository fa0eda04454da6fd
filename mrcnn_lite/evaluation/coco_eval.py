"""COCO evaluation through pycocotools' ``COCOeval``: the numbers every table of the paper reports.

AP is averaged over IoU thresholds 0.50:0.05:0.95; AP50 and AP75 at one threshold; APs, APm, APl over
objects of area < 32², 32²..96², > 96² (paper §4, "Instance Segmentation"). ``iou_type="segm"`` is mask AP
(Table 1, Table 2), ``"bbox"`` box AP (Table 3). Crowd regions come from the ground-truth file: a detection
on a crowd region is neither a true nor a false positive.

**Unusable ground truth** (polygons of fewer than 3 points, zero-area boxes, RLEs of the wrong size...)
is checked before anything runs and evaluated as ignore regions, with one warning per IoU type: see
:mod:`mrcnn_lite.evaluation.ground_truth`. What cannot be worked around (a missing field, an annotation
whose image or category is not listed, two annotations with one id) raises
:class:`~mrcnn_lite.data.coco.CocoFormatError` naming the file, the field and the id.

Predictions are converted to COCO's results format (:mod:`mrcnn_lite.evaluation.coco_results`): one dict
per detection with the *original* category id, an ``[x, y, w, h]`` box and, for masks, compressed RLE.
Every name of those two modules imports from here as well.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_lite.evaluation.coco_results import from_coco_results, to_coco_results
from mrcnn_lite.evaluation.ground_truth import (
    EVAL_ANNOTATION_FIELDS,
    EVAL_CATEGORY_FIELDS,
    EVAL_IMAGE_FIELDS,
    IOU_TYPES,
    GroundTruthCheck,
    UnusableGroundTruthWarning,
    check_ground_truth,
    ground_truth_for,
    load_ground_truth,
)
from mrcnn_lite.evaluation.ground_truth import _ignore_region as _ignore_region

__all__ = [
    "EVAL_ANNOTATION_FIELDS",
    "EVAL_CATEGORY_FIELDS",
    "EVAL_IMAGE_FIELDS",
    "IOU_TYPES",
    "STAT_NAMES",
    "CocoStats",
    "GroundTruthCheck",
    "UnusableGroundTruthWarning",
    "check_ground_truth",
    "evaluate",
    "from_coco_results",
    "ground_truth_for",
    "load_ground_truth",
    "run_cocoeval",
    "summarize",
    "to_coco_results",
]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoStats:
    """The twelve ``COCOeval.stats`` by name, and pycocotools' printed summary."""

    iou_type: str
    stats: dict[str, float]
    summary: str

    def __getitem__(self, name: str) -> float:
        return self.stats[name]


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
